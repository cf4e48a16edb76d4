//! `webhooks-admin`: create, list and revoke API keys and OAuth2 clients (the new key or
//! client secret is the last line of stdout), and bring dead-lettered messages back.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shared::config::{Config, Mode, QueueUrls};
use shared::domain::api_key::Scope;
use shared::domain::format_time;
use shared::queue::sqs::SqsQueues;
use shared::queue::{QueueName, TaskQueue, redrive};
use shared::state::AppState;
use tools::local::settings::LocalSettings;

#[derive(Parser)]
#[command(
    name = "webhooks-admin",
    about = "Manage the webhooks service's API keys, OAuth2 clients and dead-letter queues"
)]
struct Cli {
    /// Use the local stack (`make run`): AWS_ENDPOINT_URL, else the emulator on
    /// 127.0.0.1:$EMULATOR_PORT (4566), and its table. Without it: the normal AWS
    /// configuration and TABLE_NAME.
    #[arg(long, global = true)]
    local: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a key for a tenant; prints the key (shown once) as the last line.
    CreateKey {
        #[arg(long)]
        tenant: String,
        /// Comma-separated: webhooks:read, webhooks:write, events:read, events:write,
        /// event-types:write.
        #[arg(long)]
        scopes: String,
    },
    /// List a tenant's keys (never the keys themselves).
    ListKeys {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key by its id. API Gateway's authorizer cache may honour it for up to
    /// AuthorizerCacheTtlSeconds more.
    RevokeKey {
        #[arg(long)]
        key_id: String,
    },
    /// Create an OAuth2 client (client credentials grant) for a tenant; prints its
    /// client_id, then the client_secret (shown once) as the last line.
    CreateClient {
        #[arg(long)]
        tenant: String,
        /// The most its tokens may carry (comma-separated, as for create-key).
        #[arg(long)]
        scopes: String,
    },
    /// List a tenant's OAuth2 clients (never their secrets).
    ListClients {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke an OAuth2 client: it gets no new token. Tokens it already holds stay valid
    /// until they expire (one hour after issue at most).
    RevokeClient {
        #[arg(long)]
        client_id: String,
    },
    /// Bring the dead-letter queues' messages back (ingest and delivery) as tasks on the
    /// delivery queue, however often the sweeper already did. Messages rejected as never
    /// processable stay unless --include-rejected. In AWS it
    /// needs INGEST_QUEUE_URL, INGEST_DLQ_URL, DELIVERY_QUEUE_URL and DELIVERY_DLQ_URL (the
    /// stack's outputs); locally it finds the local stack's queues.
    Redrive {
        #[arg(long)]
        include_rejected: bool,
        /// The delivery dead-letter queue (the DeliveryDeadLetterQueueUrl output).
        #[arg(long, env = "DELIVERY_DLQ_URL")]
        delivery_dlq_url: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("webhooks-admin: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A key's or client's state, as the lists show it.
fn status(revoked_at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    match revoked_at {
        Some(at) => format!("revoked {}", format_time(at)),
        None => "active".to_string(),
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let mode = if cli.local { Mode::Local } else { Mode::Lambda };
    let mut config = Config::from_env(mode).map_err(|e| e.to_string())?;
    if cli.local && config.aws_endpoint_url.is_none() {
        let settings = LocalSettings::from_env().map_err(|e| e.to_string())?;
        config.aws_endpoint_url = Some(format!("http://127.0.0.1:{}", settings.emulator_port));
    }
    let state = AppState::new(config).await;
    let store = &*state.store;
    match cli.command {
        Command::CreateKey { tenant, scopes } => {
            let scopes = Scope::parse_list(&scopes)?;
            let (key, record) = tools::admin::create_key(store, &tenant, scopes).await?;
            println!("key_id: {}", record.key_id);
            println!("tenant: {}", record.tenant_id);
            println!("scopes: {}", Scope::join(&record.scopes));
            println!("{key}");
        }
        Command::ListKeys { tenant } => {
            let keys = tools::admin::list_keys(store, &tenant).await?;
            if keys.is_empty() {
                eprintln!("tenant {tenant} has no keys");
            }
            for key in keys {
                println!(
                    "{}\tcreated {}\t{}\t{}",
                    key.key_id,
                    format_time(key.created_at),
                    status(key.revoked_at),
                    Scope::join(&key.scopes)
                );
            }
        }
        Command::RevokeKey { key_id } => {
            let key = tools::admin::revoke_key(store, &key_id).await?;
            println!("revoked {} (tenant {})", key.key_id, key.tenant_id);
        }
        Command::CreateClient { tenant, scopes } => {
            let scopes = Scope::parse_list(&scopes)?;
            let (secret, client) = tools::admin::create_client(store, &tenant, scopes).await?;
            println!("client_id: {}", client.client_id);
            println!("tenant: {}", client.tenant_id);
            println!("scopes: {}", Scope::join(&client.scopes));
            eprintln!("the client_secret below is shown once; only its hash is stored");
            println!("{secret}");
        }
        Command::ListClients { tenant } => {
            let clients = tools::admin::list_clients(store, &tenant).await?;
            if clients.is_empty() {
                eprintln!("tenant {tenant} has no OAuth2 clients");
            }
            for client in clients {
                println!(
                    "{}\tcreated {}\t{}\t{}",
                    client.client_id,
                    format_time(client.created_at),
                    status(client.revoked_at),
                    Scope::join(&client.scopes)
                );
            }
        }
        Command::RevokeClient { client_id } => {
            let client = tools::admin::revoke_client(store, &client_id).await?;
            println!(
                "revoked {} (tenant {}): it gets no new token; tokens already issued expire \
                 within {} s",
                client.client_id,
                client.tenant_id,
                shared::tokens::ACCESS_TOKEN_LIFETIME_SECONDS
            );
        }
        Command::Redrive {
            include_rejected,
            delivery_dlq_url,
        } => {
            let sqs = aws_sdk_sqs::Client::new(&shared::state::sdk_config(&state.config).await);
            let urls = if cli.local {
                let name = |id: &str| format!("{}-{id}", state.config.table_name);
                let mut urls = Vec::new();
                for id in [
                    "IngestQueue",
                    "IngestDeadLetterQueue",
                    "DeliveryQueue",
                    "DeliveryDeadLetterQueue",
                ] {
                    let url = sqs
                        .get_queue_url()
                        .queue_name(name(id))
                        .send()
                        .await
                        .map_err(|e| {
                            format!(
                                "no local queue {}: is `make run` running? ({})",
                                name(id),
                                aws_sdk_sqs::error::DisplayErrorContext(e)
                            )
                        })?
                        .queue_url
                        .unwrap_or_default();
                    urls.push(url);
                }
                QueueUrls {
                    ingest: urls[0].clone(),
                    ingest_dlq: urls[1].clone(),
                    delivery: urls[2].clone(),
                    delivery_dlq: Some(urls[3].clone()),
                }
            } else {
                let mut queues = state.config.queues.clone().ok_or(
                    "redrive needs INGEST_QUEUE_URL, INGEST_DLQ_URL and DELIVERY_QUEUE_URL",
                )?;
                queues.delivery_dlq = Some(
                    delivery_dlq_url
                        .ok_or("redrive needs DELIVERY_DLQ_URL (or --delivery-dlq-url)")?,
                );
                queues
            };
            let queues = SqsQueues::new(sqs, &urls);
            let options = redrive::Options {
                include_rejected,
                automatic: false,
                limit: usize::MAX,
                delay: std::time::Duration::ZERO,
            };
            for (name, queue) in [
                ("ingest", QueueName::Ingest),
                ("delivery", QueueName::Delivery),
            ] {
                eprintln!("redriving the {name} dead-letter queue");
                let done = queues
                    .redrive(queue, &options, &|n| eprintln!("  {n} brought back so far"))
                    .await
                    .map_err(|e| e.to_string())?;
                println!("{name}: {} brought back to the delivery queue", done.moved);
                if !done.kept.is_empty() {
                    println!(
                        "{name}: {} left in the dead-letter queue, rejected as never processable \
                         (--include-rejected brings back those that can be read now):",
                        done.kept.len()
                    );
                    for reason in done.kept {
                        println!("  {reason}");
                    }
                }
            }
        }
    }
    Ok(())
}
