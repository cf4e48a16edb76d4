//! The whole local stack in one value: the emulator (unless one is already running), the
//! table as template.yaml declares it, and the API server on loopback.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::emulator::{Emulator, default_server_path};
use super::pollers::{EventSource, poll};
use super::provision::{ensure_kms_keys, ensure_queues, ensure_table};
use super::server::LocalApi;
use super::settings::LocalSettings;
use super::template::Template;
use shared::config::{Config, QueueUrls};
use shared::state::AppState;

/// A prepared local stack, ready to serve.
pub struct LocalStack {
    /// The emulator this stack started; `None` when `AWS_ENDPOINT_URL` named one.
    emulator: Option<Emulator>,
    api: Arc<LocalApi>,
    listener: TcpListener,
    address: SocketAddr,
    /// The queues the deliver function reads.
    event_sources: Vec<EventSource>,
    settings: LocalSettings,
}

/// The template's logical ids of the queues the service sends to.
pub const INGEST_QUEUE: &str = "IngestQueue";
pub const INGEST_DLQ: &str = "IngestDeadLetterQueue";
pub const DELIVERY_QUEUE: &str = "DeliveryQueue";
pub const DELIVERY_DLQ: &str = "DeliveryDeadLetterQueue";
/// The template's KMS keys, by logical id.
pub const SECRETS_KEY: &str = "SecretsKey";
pub const TOKEN_KEY: &str = "TokenKey";

impl LocalStack {
    /// Starts the emulator if needed, creates the table if missing and binds the API's port
    /// (`settings.port`; 0 picks a free one). `progress` hears each step.
    pub async fn prepare(
        mut config: Config,
        settings: LocalSettings,
        progress: impl Fn(&str),
    ) -> Result<Self, String> {
        let template = Template::built_in()?;
        let emulator = match &config.aws_endpoint_url {
            Some(endpoint) => {
                progress(&format!("using the AWS endpoint {endpoint}"));
                None
            }
            None => {
                let port = settings.emulator_port;
                progress(&format!(
                    "starting the local AWS emulator on 127.0.0.1:{port}"
                ));
                let emulator = Emulator::start(&default_server_path(), port)?;
                config.aws_endpoint_url = Some(emulator.endpoint().to_string());
                Some(emulator)
            }
        };
        let sdk = shared::state::sdk_config(&config).await;
        let created = ensure_table(
            &aws_sdk_dynamodb::Client::new(&sdk),
            &template,
            &config.table_name,
        )
        .await?;
        progress(&format!(
            "table {} {}",
            config.table_name,
            if created {
                "created from template.yaml"
            } else {
                "already exists"
            }
        ));
        let queues = ensure_queues(
            &aws_sdk_sqs::Client::new(&sdk),
            &template,
            &config.table_name,
        )
        .await?;
        let url_of = |logical_id: &str| {
            queues
                .get(logical_id)
                .map(|q| q.url.clone())
                .ok_or_else(|| format!("template.yaml declares no queue {logical_id}"))
        };
        config.queues = Some(QueueUrls {
            ingest: url_of(INGEST_QUEUE)?,
            ingest_dlq: url_of(INGEST_DLQ)?,
            delivery: url_of(DELIVERY_QUEUE)?,
            delivery_dlq: Some(url_of(DELIVERY_DLQ)?),
        });
        let event_sources = template
            .sqs_event_sources("deliver")?
            .into_iter()
            .map(|id| {
                let q = queues
                    .get(&id)
                    .ok_or_else(|| format!("deliver reads an undeclared queue {id}"))?;
                Ok(EventSource {
                    url: q.url.clone(),
                    arn: q.arn.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        progress(&format!(
            "{} queues created from template.yaml",
            queues.len()
        ));
        let keys = ensure_kms_keys(
            &aws_sdk_kms::Client::new(&sdk),
            &template,
            &config.table_name,
        )
        .await?;
        let key_of = |logical_id: &str| {
            keys.get(logical_id)
                .cloned()
                .ok_or_else(|| format!("template.yaml declares no KMS key {logical_id}"))
        };
        config.secrets_key_id = Some(key_of(SECRETS_KEY)?);
        config.token_key_id = Some(key_of(TOKEN_KEY)?);
        progress(&format!(
            "secrets sealed under the KMS key {}, access tokens signed by {}",
            key_of(SECRETS_KEY)?,
            key_of(TOKEN_KEY)?
        ));
        let state = Arc::new(AppState::new(config).await);
        let api = Arc::new(LocalApi::new(state, &template)?);
        let port = settings.port;
        let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
            format!("cannot listen on 127.0.0.1:{port}: {e} (set PORT to another port)")
        })?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        Ok(LocalStack {
            emulator,
            api,
            listener,
            address,
            event_sources,
            settings,
        })
    }

    pub fn state(&self) -> &AppState {
        self.api.state()
    }

    /// The API's base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The AWS endpoint the stack uses.
    pub fn aws_endpoint(&self) -> Option<&str> {
        self.state().config.aws_endpoint_url.as_deref()
    }

    /// The ingest queue's URL, for event sources.
    pub fn ingest_queue_url(&self) -> Option<&str> {
        self.state()
            .config
            .queues
            .as_ref()
            .map(|q| q.ingest.as_str())
    }

    /// Serves the API and drives the deliver function from the queues until `shutdown`
    /// completes, then stops the pollers and the emulator it started.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let LocalStack {
            emulator,
            api,
            listener,
            event_sources,
            settings,
            ..
        } = self;
        let (stop, stopped) = watch::channel(false);
        let state = Arc::new(api.state().clone());
        let mut pollers = Vec::new();
        for source in event_sources {
            for _ in 0..settings.pollers {
                pollers.push(tokio::spawn(poll(
                    Arc::clone(&state),
                    source.clone(),
                    settings.visibility_timeout,
                    stopped.clone(),
                )));
            }
        }
        if let Some(every) = settings.sweep_interval {
            pollers.push(tokio::spawn(sweep_every(
                Arc::clone(&state),
                every,
                stopped.clone(),
            )));
        }
        api.serve(listener, shutdown).await;
        let _ = stop.send(true);
        for poller in pollers {
            poller.abort();
            let _ = poller.await;
        }
        drop(emulator);
    }
}

/// Runs the sweeper every `every`, as the template's schedule does in AWS.
async fn sweep_every(
    state: Arc<AppState>,
    every: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = shared::delivery::sweep::sweep(&state).await {
            tracing::warn!(error = %e, "local sweeper: the sweep will run again");
        }
    }
}
