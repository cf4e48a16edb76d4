//! What a process builds once at start and every request shares: settings and clients.

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedHttpClient, SharedInterceptor};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use parking_lot::Mutex;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::Config;
use crate::delivery::Pipeline;
use crate::delivery::attempt::Attempts;
use crate::delivery::http::{DeliveryClient, TargetPolicy, Transport};
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
    /// The event types' compiled schemas (the publish route and the deliver function).
    pub schemas: Arc<crate::schemas::Schemas>,
    /// Whom the clients act as on the local emulator (`None`: its administrator, or in AWS
    /// the function's role). The local stack's pollers receive as it, as the function's
    /// event source mapping does with its role.
    pub credentials: Option<Credentials>,
    /// What this instance saw last of each tenant's API rate limit.
    pub limit_hints: Arc<LimitHints>,
}

/// What an instance remembers of each tenant's API rate limit (its TAT, see
/// `api::limits`): which conditional write to try first.
#[derive(Default)]
pub struct LimitHints {
    tats: Mutex<HashMap<String, i64>>,
}

/// Tenants remembered before the hints start over.
const HINTS: usize = 10_000;

impl LimitHints {
    pub fn get(&self, tenant_id: &str) -> Option<i64> {
        let tats = self.tats.lock();
        tats.get(tenant_id).copied()
    }

    pub fn put(&self, tenant_id: &str, tat: i64) {
        let mut tats = self.tats.lock();
        if tats.len() >= HINTS {
            tats.clear();
        }
        tats.insert(tenant_id.to_string(), tat);
    }
}

/// How a state's AWS clients connect, besides the settings: whom they act as locally, and
/// what watches their requests.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// The principal the clients act as on the local emulator (a function's own, made from
    /// its template policies); the emulator's administrator when `None`. Ignored in AWS,
    /// where the default chain (the function's role) decides.
    pub credentials: Option<Credentials>,
    /// An SDK interceptor on every client (the benchmarks count and time every AWS request
    /// with one).
    pub interceptor: Option<SharedInterceptor>,
}

impl<'a> From<&'a AppState> for Pipeline<'a> {
    fn from(state: &'a AppState) -> Self {
        Pipeline {
            config: &state.config,
            store: &*state.store,
            queues: state.queues.as_deref(),
            transport: &*state.transport,
            sealer: &state.sealer,
            warm: &state.warm,
            schemas: &state.schemas,
        }
    }
}

impl AppState {
    /// What the delivery attempts use of this state.
    pub fn attempts(&self) -> Attempts<'_> {
        Pipeline::from(self).attempts()
    }

    pub async fn new(config: Config) -> Self {
        Self::connect(config, Connection::default()).await
    }

    /// Like [`AppState::new`], with an SDK interceptor on every client.
    pub async fn with_interceptor(config: Config, interceptor: Option<SharedInterceptor>) -> Self {
        Self::connect(
            config,
            Connection {
                interceptor,
                ..Connection::default()
            },
        )
        .await
    }

    /// A state whose clients connect as `connection` says.
    pub async fn connect(config: Config, connection: Connection) -> Self {
        let Connection {
            credentials,
            interceptor,
        } = connection;
        let sdk = sdk_config_as(&config, credentials.clone()).await;
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&sdk);
        dynamodb.push_interceptor(SharedInterceptor::new(ThrottleCounter));
        let mut sqs = aws_sdk_sqs::config::Builder::from(&sdk).timeout_config(queue_timeouts());
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
            schemas: Arc::default(),
            tokens: Arc::new(tokens),
            config,
            credentials,
            limit_hints: Arc::default(),
        }
    }

    /// Unix seconds when an event or delivery written now expires (`RETENTION_DAYS`).
    pub fn expires_at(&self) -> i64 {
        self.config.expires_at()
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

/// The local emulator's administrator (`scripts/emulator.py`): what provisioning, the
/// admin command and the tests' own inspection act as. Every function acts as its own
/// principal instead (see `Connection`).
pub const LOCAL_ADMIN_ACCESS_KEY: &str = "AKIAWEBHOOKSLOCAL000";
pub const LOCAL_ADMIN_SECRET_KEY: &str = "webhooks-local-administrator-secret-0000";

/// The local emulator's administrator's credentials.
pub fn local_admin_credentials() -> Credentials {
    Credentials::new(
        LOCAL_ADMIN_ACCESS_KEY,
        LOCAL_ADMIN_SECRET_KEY,
        None,
        None,
        "emulator-admin",
    )
}

/// How long one AWS request may take, and all its retries together. Lambda's own timeout
/// (10 s for a route, the authorizer included) must not be what ends a call to a storage
/// or key service that does not answer: the call ends first, as a 503 to retry.
pub const AWS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
pub const AWS_OPERATION_TIMEOUT: Duration = Duration::from_secs(7);
pub const AWS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The timeouts of every AWS client. An SQS receive long-polls for up to 20 s, so the
/// queues' client gets that much more.
fn timeouts(extra: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(AWS_CONNECT_TIMEOUT)
        .operation_attempt_timeout(AWS_ATTEMPT_TIMEOUT + extra)
        .operation_timeout(AWS_OPERATION_TIMEOUT + extra)
        .build()
}

/// The SQS client's timeouts: room for a 20 s long poll.
pub fn queue_timeouts() -> TimeoutConfig {
    timeouts(Duration::from_secs(20))
}

/// The HTTPS client every AWS client of the process shares (rustls with ring, see `tls`).
fn https_client() -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https()
        })
        .clone()
}

/// The AWS SDK's configuration, acting as the local administrator on an emulator (see
/// [`sdk_config_as`]).
pub async fn sdk_config(config: &Config) -> SdkConfig {
    sdk_config_as(config, None).await
}

/// The AWS SDK's configuration on rustls with ring: the default chain in AWS; when
/// `AWS_ENDPOINT_URL` names an emulator, its endpoint, a region and `credentials` (the
/// emulator's administrator when `None`). Every client gets [`AWS_OPERATION_TIMEOUT`].
pub async fn sdk_config_as(config: &Config, credentials: Option<Credentials>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .timeout_config(timeouts(Duration::ZERO));
    if let Some(endpoint) = &config.aws_endpoint_url {
        let region = config
            .aws_region
            .clone()
            .unwrap_or_else(|| "us-east-1".into());
        let from_settings = config
            .emulator_access_key
            .as_ref()
            .map(|key| Credentials::new(&key.id, &key.secret, None, None, "environment"));
        loader = loader
            .endpoint_url(endpoint)
            .region(Region::new(region))
            .credentials_provider(
                credentials
                    .or(from_settings)
                    .unwrap_or_else(local_admin_credentials),
            );
    }
    loader.load().await
}
