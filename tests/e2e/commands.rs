//! The commands a newcomer runs: `webhooks-local` (what `make run` starts) and
//! `webhooks-admin --local`.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::utils::{
    LOG_FILE, Running, Stack, eventually, remember_secret, service_log, target_file,
    workspace_binary,
};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `make run`'s binary with an emulator of its own on `emulator_port`, serving on
/// `api_port` with `dev_key`; its standard output piped.
fn local_stack(api_port: u16, emulator_port: u16, dev_key: &str) -> Command {
    let mut command = Command::new(workspace_binary("webhooks-local"));
    command
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("TABLE_NAME")
        .env("PORT", api_port.to_string())
        .env("EMULATOR_PORT", emulator_port.to_string())
        .env("DEV_API_KEY", dev_key)
        .stdout(Stdio::piped())
        .stderr(service_log())
        .stdin(Stdio::null());
    command
}

/// A dev key for a local stack, known to the log check.
fn dev_key() -> String {
    let key = format!("whk_e2e_{}", ulid::Ulid::new());
    remember_secret(&key);
    key
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

#[tokio::test]
async fn the_local_stack_starts_its_emulator_prints_url_and_key_and_stops_on_ctrl_c() {
    let (api_port, emulator_port, dev_key) = (free_port(), free_port(), dev_key());
    let mut child = local_stack(api_port, emulator_port, &dev_key)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut running = Running(child);

    // Read the banner up to the key, on a thread (the pipe blocks).
    let banner = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = lines
                .last()
                .is_some_and(|l: &String| l.starts_with("Dev API key"));
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let lines = tokio::task::spawn_blocking(move || banner.join().unwrap())
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{api_port}");
    assert!(
        lines.iter().any(|l| l == &format!("API URL: {url}")),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().unwrap(),
        &dev_key,
        "the key is the last line: {lines:?}"
    );
    assert!(listening(emulator_port), "the emulator it started");

    let me = shared::tls::http_client()
        .get(format!("{url}/v1/me"))
        .bearer_auth(&dev_key)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status().as_u16(), 200);
    let body: serde_json::Value = me.json().await.unwrap();
    assert_eq!(body["tenant_id"], "dev");
    assert_eq!(body["scopes"].as_array().unwrap().len(), 5);

    running.interrupt();
    let status = running.wait_for_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    assert!(!listening(api_port), "the API stopped");
    let deadline = Instant::now() + Duration::from_secs(5);
    while listening(emulator_port) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!listening(emulator_port), "the emulator stopped with it");
}

