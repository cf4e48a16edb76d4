//! What a process builds once at start and every request shares: settings and clients.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedInterceptor};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

use std::sync::Arc;

use crate::config::Config;
use crate::delivery::client::{DeliveryClient, TargetPolicy, Transport};
use crate::delivery::warm::Warm;
use crate::queue::TaskQueue;
use crate::queue::sqs::SqsQueues;
use crate::secrets::{Keyring, KmsKeyring, NoKeyring, Sealer};
use crate::storage::Store;
use crate::storage::dynamo::DynamoStore;
use crate::storage::dynamo::throttles::ThrottleCounter;
use crate::tokens::{KmsSigner, TokenSigner, Tokens};

/// Settings and clients, built once per process (per Lambda cold start). Storage, queues,
/// keys and the delivery transport are behind their ports: DynamoDB, SQS, KMS and HTTP
/// here, memory in unit tests.
#[derive(Clone)]
pub struct AppState {
    pub config: Config,
    pub store: Arc<dyn Store>,
    /// The queues, when configured (every deployed function; the local stack).
    pub queues: Option<Arc<dyn TaskQueue>>,
    /// Deliveries' HTTP client: guarded against private addresses unless insecure targets
    /// are allowed.
    pub transport: Arc<dyn Transport>,
    /// Seals and opens webhooks' confidential values (KMS envelope encryption).
    pub sealer: Arc<Sealer>,
    /// Issues and verifies access tokens (the KMS signing key's public half, cached).
    pub tokens: Arc<Tokens>,
    /// What a warm deliver instance remembers between batches: tenants' views, webhooks'
    /// health.
    pub warm: Arc<Warm>,
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
        dynamodb.push_interceptor(SharedInterceptor::new(ThrottleCounter));
        let mut sqs = aws_sdk_sqs::config::Builder::from(&sdk);
        let mut kms = aws_sdk_kms::config::Builder::from(&sdk);
        if let Some(interceptor) = interceptor {
            dynamodb.push_interceptor(interceptor.clone());
            sqs.push_interceptor(interceptor.clone());
            kms.push_interceptor(interceptor);
        }
        let kms = aws_sdk_kms::Client::from_conf(kms.build());
        let keyring: Arc<dyn Keyring> = match &config.secrets_key_id {
            Some(key_id) => Arc::new(KmsKeyring::new(kms.clone(), key_id)),
            None => Arc::new(NoKeyring),
        };
        let signer = match &config.token_key_id {
            Some(key_id) => TokenSigner::Kms(KmsSigner::new(kms, key_id)),
            None => TokenSigner::Unset,
        };
        let tokens = Tokens::new(signer, &config.token_issuer, &config.token_audience);
        let store = DynamoStore::new(
            aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            &config.table_name,
        );
        let sqs = aws_sdk_sqs::Client::from_conf(sqs.build());
        let queues = config
            .queues
            .as_ref()
            .map(|urls| Arc::new(SqsQueues::new(sqs.clone(), urls)) as Arc<dyn TaskQueue>);
        AppState {
            transport: Arc::new(DeliveryClient::new(TargetPolicy::from_config(&config))),
            queues,
            store: Arc::new(store),
            sealer: Arc::new(Sealer::new(keyring)),
            warm: Arc::default(),
            tokens: Arc::new(tokens),
            config,
        }
    }

    /// Unix seconds when an event or delivery written now expires (`RETENTION_DAYS`).
    pub fn expires_at(&self) -> i64 {
        chrono::Utc::now().timestamp() + i64::from(self.config.retention_days) * 86400
    }

    /// The queues, if configured (logged as a misconfiguration where they are needed).
    pub fn queues(&self) -> Option<&dyn TaskQueue> {
        let queues = self.queues.as_deref();
        if queues.is_none() {
            tracing::error!("INGEST_QUEUE_URL, INGEST_DLQ_URL and DELIVERY_QUEUE_URL are not set");
        }
        queues
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
