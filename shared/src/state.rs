//! What a process builds once at start and every request shares: settings and clients.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

use crate::config::Config;
use crate::delivery::client::DeliveryClient;
use crate::error::ApiError;
use crate::queue::Queues;
use crate::storage::Store;

/// Settings and clients, built once per process (per Lambda cold start).
#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Config,
    pub store: Store,
    /// Outbound HTTP (the TLS probe of `verify_tls`): rustls, no redirects.
    pub http: reqwest::Client,
    /// The queues, when configured (every deployed function; the local stack).
    pub queues: Option<Queues>,
    /// Deliveries' HTTP client: guarded against private addresses unless insecure targets
    /// are allowed.
    pub delivery: DeliveryClient,
}

impl AppState {
    pub async fn new(config: Config) -> Self {
        let sdk = sdk_config(&config).await;
        let store = Store::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table_name);
        let queues = config.queues.as_ref().map(|urls| {
            Queues::new(
                aws_sdk_sqs::Client::new(&sdk),
                urls.ingest.clone(),
                urls.delivery.clone(),
                urls.ingest_dlq.clone(),
            )
        });
        AppState {
            http: http_client(),
            delivery: DeliveryClient::new(!config.allow_insecure_targets),
            queues,
            store,
            config,
        }
    }

    /// The queues, or a 500 (logged) where a deployment forgot them.
    pub fn queues(&self) -> Result<&Queues, ApiError> {
        self.queues.as_ref().ok_or_else(|| {
            tracing::error!("INGEST_QUEUE_URL, INGEST_DLQ_URL and DELIVERY_QUEUE_URL are not set");
            ApiError::internal()
        })
    }
}

/// The AWS SDK's configuration: the default chain in AWS; the emulator's endpoint, a
/// region and placeholder credentials when `AWS_ENDPOINT_URL` names one.
pub async fn sdk_config(config: &Config) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(endpoint) = &config.aws_endpoint_url {
        let region = config
            .aws_region
            .clone()
            .unwrap_or_else(|| "us-east-1".into());
        loader = loader
            .endpoint_url(endpoint)
            .region(Region::new(region))
            .credentials_provider(Credentials::new("local", "local", None, None, "emulator"));
    }
    loader.load().await
}

/// The outbound HTTP client: connect 5 s, total 15 s, no redirects.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client's settings are valid")
}
