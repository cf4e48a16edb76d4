//! What a process builds once at start and every request shares: settings and clients.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedInterceptor};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

use crate::config::Config;
use crate::delivery::client::{DeliveryClient, TargetPolicy};
use crate::error::ApiError;
use crate::queue::Queues;
use crate::storage::Store;

/// Settings and clients, built once per process (per Lambda cold start).
#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Config,
    pub store: Store,
    /// The queues, when configured (every deployed function; the local stack).
    pub queues: Option<Queues>,
    /// Deliveries' HTTP client: guarded against private addresses unless insecure targets
    /// are allowed.
    pub delivery: DeliveryClient,
}

impl AppState {
    pub async fn new(config: Config) -> Self {
        Self::with_interceptor(config, None).await
    }

    /// Like [`AppState::new`], with an SDK interceptor on both clients (the benchmarks
    /// count and time every AWS request with one).
    pub async fn with_interceptor(config: Config, interceptor: Option<SharedInterceptor>) -> Self {
        let sdk = sdk_config(&config).await;
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&sdk);
        let mut sqs = aws_sdk_sqs::config::Builder::from(&sdk);
        if let Some(interceptor) = interceptor {
            dynamodb.push_interceptor(interceptor.clone());
            sqs.push_interceptor(interceptor);
        }
        let store = Store::new(
            aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            &config.table_name,
        );
        let sqs = aws_sdk_sqs::Client::from_conf(sqs.build());
        let queues = config.queues.as_ref().map(|urls| {
            Queues::new(
                sqs.clone(),
                urls.ingest.clone(),
                urls.delivery.clone(),
                urls.ingest_dlq.clone(),
            )
        });
        AppState {
            delivery: DeliveryClient::new(TargetPolicy::from_config(&config)),
            queues,
            store,
            config,
        }
    }

    /// Unix seconds when an event or delivery written now expires (`RETENTION_DAYS`).
    pub fn expires_at(&self) -> i64 {
        chrono::Utc::now().timestamp() + i64::from(self.config.retention_days) * 86400
    }

    /// The queues, or a 500 (logged) where a deployment forgot them.
    pub fn queues(&self) -> Result<&Queues, ApiError> {
        self.queues.as_ref().ok_or_else(|| {
            tracing::error!("INGEST_QUEUE_URL, INGEST_DLQ_URL and DELIVERY_QUEUE_URL are not set");
            ApiError::internal()
        })
    }
}

/// The AWS SDK's configuration on rustls with ring (see `tls`): the default chain in AWS;
/// the emulator's endpoint, a region and placeholder credentials when `AWS_ENDPOINT_URL`
/// names one.
pub async fn sdk_config(config: &Config) -> SdkConfig {
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(https);
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
