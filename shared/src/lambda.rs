//! The doorways: what a binary in `functions/` calls to serve its route, the authorizer,
//! the deliver function or the sweeper on Lambda. Settings and clients are built once per cold start.

use lambda_http::aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use lambda_http::{Request, service_fn};
use lambda_runtime::LambdaEvent;

use crate::api;
use crate::config::{Config, Mode};
use crate::state::AppState;

pub type Error = lambda_http::Error;

/// Logs as JSON lines on stderr (CloudWatch), level from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let format = tracing_subscriber::fmt::layer()
        .json()
        .with_target(false)
        .without_time()
        .with_writer(std::io::stderr);
    // A second call (tests) finds a subscriber already set; that is fine.
    let _ = tracing_subscriber::registry()
        .with(format)
        .with(filter)
        .try_init();
}

/// `make run`'s logs: the same JSON lines on stderr (without the readable ones), and the
/// readable lines of [`crate::activity`] (one per API request and per delivery attempt)
/// on stdout, each as `HH:MM:SS.mmm <line>`.
pub fn init_local_tracing() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let json = tracing_subscriber::fmt::layer()
        .json()
        .with_target(false)
        .without_time()
        .with_writer(std::io::stderr)
        .with_filter(
            log_filter(std::env::var("RUST_LOG").ok().as_deref())
                .with_target(crate::activity::TARGET, LevelFilter::OFF),
        );
    let plain = tracing_subscriber::fmt::layer()
        .event_format(Plain)
        .with_writer(std::io::stdout)
        .with_filter(Targets::new().with_target(crate::activity::TARGET, LevelFilter::DEBUG));
    let _ = tracing_subscriber::registry()
        .with(json)
        .with(plain)
        .try_init();
}

/// A readable line: the local time and the event's message, no level, target or spans.
struct Plain;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "{} ", chrono::Local::now().format("%H:%M:%S%.3f"))?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// `RUST_LOG` as a level (`warn`) or a list of `target=level` with an optional default
/// (`shared::delivery=debug,info`); unset or unreadable means `info`.
pub fn log_filter(setting: Option<&str>) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    setting
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

async fn state() -> Result<&'static AppState, Error> {
    let config = Config::from_env(Mode::Lambda)?;
    // One state for the life of the process, shared by every invocation.
    Ok(Box::leak(Box::new(AppState::new(config).await)))
}

/// Serves an API route on Lambda (its binary names it, so it links no other handler).
pub async fn serve_route(route: &'static api::Route) -> Result<(), Error> {
    init_tracing();
    let state = state().await?;
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(api::dispatch(state, route, req).await)
    }))
    .await
}

/// Serves a route outside the authorizer on Lambda.
pub async fn serve_public_route(route: &'static api::PublicRoute) -> Result<(), Error> {
    init_tracing();
    let state = state().await?;
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(api::dispatch_public(state, route, req).await)
    }))
    .await
}

/// Serves fixed files on Lambda (the portal): no settings, no AWS client.
pub async fn serve_asset_route(route: &'static api::AssetRoute) -> Result<(), Error> {
    init_tracing();
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(api::dispatch_asset(route, &req))
    }))
    .await
}

/// Serves the smoke receiver behind its function URL (`make smoke`).
pub async fn serve_smoke_receiver() -> Result<(), Error> {
    init_tracing();
    let config = Config::from_env(Mode::Lambda)?;
    let sdk = crate::state::sdk_config(&config).await;
    let log: &'static crate::smoke::SmokeLog = Box::leak(Box::new(crate::smoke::SmokeLog::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &config.table_name,
    )));
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(crate::smoke::receive(log, req).await)
    }))
    .await
}

/// Serves the API Gateway Lambda authorizer.
pub async fn serve_authorizer() -> Result<(), Error> {
    init_tracing();
    let state = state().await?;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>| async move {
            // Never fails: trouble reading storage or the public key defers the check to the
            // route (see auth).
            Ok::<_, Error>(
                crate::auth::handle_authorizer_request(&*state.store, &state.tokens, event.payload)
                    .await,
            )
        },
    ))
    .await
}

/// Serves the SQS-triggered deliver function (partial batch responses).
pub async fn serve_deliver() -> Result<(), Error> {
    init_tracing();
    let state = state().await?;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<aws_lambda_events::sqs::SqsEvent>| async move {
            Ok::<_, Error>(crate::delivery::deliver_batch(state, event.payload).await)
        },
    ))
    .await
}

/// Serves the sweeper: its schedule's event (whatever its content), or a redrive by hand.
pub async fn serve_sweeper() -> Result<(), Error> {
    init_tracing();
    let state = state().await?;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            Ok::<_, Error>(crate::delivery::sweep::handle(state, &event.payload).await?)
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn rust_log_reads_as_a_level_or_per_target_levels() {
        let default = log_filter(None);
        assert!(default.would_enable("shared::api", &Level::INFO));
        assert!(!default.would_enable("shared::api", &Level::DEBUG));

        let warn = log_filter(Some("warn"));
        assert!(!warn.would_enable("shared::api", &Level::INFO));
        assert!(warn.would_enable("shared::api", &Level::WARN));

        let mixed = log_filter(Some("shared::delivery=debug,info"));
        assert!(mixed.would_enable("shared::delivery::http", &Level::DEBUG));
        assert!(!mixed.would_enable("shared::api", &Level::DEBUG));
        assert!(mixed.would_enable("shared::api", &Level::INFO));
    }
}
