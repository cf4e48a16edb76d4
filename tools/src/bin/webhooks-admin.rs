//! `webhooks-admin`: create, list and revoke API keys and OAuth2 clients (the new key or
//! client secret is the last line of stdout), and bring dead-lettered messages back.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shared::config::{Config, Mode};
use shared::delivery::sweep::{RedriveRequest, RedrivenByHand, redrive_by_hand};
use shared::domain::api_key::Scope;
use shared::domain::format_time;
use shared::state::AppState;
use tools::local::functions::Functions;
use tools::local::settings::LocalSettings;
use tools::local::stack::Provisioned;
use tools::local::template::Template;

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
    /// processable stay unless --include-rejected. Only the service's roles may send to the
    /// delivery queue (its queue policy), so this invokes the sweeper function to do it
    /// (in AWS it needs lambda:InvokeFunction on it, and its name: the stack's
    /// SweeperFunctionName output); locally it runs the sweeper's code as the sweeper's
    /// own principal.
    Redrive {
        #[arg(long)]
        include_rejected: bool,
        /// The sweeper function (the SweeperFunctionName output).
        #[arg(long, env = "SWEEPER_FUNCTION_NAME")]
        sweeper_function: Option<String>,
    },
}

/// Locally: the sweeper's redrive, run here as the sweeper's own principal.
async fn redrive_locally(
    config: &Config,
    request: &RedriveRequest,
) -> Result<RedrivenByHand, String> {
    let template = Template::built_in()?;
    let provisioned = Provisioned::ensure(config.clone(), &template, &|_| {}).await?;
    let sweeper = Functions::one(
        &template,
        &provisioned.config,
        &provisioned.resolver,
        "sweeper",
    )
    .await?;
    redrive_by_hand(&sweeper, request)
        .await
        .map_err(|e| e.to_string())
}

/// In AWS: the sweeper function, invoked with the redrive it is to make.
async fn invoke_sweeper(
    config: &Config,
    function: &str,
    request: &RedriveRequest,
) -> Result<RedrivenByHand, String> {
    let sdk = shared::state::sdk_config(config).await;
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let payload = serde_json::json!({ "redrive": request }).to_string();
    let out = lambda
        .invoke()
        .function_name(function)
        .payload(aws_sdk_lambda::primitives::Blob::new(payload))
        .send()
        .await
        .map_err(|e| {
            format!(
                "invoking {function}: {}",
                aws_sdk_lambda::error::DisplayErrorContext(e)
            )
        })?;
    let body = out.payload.map(|p| p.into_inner()).unwrap_or_default();
    if let Some(error) = out.function_error {
        return Err(format!(
            "the sweeper failed ({error}): {}",
            String::from_utf8_lossy(&body)
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("the sweeper's answer: {e}"))
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
            sweeper_function,
        } => {
            let request = RedriveRequest { include_rejected };
            // Each round looks at up to a few thousand messages per queue; what it leaves
            // is visible again for the next, which ends the redrive when it moves nothing.
            let mut moved = [0usize; 2];
            let kept = loop {
                let done = if cli.local {
                    redrive_locally(&state.config, &request).await?
                } else {
                    let name = sweeper_function.as_deref().ok_or(
                        "redrive needs the sweeper function's name: --sweeper-function or \
                         SWEEPER_FUNCTION_NAME (the stack's SweeperFunctionName output)",
                    )?;
                    invoke_sweeper(&state.config, name, &request).await?
                };
                let round = done.ingest.moved + done.delivery.moved;
                moved[0] += done.ingest.moved;
                moved[1] += done.delivery.moved;
                eprintln!("{} brought back so far", moved[0] + moved[1]);
                if round == 0 {
                    break [done.ingest.kept, done.delivery.kept];
                }
            };
            for (i, name) in ["ingest", "delivery"].into_iter().enumerate() {
                println!("{name}: {} brought back to the delivery queue", moved[i]);
                if !kept[i].is_empty() {
                    println!(
                        "{name}: {} left in the dead-letter queue, rejected as never \
                         processable (--include-rejected brings back those that can be read \
                         now):",
                        kept[i].len()
                    );
                    for reason in &kept[i] {
                        println!("  {reason}");
                    }
                }
            }
        }
    }
    Ok(())
}
