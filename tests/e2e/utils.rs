//! The test harness: a local stack per test (its own table in the emulator, its own API
//! server on 127.0.0.1), tenants with keys, and a small JSON client.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use shared::config::{Config, Mode};
use shared::domain::api_key::Scope;
use shared::state::AppState;
use tokio::sync::oneshot;
use tools::local::settings::LocalSettings;
use tools::local::stack::LocalStack;

/// Where every log line of the suite goes (the service's, and the commands' stderr), for
/// `scripts/check-logs` to search for the secrets in [`SECRETS_FILE`].
pub const LOG_FILE: &str = "e2e-service.log";
/// Every API key, webhook secret and Basic password the suite created, one per line.
pub const SECRETS_FILE: &str = "e2e-secrets.txt";

/// A file in the workspace's target directory.
pub fn target_file(name: &str) -> PathBuf {
    workspace_binary_dir().join("..").join(name)
}

fn workspace_binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// Sends the service's log lines (at the production level, info) to [`LOG_FILE`].
fn capture_service_logs() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(target_file(LOG_FILE))
            .expect("opening the log file");
        let _ = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
    });
}

/// Records a secret the suite handled, for the log check.
pub fn remember_secret(secret: &str) {
    use std::io::Write;
    if secret.len() < 6 {
        return; // too short to search for without matching everything
    }
    static FILE: std::sync::Mutex<Option<std::fs::File>> = std::sync::Mutex::new(None);
    let mut guard = FILE.lock().unwrap();
    let file = guard.get_or_insert_with(|| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(target_file(SECRETS_FILE))
            .expect("opening the secrets file")
    });
    let _ = writeln!(file, "{secret}");
}

/// Records every key, secret, password and custom header value in a request or response
/// body.
fn remember_secrets_in(value: &Value) {
    match value {
        Value::String(s) if s.starts_with("whsec_") || s.starts_with("whk_") => remember_secret(s),
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("password", Value::String(p)) => remember_secret(p),
                    // No custom header value is ever logged (SPEC §3), secret or not.
                    ("headers", Value::Object(headers)) => headers
                        .values()
                        .filter_map(Value::as_str)
                        .filter(|v| *v != shared::domain::headers::MASKED)
                        .for_each(remember_secret),
                    _ => remember_secrets_in(v),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(remember_secrets_in),
        _ => {}
    }
}

/// The emulator `make test` started (scripts/with-emulator); under a plain `cargo test`,
/// one this test process starts itself (and a watchdog stops when the process ends).
pub fn emulator_endpoint() -> String {
    static ENDPOINT: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    ENDPOINT
        .get_or_init(|| match std::env::var("AWS_ENDPOINT_URL") {
            Ok(url) => Ok(url),
            Err(_) => start_own_emulator(),
        })
        .clone()
        .unwrap_or_else(|why| panic!("{why}"))
}

