//! What an OAuth2 access token costs: the token endpoint's handler run against the
//! emulator (DynamoDB and KMS on their wire protocols), every AWS request counted at the
//! SDK client, and the CPU the authorizer spends verifying one token.

use std::sync::Arc;

use aws_sdk_dynamodb::config::SharedInterceptor;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::fanout::process_cpu_ms;
use crate::meter::AwsMeter;
use shared::api::{dispatch_public, public_routes};
use shared::config::{Config, Mode};
use shared::domain::api_key::Scope;
use shared::state::AppState;

/// Tokens issued after the first (which also reads the public key once).
const TOKENS: usize = 100;
/// Verifications timed for the authorizer's CPU per token.
const VERIFICATIONS: usize = 2_000;

/// The event API Gateway hands the token endpoint for one request.
fn token_request(client_id: &str, secret: &str) -> lambda_http::Request {
    let basic = STANDARD.encode(format!("{client_id}:{secret}"));
    let event = json!({
        "version": "2.0",
        "routeKey": "POST /v1/oauth/token",
        "rawPath": "/v1/oauth/token",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/x-www-form-urlencoded",
            "authorization": format!("Basic {basic}"),
        },
        "requestContext": {
            "http": {"method": "POST", "path": "/v1/oauth/token", "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "requestId": "r", "routeKey": "POST /v1/oauth/token", "stage": "$default",
            "accountId": "a", "apiId": "b", "domainName": "c", "domainPrefix": "d",
            "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 0
        },
        "body": "grant_type=client_credentials",
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event")
}

/// Issues tokens through the real handler and counts what each costs; times verification.
pub async fn run_tokens(endpoint: &str) -> Result<Value, String> {
    let table = format!(
        "bench-tokens-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let mut config = Config::from_vars(Mode::Local, |k| match k {
        "AWS_ENDPOINT_URL" => Some(endpoint.to_string()),
        "TABLE_NAME" => Some(table.clone()),
        _ => None,
    })
    .map_err(|e| e.to_string())?;
    let template = tools::local::template::Template::built_in()?;
    let sdk = shared::state::sdk_config(&config).await;
    tools::local::provision::ensure_table(&aws_sdk_dynamodb::Client::new(&sdk), &template, &table)
        .await?;
    let keys = tools::local::provision::ensure_kms_keys(
        &aws_sdk_kms::Client::new(&sdk),
        &template,
        &table,
    )
    .await?;
    config.token_key_id = keys
        .get(tools::local::stack::TOKEN_KEY)
        .map(|k| k.alias.clone());
    let meter = AwsMeter::default();
    let state = Arc::new(
        AppState::with_interceptor(config, Some(SharedInterceptor::new(meter.clone()))).await,
    );
    let (secret, client) = tools::admin::create_client(
        &*state.store,
        "bench",
        vec![Scope::WebhooksRead, Scope::EventsWrite],
    )
    .await?;

    let issue = || async {
        let response = dispatch_public(
            &state,
            &public_routes::ISSUE_TOKEN,
            token_request(&client.client_id, &secret),
        )
        .await;
        if response.status() != 200 {
            return Err(format!("the token endpoint answered {}", response.status()));
        }
        let body: Value =
            serde_json::from_slice(response.body().as_ref()).map_err(|e| e.to_string())?;
        body["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "no access_token".to_string())
    };

    meter.reset();
    let first = issue().await?;
    let first_counts = meter.counts();
    meter.reset();
    let started = std::time::Instant::now();
    for _ in 0..TOKENS {
        issue().await?;
    }
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0 / TOKENS as f64;
    let counts = meter.counts();
    let per_token = |n: f64| n / TOKENS as f64;
    // Read units, when the answers' sizes were not seen (the SDK streams them): a client
    // item is a few hundred bytes, one strongly consistent unit per read.
    let read_units = match counts.ddb_read_units {
        seen if seen > 0.0 => seen,
        _ => counts.ddb_read_requests as f64,
    };

    // The authorizer's work for a token: verification with the public key in hand.
    state
        .tokens
        .verify(&first)
        .await
        .map_err(|e| e.to_string())?;
    let cpu = process_cpu_ms();
    for _ in 0..VERIFICATIONS {
        state
            .tokens
            .verify(&first)
            .await
            .map_err(|e| e.to_string())?;
    }
    let verify_us = (process_cpu_ms() - cpu) * 1000.0 / VERIFICATIONS as f64;

    Ok(json!({
        "tokens": TOKENS,
        "ddb_read_requests_per_token": per_token(counts.ddb_read_requests as f64),
        "ddb_read_units_per_token": per_token(read_units),
        "ddb_write_units_per_token": per_token(counts.ddb_write_units),
        "kms_requests_per_token": per_token(counts.kms_requests as f64),
        "kms_requests_first_token_of_a_process": first_counts.kms_requests,
        "emulator_wall_ms_per_token": wall_ms,
        "verify_cpu_us_per_token": verify_us,
        "token_bytes": first.len(),
        "tenant_rate_limit": rate_limit_cost(&state, &meter).await,
    }))
}

/// Requests admitted and refused by the per-tenant API rate limit (its conditional writes
/// on the emulator, counted at the client) while a tenant calls at once.
const LIMITED_REQUESTS: usize = 200;

/// What the per-tenant API rate limit costs a request: its conditional writes (a failed
/// condition is billed as a write too), admitted and refused.
async fn rate_limit_cost(state: &AppState, meter: &AwsMeter) -> Value {
    let mut admitted_state = state.clone();
    let mut admitted_config = state.config.clone();
    admitted_config.tenant_rate_limit = Some(1_000_000);
    admitted_state.config = admitted_config;
    meter.reset();
    for _ in 0..LIMITED_REQUESTS {
        let _ = shared::api::limits::admit(&admitted_state, "bench-admitted").await;
    }
    let admitted = meter.counts();
    // A tenant limited to 5 a second calling 200 times at once: 10 admitted, the rest
    // refused (each after both writes failed their conditions).
    let mut limited_state = state.clone();
    let mut limited_config = state.config.clone();
    limited_config.tenant_rate_limit = Some(5);
    limited_state.config = limited_config;
    meter.reset();
    let mut refused = 0usize;
    for _ in 0..LIMITED_REQUESTS {
        if shared::api::limits::admit(&limited_state, "bench-limited")
            .await
            .is_err()
        {
            refused += 1;
        }
    }
    let limited = meter.counts();
    let per = |n: f64| n / LIMITED_REQUESTS as f64;
    json!({
        "write_requests_per_admitted_request": per(admitted.ddb_write_requests as f64),
        "write_units_per_admitted_request": per(admitted.ddb_write_units),
        "write_requests_per_request_over_the_limit": per(limited.ddb_write_requests as f64),
        "refused_of_200": refused,
    })
}
