//! The whole local stack in one value: the emulator (unless one is already running), the
//! table as template.yaml declares it, and the API server on loopback.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::emulator::{Emulator, default_log_path, default_server_path};
use super::functions::Functions;
use super::pollers::{EventSource, poll};
use super::principals::{Resolver, principal_arn, principal_name};
use super::provision::{
    LocalKey, LocalQueue, ensure_kms_keys, ensure_queue_policies, ensure_queues, ensure_table,
};
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
    /// The queues the deliver function reads, as its event source mappings do.
    event_sources: Vec<EventSource>,
    settings: LocalSettings,
    /// The administrator's state: provisioning, the admin command, the tests' inspection.
    admin: Arc<AppState>,
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
    /// Starts the emulator if needed, creates the table, queues and keys if missing, gives
    /// every function its own principal and binds the API's port (`settings.port`; 0 picks
    /// a free one). `progress` hears each step.
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
                    "starting the local AWS emulator on 127.0.0.1:{port} (its log: {})",
                    default_log_path().display()
                ));
                let emulator = Emulator::start(&default_server_path(), port)?;
                config.aws_endpoint_url = Some(emulator.endpoint().to_string());
                Some(emulator)
            }
        };
        let Provisioned {
            config,
            queues,
            resolver,
        } = Provisioned::ensure(config, &template, &progress).await?;
        check_settings(&template, &settings)?;
        let prefix = config.table_name.clone();
        let functions = Functions::start(&template, &config, &resolver, &prefix).await?;
        if functions.enforced {
            let sqs = aws_sdk_sqs::Client::new(&shared::state::sdk_config(&config).await);
            let policies = ensure_queue_policies(&sqs, &template, &queues, &resolver).await?;
            progress(&format!(
                "{} functions, each its own principal with template.yaml's permissions \
                 (enforced by the emulator), {policies} queue policy set",
                template.functions()?.len()
            ));
        } else {
            progress(
                "this emulator enforces no IAM (it is not the project's): every function acts \
                 as the administrator",
            );
        }
        let event_sources = template
            .sqs_event_sources("deliver")?
            .into_iter()
            .map(|spec| {
                let q = queues
                    .get(&spec.queue)
                    .ok_or_else(|| format!("deliver reads an undeclared queue {}", spec.queue))?;
                Ok(EventSource {
                    url: q.url.clone(),
                    arn: q.arn.clone(),
                    spec,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let smoke = match functions.get("smoke_receiver") {
            Ok(receiver) => {
                let sdk =
                    shared::state::sdk_config_as(&config, receiver.state.credentials.clone()).await;
                Some(shared::smoke::SmokeLog::new(
                    aws_sdk_dynamodb::Client::new(&sdk),
                    &config.table_name,
                ))
            }
            Err(_) => None,
        };
        let admin = Arc::new(AppState::new(config).await);
        let api = Arc::new(LocalApi::new(functions, &template, &settings, smoke)?);
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
            admin,
        })
    }

    /// The administrator's state (the tests inspect and seed the stack with it).
    pub fn state(&self) -> &AppState {
        &self.admin
    }

    /// The functions, each with its own state.
    pub fn functions(&self) -> &Functions {
        self.api.functions()
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
        let mut pollers = Vec::new();
        if let Ok(deliver) = api.functions().get("deliver") {
            for source in event_sources {
                for _ in 0..settings.pollers {
                    pollers.push(tokio::spawn(poll(
                        Arc::clone(&deliver.state),
                        deliver.spec.timeout,
                        source.clone(),
                        settings.visibility_timeout,
                        stopped.clone(),
                    )));
                }
            }
        }
        if let (Some(every), Ok(sweeper)) =
            (settings.sweep_interval, api.functions().get("sweeper"))
        {
            pollers.push(tokio::spawn(sweep_every(
                Arc::clone(&sweeper.state),
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

/// The stack's resources, made in the emulator as template.yaml declares them (those that
/// exist are kept), and the settings that name them.
pub struct Provisioned {
    /// The settings, with the queues' URLs and the keys' aliases filled in.
    pub config: Config,
    pub queues: std::collections::HashMap<String, LocalQueue>,
    /// The template's references, resolved to these resources.
    pub resolver: Resolver,
}

impl Provisioned {
    /// Creates the table, queues and keys the template declares, unless they exist.
    pub async fn ensure(
        mut config: Config,
        template: &Template,
        progress: &impl Fn(&str),
    ) -> Result<Provisioned, String> {
        let sdk = shared::state::sdk_config(&config).await;
        let prefix = config.table_name.clone();
        let created = ensure_table(&aws_sdk_dynamodb::Client::new(&sdk), template, &prefix).await?;
        progress(&format!(
            "table {prefix} {}",
            if created {
                "created from template.yaml"
            } else {
                "already exists"
            }
        ));
        let queues = ensure_queues(&aws_sdk_sqs::Client::new(&sdk), template, &prefix).await?;
        let queue = |logical_id: &str| {
            queues
                .get(logical_id)
                .map(|q| q.url.clone())
                .ok_or_else(|| format!("template.yaml declares no queue {logical_id}"))
        };
        config.queues = Some(QueueUrls {
            ingest: queue(INGEST_QUEUE)?,
            ingest_dlq: queue(INGEST_DLQ)?,
            delivery: queue(DELIVERY_QUEUE)?,
            delivery_dlq: Some(queue(DELIVERY_DLQ)?),
        });
        progress(&format!(
            "{} queues created from template.yaml",
            queues.len()
        ));
        let keys = ensure_kms_keys(&aws_sdk_kms::Client::new(&sdk), template, &prefix).await?;
        let key = |logical_id: &str| {
            keys.get(logical_id)
                .map(|k| k.alias.clone())
                .ok_or_else(|| format!("template.yaml declares no KMS key {logical_id}"))
        };
        config.secrets_key_id = Some(key(SECRETS_KEY)?);
        config.token_key_id = Some(key(TOKEN_KEY)?);
        progress(&format!(
            "secrets sealed under the KMS key {}, access tokens signed by {}",
            key(SECRETS_KEY)?,
            key(TOKEN_KEY)?
        ));
        let resolver = local_resolver(template, &config, &queues, &keys)?;
        Ok(Provisioned {
            config,
            queues,
            resolver,
        })
    }
}

/// What the template's references resolve to in this stack: the table, queues and keys,
/// each function's role (its principal), each log group.
fn local_resolver(
    template: &Template,
    config: &Config,
    queues: &std::collections::HashMap<String, LocalQueue>,
    keys: &std::collections::HashMap<String, LocalKey>,
) -> Result<Resolver, String> {
    let region = config
        .aws_region
        .clone()
        .unwrap_or_else(|| "us-east-1".into());
    // arn:aws:sqs:<region>:<account>:<name>
    let account = queues
        .values()
        .next()
        .and_then(|q| q.arn.split(':').nth(4))
        .unwrap_or("123456789012")
        .to_string();
    let prefix = &config.table_name;
    let mut resolver = Resolver::new(template, &region, &account, prefix);
    for table in template.resources_of_type("AWS::DynamoDB::Table") {
        resolver.set_ref(&table.logical_id, prefix);
        resolver.set_attribute(
            &table.logical_id,
            "Arn",
            format!("arn:aws:dynamodb:{region}:{account}:table/{prefix}"),
        );
    }
    for (id, queue) in queues {
        resolver.set_ref(id, &queue.url);
        resolver.set_attribute(id, "Arn", &queue.arn);
        resolver.set_attribute(id, "QueueName", format!("{prefix}-{id}"));
    }
    for (id, key) in keys {
        resolver.set_ref(id, key.arn.rsplit('/').next().unwrap_or_default());
        resolver.set_attribute(id, "Arn", &key.arn);
    }
    for function in template.functions()? {
        let arn = principal_arn(&account, &principal_name(prefix, &function));
        resolver.set_attribute(&function.role, "Arn", arn);
        resolver.set_ref(
            &function.logical_id,
            format!("{prefix}-{}", function.binary),
        );
    }
    for group in template.resources_of_type("AWS::Logs::LogGroup") {
        let name = resolver
            .resolve(&group.properties["LogGroupName"])
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("/aws/lambda/{prefix}-{}", group.logical_id));
        resolver.set_attribute(
            &group.logical_id,
            "Arn",
            format!("arn:aws:logs:{region}:{account}:log-group:{name}:*"),
        );
        resolver.set_ref(&group.logical_id, name);
    }
    Ok(resolver)
}

/// Refuses local settings AWS would refuse for the same configuration.
fn check_settings(template: &Template, settings: &LocalSettings) -> Result<(), String> {
    if let Some(seconds) = settings.visibility_timeout
        && seconds > 43_200
    {
        return Err(format!(
            "LOCAL_VISIBILITY_TIMEOUT: {seconds} s is over SQS's 12 hours (43,200 s)"
        ));
    }
    let visibility = |id: &str| {
        template
            .resource(id)
            .and_then(|q| q.pointer("/Properties/VisibilityTimeout"))
            .and_then(|v| v.as_u64())
            .unwrap_or(30)
    };
    for queue in template.resources_of_type("AWS::SQS::Queue") {
        if visibility(&queue.logical_id) > 43_200 {
            return Err(format!(
                "template.yaml: {}.VisibilityTimeout is over SQS's 12 hours",
                queue.logical_id
            ));
        }
    }
    // Lambda refuses an SQS event source whose queue hides a message for less time than
    // the function may run.
    for function in template.functions()? {
        for source in template.sqs_event_sources(&function.binary)? {
            if visibility(&source.queue) < function.timeout.as_secs() {
                return Err(format!(
                    "template.yaml: {}.VisibilityTimeout ({} s) is shorter than {}'s Timeout ({} s)",
                    source.queue,
                    visibility(&source.queue),
                    function.binary,
                    function.timeout.as_secs()
                ));
            }
        }
    }
    Ok(())
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
        if let Err(e) = shared::delivery::sweep::sweep(&*state).await {
            tracing::warn!(error = %e, "local sweeper: the sweep will run again");
        }
    }
}
