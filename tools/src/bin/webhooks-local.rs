//! `make run`: the whole service on this machine, with no AWS account and no Docker.

use std::process::ExitCode;

use shared::api::handlers::portal_sessions as portal;
use shared::config::{Config, Mode};
use shared::domain::api_key::generate_key;
use tools::local::settings::LocalSettings;
use tools::local::stack::LocalStack;

const DEV_TENANT: &str = "dev";

#[tokio::main]
async fn main() -> ExitCode {
    shared::lambda::init_local_tracing();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("webhooks-local: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C (SIGINT) or SIGTERM: either stops the API and the emulator this process started.
async fn stop_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

async fn run() -> Result<(), String> {
    let config = Config::from_env(Mode::Local).map_err(|e| e.to_string())?;
    let settings = LocalSettings::from_env().map_err(|e| e.to_string())?;
    let dev_key = settings
        .dev_api_key
        .clone()
        .unwrap_or_else(|| generate_key(DEV_TENANT, vec![]).0);
    let stack =
        LocalStack::prepare(config, settings, |step| eprintln!("webhooks-local: {step}")).await?;
    tools::admin::ensure_key(&*stack.state().store, &dev_key, DEV_TENANT).await?;
    let url = stack.url();
    println!();
    println!("Webhooks service running locally (Ctrl-C stops it and the emulator).");
    println!("API URL: {url}");
    if let Some(endpoint) = stack.aws_endpoint() {
        println!(
            "AWS endpoint: {endpoint} (table {})",
            stack.state().config.table_name
        );
    }
    if let Some(queue) = stack.ingest_queue_url() {
        println!("Ingest queue URL: {queue}");
    }
    println!(
        "Insecure targets allowed: {}",
        stack.state().config.allow_insecure_targets
    );
    println!(
        "OAuth2: tokens at POST {url}/v1/oauth/token (iss {}, aud {}), keys at {url}/.well-known/jwks.json; \
         make a client with: cargo run --bin webhooks-admin -- --local create-client --tenant {DEV_TENANT} --scopes webhooks:read",
        stack.state().config.token_issuer,
        stack.state().config.token_audience
    );
    let portal = format!("{url}/portal");
    match portal::open_session(
        &stack.state().tokens,
        DEV_TENANT,
        portal::session_scopes(false),
        portal::MAX_SESSION_SECONDS,
    )
    .await
    {
        Ok(session) => println!(
            "Portal (tenant {DEV_TENANT}, for a day): open {}",
            portal::session_url(&portal, &session.token)
        ),
        Err(e) => eprintln!("webhooks-local: no portal link ({e})"),
    }
    println!(
        "  another link: curl -X POST -H \"Authorization: Bearer $DEV_API_KEY\" {url}/v1/portal-sessions \
         -d '{{\"read_only\": true}}' (then open its \"url\")"
    );
    println!("Try: curl -H \"Authorization: Bearer $DEV_API_KEY\" {url}/v1/me");
    println!("Dev API key (tenant {DEV_TENANT}, every scope):");
    println!("{dev_key}");
    stack.run(stop_signal()).await;
    eprintln!("webhooks-local: stopped");
    Ok(())
}
