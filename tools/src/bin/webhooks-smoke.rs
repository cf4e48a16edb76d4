//! `make smoke`: the whole path (a key, an event type, a webhook, an event, its signed
//! delivery, its record), checked from outside the stack. With `SMOKE_API_URL`,
//! `SMOKE_API_KEY` and `SMOKE_RECEIVER_URL` (a deployed stack's `ApiUrl`, a key with every
//! scope, and its `SmokeReceiverUrl`: deploy with `SmokeReceiver=true`), against that
//! stack; without them, against a local stack it starts (on a free port, with its own
//! table, on the emulator of `AWS_ENDPOINT_URL` or one it starts).

use std::process::ExitCode;

use shared::config::{Config, Mode};
use shared::domain::api_key::Scope;
use tools::local::server::FUNCTION_URL_PREFIX;
use tools::local::settings::LocalSettings;
use tools::local::stack::LocalStack;
use tools::smoke::Target;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(seconds) => {
            println!("smoke: passed in {seconds:.1} s");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("smoke: FAILED: {message}");
            ExitCode::FAILURE
        }
    }
}

fn step(message: &str) {
    eprintln!("smoke: {message}");
}

async fn run() -> Result<f64, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(api_url) = var("SMOKE_API_URL") {
        let target = Target {
            api_url,
            api_key: var("SMOKE_API_KEY")
                .ok_or("SMOKE_API_KEY is needed with SMOKE_API_URL (a key with every scope)")?,
            receiver_url: var("SMOKE_RECEIVER_URL").ok_or(
                "SMOKE_RECEIVER_URL is needed with SMOKE_API_URL: deploy with \
                 SmokeReceiver=true and pass the stack's SmokeReceiverUrl output",
            )?,
        };
        step(&format!("against {}", target.api_url));
        return tools::smoke::run(&target, step).await;
    }
    // The local stack: its own table and port, and a free port for an emulator it starts.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let table = format!("smoke-{}", ulid::Ulid::new().to_string().to_lowercase());
    let vars = |name: &str| match name {
        "TABLE_NAME" => Some(table.clone()),
        "PORT" => Some("0".to_string()),
        "EMULATOR_PORT" => Some(free.to_string()),
        "LOCAL_SWEEP_INTERVAL" => Some("0s".to_string()),
        other => std::env::var(other).ok(),
    };
    let config = Config::from_vars(Mode::Local, vars).map_err(|e| e.to_string())?;
    let settings = LocalSettings::from_vars(vars).map_err(|e| e.to_string())?;
    let stack = LocalStack::prepare(config, settings, step).await?;
    let (key, _) =
        tools::admin::create_key(&*stack.state().store, "smoke", Scope::ALL.to_vec()).await?;
    let target = Target {
        api_url: stack.url(),
        api_key: key,
        receiver_url: format!("{}{FUNCTION_URL_PREFIX}smoke_receiver", stack.url()),
    };
    step(&format!("against the local stack at {}", target.api_url));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(stack.run(async {
        let _ = stopped.await;
    }));
    let outcome = tools::smoke::run(&target, step).await;
    let _ = stop.send(());
    let _ = running.await;
    outcome
}