/// Starts the emulator `make` installed on a free loopback port, under a shell that kills
/// it as soon as this test process is gone.
fn start_own_emulator() -> Result<String, String> {
    let server = tools::local::emulator::default_server_path();
    if !server.exists() {
        return Err(format!(
            "the end-to-end tests need the local AWS emulator ({} is missing): run `make test`",
            server.display()
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port for the emulator: {e}"))?
        .port();
    let watchdog = format!(
        "\"$0\" -H 127.0.0.1 -p {port} >/dev/null 2>&1 & server=$!; \
         while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill $server",
        parent = std::process::id()
    );
    Command::new("bash")
        .args(["-c", &watchdog])
        .arg(&server)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the emulator: {e}"))?;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            return Err("the emulator did not start within 30 s: run `make test`".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(format!("http://{address}"))
}

/// A binary of this workspace, built by `make test` beside this test binary.
pub fn workspace_binary(name: &str) -> PathBuf {
    let path = workspace_binary_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built: run `make test` (it builds every binary first)",
        path.display()
    );
    path
}

/// A running local stack with its own table.
pub struct Stack {
    pub url: String,
    pub table: String,
    /// The emulator's administrator: what the tests seed and inspect the stack with.
    pub state: Arc<AppState>,
    /// Each function's own state, acting as its principal (by binary).
    functions: HashMap<String, Arc<AppState>>,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::start_with(&[]).await
    }

    /// A stack whose settings are the local defaults plus `vars`.
    pub async fn start_with(vars: &[(&str, &str)]) -> Stack {
        capture_service_logs();
        let table = format!("e2e-{}", ulid::Ulid::new().to_string().to_lowercase());
        let mut settings: HashMap<String, String> = HashMap::from([
            ("AWS_ENDPOINT_URL".into(), emulator_endpoint()),
            ("TABLE_NAME".into(), table.clone()),
            ("PORT".into(), "0".into()),
            // No sweeper unless a test asks for one: a margin short enough for a test
            // would race the pipeline's own retries.
            ("LOCAL_SWEEP_INTERVAL".into(), "0s".into()),
        ]);
        for (k, v) in vars {
            settings.insert(k.to_string(), v.to_string());
        }
        let config = Config::from_vars(Mode::Local, |k| settings.get(k).cloned()).unwrap();
        let local = LocalSettings::from_vars(|k| settings.get(k).cloned()).unwrap();
        let stack = LocalStack::prepare(config, local, |_| {}).await.unwrap();
        let url = stack.url();
        let state = Arc::new(stack.state().clone());
        let functions = stack
            .functions()
            .states()
            .map(|(binary, state)| (binary.to_string(), Arc::clone(state)))
            .collect();
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(stack.run(async {
            let _ = stopped.await;
        }));
        Stack {
            url,
            table,
            state,
            functions,
            http: shared::tls::http_client(),
            stop: Some(stop),
        }
    }

    /// The state of the function built from `binary`, acting as its own principal (what a
    /// test that calls a function's handler directly runs it as).
    pub fn function(&self, binary: &str) -> &AppState {
        self.functions
            .get(binary)
            .unwrap_or_else(|| panic!("template.yaml has no function {binary}"))
    }

    /// An SQS client on the stack's emulator and the stack's queue URLs, for tests that
    /// talk to the queues as an event source or an operator would.
    pub async fn sqs(&self) -> (aws_sdk_sqs::Client, shared::config::QueueUrls) {
        let sdk = shared::state::sdk_config(&self.state.config).await;
        let urls = self.state.config.queues.clone().unwrap();
        (aws_sdk_sqs::Client::new(&sdk), urls)
    }

    /// Takes `n` messages off the ingest dead-letter queue (waiting at most `within`), with
    /// the reason each was rejected for.
    pub async fn dead_letters(&self, n: usize, within: Duration) -> Vec<(String, String)> {
        let (sqs, queues) = self.sqs().await;
        let deadline = Instant::now() + within;
        let mut found = Vec::new();
        let mut receipts = Vec::new();
        while found.len() < n {
            assert!(
                Instant::now() < deadline,
                "{} of {n} dead letters within {within:?}: {found:#?}",
                found.len()
            );
            let out = sqs
                .receive_message()
                .queue_url(&queues.ingest_dlq)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .visibility_timeout(30)
                .message_attribute_names("All")
                .send()
                .await
                .unwrap();
            for m in out.messages.unwrap_or_default() {
                let reason = m
                    .message_attributes
                    .as_ref()
                    .and_then(|a| a.get("reason"))
                    .and_then(|r| r.string_value.clone())
                    .unwrap_or_default();
                found.push((m.body.unwrap_or_default(), reason));
                receipts.extend(m.receipt_handle);
            }
        }
        // Only looked at: visible again for whoever takes them (the sweeper, an admin).
        for receipt in receipts {
            sqs.change_message_visibility()
                .queue_url(&queues.ingest_dlq)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        }
        found
    }

    /// Every item of the stack's table, as stored (a full scan, for tests of the layout and
    /// of what sits in the table).
    pub async fn dump_table(
        &self,
    ) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let sdk = shared::state::sdk_config(&self.state.config).await;
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return items,
            }
        }
    }

    /// Sends one raw message to the ingest queue, as an event source would.
    pub async fn send_to_ingest(&self, body: &str) {
        let (sqs, queues) = self.sqs().await;
        sqs.send_message()
            .queue_url(&queues.ingest)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// A new tenant with a key carrying `scopes`.
    pub async fn tenant_with(&self, scopes: &[Scope]) -> Client {
        let tenant = format!("t-{}", ulid::Ulid::new().to_string().to_lowercase());
        self.key_for(&tenant, scopes).await
    }

    /// A new tenant with every scope.
    pub async fn tenant(&self) -> Client {
        self.tenant_with(&Scope::ALL).await
    }

    /// Another key for an existing tenant.
    pub async fn key_for(&self, tenant: &str, scopes: &[Scope]) -> Client {
        let (key, _) = tools::admin::create_key(&*self.state.store, tenant, scopes.to_vec())
            .await
            .unwrap();
        remember_secret(&key);
        self.client(tenant, Some(key))
    }

    /// A client sending `key` (or no Authorization header at all).
    pub fn client(&self, tenant: &str, key: Option<String>) -> Client {
        Client {
            base: self.url.clone(),
            tenant: tenant.to_string(),
            key,
            http: self.http.clone(),
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A response: status, headers and the JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The error code of an error response.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }

    pub fn field(&self) -> Option<&str> {
        self.body["error"]["field"].as_str()
    }

    /// Asserts the status and error code together, showing the body when they differ.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "body: {}",
            self.body
        );
    }

    /// Asserts an answer API Gateway gives itself (`{"message": ...}`), as HTTP API answers
    /// a request it does not pass on (no identity source, a body over its limits).
    #[track_caller]
    pub fn assert_gateway(&self, status: u16, message: &str) {
        assert_eq!(
            (self.status, &self.body),
            (status, &serde_json::json!({ "message": message })),
        );
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        &self.body
    }
}