/// Runs `webhooks-admin --local` against the stack's table; its stderr goes to the suite's
/// log, and a key or client secret it prints is remembered for the log check.
pub fn admin(stack: &Stack, args: &[&str]) -> Output {
    let output = Command::new(workspace_binary("webhooks-admin"))
        .arg("--local")
        .args(args)
        .env("TABLE_NAME", &stack.table)
        .output()
        .unwrap();
    // Its diagnostics are log lines too; its stdout is the operator's answer (the new key).
    use std::io::Write;
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(target_file(LOG_FILE))
        .unwrap();
    log.write_all(&output.stderr).unwrap();
    if let Some(key) = String::from_utf8_lossy(&output.stdout).lines().last()
        && (key.starts_with("whk_") || key.starts_with("whcs_"))
    {
        remember_secret(key);
    }
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test]
async fn webhooks_admin_creates_lists_and_revokes_keys() {
    // The gateway keeps the authorizer's answer for its cache's TTL, as API Gateway does: a
    // revoked key works until then.
    let stack = Stack::start_with(&[("AUTHORIZER_CACHE_TTL_SECONDS", "8")]).await;
    let tenant = format!("acme-{}", ulid::Ulid::new().to_string().to_lowercase());
    let created = admin(
        &stack,
        &[
            "create-key",
            "--tenant",
            &tenant,
            "--scopes",
            "webhooks:read,webhooks:write",
        ],
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let text = stdout(&created);
    let key = text.lines().last().unwrap().to_string();
    assert!(key.starts_with("whk_"), "{text}");
    let key_id = text
        .lines()
        .find_map(|l| l.strip_prefix("key_id: "))
        .unwrap()
        .to_string();

    let client = stack.client(&tenant, Some(key.clone()));
    let me = client.get("/v1/me").await;
    // The gateway kept the answer before this instant.
    let authorized_at = std::time::Instant::now();
    assert_eq!(
        me.assert_status(200),
        &json!({"tenant_id": tenant, "key_id": key_id, "scopes": ["webhooks:read", "webhooks:write"]})
    );

    // Listed through an eventually consistent index: the new key shows within moments.
    let listed = eventually(
        Duration::from_secs(5),
        || admin(&stack, &["list-keys", "--tenant", &tenant]),
        |out| stdout(out).contains(&key_id),
    );
    assert!(listed.status.success());
    let listing = stdout(&listed);
    assert!(
        listing.contains(&key_id) && listing.contains("active"),
        "{listing}"
    );
    assert!(!listing.contains(&key), "a listing never shows the key");

    let revoked = admin(&stack, &["revoke-key", "--key-id", &key_id]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert!(authorized_at.elapsed() < std::time::Duration::from_secs(7));
    client.get("/v1/me").await.assert_status(200);
    let expired = std::time::Duration::from_millis(8100).saturating_sub(authorized_at.elapsed());
    tokio::time::sleep(expired).await;
    client.get("/v1/me").await.assert_error(401, "UNAUTHORIZED");
    let listing = stdout(&eventually(
        Duration::from_secs(5),
        || admin(&stack, &["list-keys", "--tenant", &tenant]),
        |out| stdout(out).contains("revoked"),
    ));
    assert!(listing.contains("revoked"), "{listing}");
}

#[tokio::test]
async fn webhooks_admin_explains_its_refusals() {
    let stack = Stack::start().await;
    let bad_scope = admin(
        &stack,
        &[
            "create-key",
            "--tenant",
            "acme",
            "--scopes",
            "webhooks:admin",
        ],
    );
    assert!(!bad_scope.status.success());
    assert!(String::from_utf8_lossy(&bad_scope.stderr).contains("webhooks:admin"));
    let bad_tenant = admin(
        &stack,
        &["create-key", "--tenant", "a#b", "--scopes", "webhooks:read"],
    );
    assert!(!bad_tenant.status.success());
    let unknown = admin(
        &stack,
        &["revoke-key", "--key-id", "key_01ARZ3NDEKTSV4RRFFQ69G5FAV"],
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no key"));
    // Without --local it needs the deployed table's name, and says so before calling AWS.
    let no_table = Command::new(workspace_binary("webhooks-admin"))
        .args(["list-keys", "--tenant", "acme"])
        .env_remove("TABLE_NAME")
        .output()
        .unwrap();
    assert!(!no_table.status.success());
    assert!(String::from_utf8_lossy(&no_table.stderr).contains("TABLE_NAME"));
}

/// `webhooks-admin redrive` brings dead-lettered messages back as delivery tasks, and they
/// are delivered; a message rejected as never processable stays, with its reason shown.
#[tokio::test]
async fn webhooks_admin_redrive_moves_dead_letters_back() {
    let stack = Stack::start().await;
    let receiver = crate::receiver::Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    client.webhook(&receiver.url("redriven"), json!("*")).await;
    let (sqs, queues) = stack.sqs().await;
    let stranded = json!({"tenant_id": client.tenant, "type": "user.created", "data": {"n": 1}});
    sqs.send_message()
        .queue_url(&queues.ingest_dlq)
        .message_body(stranded.to_string())
        .send()
        .await
        .unwrap();
    sqs.send_message()
        .queue_url(&queues.ingest_dlq)
        .message_body("{not json")
        .message_attributes(
            "reason",
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value("not JSON: key must be a string")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let output = admin(&stack, &["redrive"]);
    let text = stdout(&output);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("ingest: 1 brought back to the delivery queue"),
        "{text}"
    );
    assert!(
        text.contains("ingest: 1 left in the dead-letter queue"),
        "{text}"
    );
    assert!(text.contains("not JSON"), "{text}");
    assert!(text.contains("delivery: 0 brought back"), "{text}");
    let got = receiver
        .wait_for("redriven", 1, Duration::from_secs(20))
        .await;
    assert_eq!(got[0].json()["data"], json!({"n": 1}));
    let kept = stack.dead_letters(1, Duration::from_secs(10)).await;
    assert_eq!(kept[0].0, "{not json");
}

/// `make smoke` against the local stack: the whole path (a key, an event type, a webhook to
/// the smoke receiver's function URL, an event, its signed delivery, its record), checked
/// from outside by the `webhooks-smoke` binary that `make smoke` runs.
#[tokio::test]
async fn make_smoke_passes_against_the_local_stack() {
    let output = Command::new(workspace_binary("webhooks-smoke"))
        .env("AWS_ENDPOINT_URL", crate::utils::emulator_endpoint())
        .env_remove("SMOKE_API_URL")
        .stderr(service_log())
        .output()
        .unwrap();
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.starts_with("smoke: passed in "), "{text}");
}

/// The README's walk-through, as a newcomer runs it: `make run` (here its binary, with its
/// own emulator and the short retry schedule the README suggests), then the README's
/// commands verbatim as one script, against a receiver that fails every POST. Meanwhile
/// `make run` prints one readable line per API request and per delivery attempt.
#[tokio::test]
async fn the_readme_walkthrough_runs_as_written_and_make_run_shows_each_request_and_attempt() {
    let (api_port, emulator_port, dev_key) = (free_port(), free_port(), dev_key());
    let mut child = local_stack(api_port, emulator_port, &dev_key)
        .env_remove("RUST_LOG")
        .env("RETRY_SCHEDULE", "2s,2s")
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = std::sync::Arc::clone(&printed);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            sink.lock().unwrap().push(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while !printed.lock().unwrap().iter().any(|l| l == &dev_key) {
        assert!(Instant::now() < deadline, "no banner within 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let receiver = crate::receiver::Receiver::start().await;
    receiver.default("hooks", crate::receiver::Answer::Status(501));
    let script = walkthrough();
    let api = format!("http://127.0.0.1:{api_port}");
    let mut bash = Command::new("bash");
    bash.args(["-euo", "pipefail", "-c", &script])
        .env("DEV_API_KEY", &dev_key)
        .env("API", &api)
        .env("RECEIVER", receiver.url("hooks"));
    // Off the runtime's thread: the receiver answers on it meanwhile.
    let run = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::task::spawn_blocking(move || bash.output()),
    )
    .await
    .expect("the walk-through finished within 90 s")
    .unwrap()
    .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the walk-through failed: {}\n{out}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    // It ended where it says: the delivery failed after its schedule and the manual retry,
    // the webhook active again.
    let get = |path: &str| {
        let (url, key) = (format!("{api}{path}"), dev_key.clone());
        async move {
            let answer = shared::tls::http_client()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            answer.json::<serde_json::Value>().await.unwrap()
        }
    };
    let webhooks = get("/v1/webhooks").await;
    assert_eq!(webhooks["data"][0]["status"], "active", "{webhooks}");
    let failed = get("/v1/deliveries?status=failed").await;
    assert_eq!(
        failed["data"][0]["attempts"], 4,
        "three automatic, one by hand: {failed}"
    );

    // make run's readable lines: each request, each attempt with what follows.
    let lines = printed.lock().unwrap().clone();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(
        has("request  POST /v1/events -> 202 tenant dev"),
        "{lines:#?}"
    );
    assert!(has("request  GET /v1/me -> 200 tenant dev"), "{lines:#?}");
    assert!(
        has("user.created") && has(" #1 -> 501 in ") && has("; pending, next attempt at "),
        "{lines:#?}"
    );
    assert!(has(" #3 -> 501 in ") && has("; failed"), "{lines:#?}");
    let with_key: Vec<&String> = lines.iter().filter(|l| l.contains(&dev_key)).collect();
    assert_eq!(with_key, [&dev_key], "the key appears only in the banner");
}

/// The README's walk-through: the `sh` block after its `<!-- walkthrough -->` marker.
fn walkthrough() -> String {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    let (_, after) = readme
        .split_once("<!-- walkthrough -->")
        .expect("the README marks its walk-through");
    let (_, block) = after
        .split_once("```sh\n")
        .expect("a sh block follows the marker");
    let (script, _) = block.split_once("\n```").expect("the block ends");
    script.to_string()
}
