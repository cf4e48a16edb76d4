//! `webhooks-admin`: create, list and revoke API keys. The new key is the last line of stdout.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shared::config::{Config, Mode};
use shared::domain::api_key::Scope;
use shared::domain::format_time;
use shared::state::AppState;
use tools::local::settings::LocalSettings;

#[derive(Parser)]
#[command(
    name = "webhooks-admin",
    about = "Manage the webhooks service's API keys"
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
                let status = match key.revoked_at {
                    Some(at) => format!("revoked {}", format_time(at)),
                    None => "active".to_string(),
                };
                println!(
                    "{}\tcreated {}\t{}\t{}",
                    key.key_id,
                    format_time(key.created_at),
                    status,
                    Scope::join(&key.scopes)
                );
            }
        }
        Command::RevokeKey { key_id } => {
            let key = tools::admin::revoke_key(store, &key_id).await?;
            println!("revoked {} (tenant {})", key.key_id, key.tenant_id);
        }
    }
    Ok(())
}