/// A tenant's API client.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub tenant: String,
    pub key: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send_raw(method, path, body.map(|b| b.to_string()))
            .await
    }

    pub async fn send_raw(&self, method: Method, path: &str, body: Option<String>) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .timeout(Duration::from_secs(60));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        remember_secrets_in(&body);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn post_empty(&self, path: &str) -> Reply {
        self.send(Method::POST, path, None).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }

    /// Adds event types to the tenant's catalogue.
    pub async fn event_types(&self, names: &[&str]) {
        for name in names {
            self.post(
                "/v1/event-types",
                serde_json::json!({"name": name, "description": "test"}),
            )
            .await
            .assert_status(201);
        }
    }

    /// Creates a webhook and returns its JSON (with the full secret).
    pub async fn webhook(&self, url: &str, events: Value) -> Value {
        self.post(
            "/v1/webhooks",
            serde_json::json!({"url": url, "events": events}),
        )
        .await
        .assert_status(201)
        .clone()
    }
}

impl Client {
    /// Publishes an event through the API; returns the event.
    pub async fn publish(&self, event_type: &str, data: Value) -> Value {
        self.post(
            "/v1/events",
            serde_json::json!({"type": event_type, "data": data}),
        )
        .await
        .assert_status(202)
        .clone()
    }

    /// The tenant's deliveries matching `query` (e.g. `webhook_id=...&status=...`).
    pub async fn deliveries(&self, query: &str) -> Vec<Value> {
        let reply = self.get(&format!("/v1/deliveries?limit=100&{query}")).await;
        reply.assert_status(200)["data"].as_array().unwrap().clone()
    }

    /// Waits until the deliveries matching `query` satisfy `done`; returns them.
    pub async fn wait_for_deliveries(
        &self,
        query: &str,
        within: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let found = self.deliveries(query).await;
            if done(&found) {
                return found;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "deliveries {query:?} never reached the expected state: {found:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Calls `read` until `done` holds of what it returns (at most `within`), for reads through
/// an eventually consistent index (an admin listing, as in DynamoDB, may miss a write of
/// the last second); answers the last read.
pub fn eventually<T: std::fmt::Debug>(
    within: Duration,
    mut read: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let got = read();
        if done(&got) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The `id` of an API object.
pub fn id(value: &Value) -> String {
    value["id"].as_str().unwrap().to_string()
}

/// Whether every delivery in `list` has `status`, and there are `n` of them.
pub fn all_with_status(list: &[Value], n: usize, status: &str) -> bool {
    list.len() == n && list.iter().all(|d| d["status"] == status)
}

/// A URL on this machine that nothing needs to answer (registration does not call it).
pub fn local_url(path: &str) -> String {
    format!("http://127.0.0.1:9/{path}")
}

/// Stops the child with SIGINT (as Ctrl-C would) if a test fails before it does.
pub struct Running(pub Child);

impl Running {
    pub fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn wait_for_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not stop within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            self.interrupt();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && self.0.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Where a child process of the suite writes its log: the file the log check reads.
pub fn service_log() -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(target_file(LOG_FILE))
        .unwrap()
        .into()
}
