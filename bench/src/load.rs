//! `make load`: a bounded load run on loopback against the local stack (`webhooks-local`
//! with its own emulator): 50 concurrent clients make 5,000 mixed API requests, a fifth of
//! them events, and every delivery must reach the receiver. Reports throughput, p50/p99,
//! 5xx and lost deliveries; fails on any 5xx or loss.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{Value, json};

const CLIENTS: usize = 50;
const REQUESTS: usize = 5_000;
const WEBHOOKS: usize = 5;

/// (webhook-id header, path) of every delivery received.
type Seen = Arc<Mutex<HashSet<(String, String)>>>;

async fn receiver() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let seen: Seen = Arc::default();
    let shared = Arc::clone(&seen);
    tokio::spawn(crate::serve::serve(
        listener,
        move |req: crate::serve::Request| {
            let seen = Arc::clone(&shared);
            async move {
                let id = req
                    .headers()
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let path = req.uri().path().to_string();
                let _ = req.into_body().collect().await;
                seen.lock().expect("lock").insert((id, path));
                crate::serve::ok()
            }
        },
    ));
    (base, seen)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub async fn run(local_binary: &std::path::Path) -> Result<(), String> {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
    };
    let (api_port, emulator_port) = (
        free().map_err(|e| e.to_string())?,
        free().map_err(|e| e.to_string())?,
    );
    let key = format!("whk_load_{}", ulid::Ulid::new());
    let mut stack = Command::new(local_binary)
        .env_remove("AWS_ENDPOINT_URL")
        .env("PORT", api_port.to_string())
        .env("EMULATOR_PORT", emulator_port.to_string())
        .env("DEV_API_KEY", &key)
        .env("TABLE_NAME", "webhooks-load")
        .env("DELIVER_ONLY_TO_LOOPBACK", "true")
        .env("RETRY_SCHEDULE", "1s,2s,4s")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", local_binary.display()))?;
    let stdout = stack.stdout.take().ok_or("no stdout")?;
    std::thread::spawn(move || for _ in BufReader::new(stdout).lines() {});
    let result = drive(api_port, &key).await;
    let _ = Command::new("kill")
        .args(["-INT", &stack.id().to_string()])
        .status();
    let _ = stack.wait();
    result
}

async fn drive(api_port: u16, key: &str) -> Result<(), String> {
    let api = format!("http://127.0.0.1:{api_port}");
    let http = shared::tls::http_client();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http
        .get(format!("{api}/v1/me"))
        .bearer_auth(key)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        if Instant::now() > deadline {
            return Err("the local stack did not come up".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (receiver, seen) = receiver().await;
    for t in ["load.created", "load.updated"] {
        http.post(format!("{api}/v1/event-types"))
            .bearer_auth(key)
            .json(&json!({"name": t}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut webhook_ids = Vec::new();
    for n in 0..WEBHOOKS {
        let wh: Value = http
            .post(format!("{api}/v1/webhooks"))
            .bearer_auth(key)
            .json(&json!({"url": format!("{receiver}/w{n}"), "events": "load.*"}))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        webhook_ids.push(wh["id"].as_str().unwrap_or_default().to_string());
    }
    eprintln!("load: {CLIENTS} clients, {REQUESTS} requests against {api}");
    let started = Instant::now();
    let results: Vec<(u16, f64, bool)> = futures::stream::iter(0..REQUESTS)
        .map(|n| {
            let (http, api, key) = (http.clone(), api.clone(), key.to_string());
            let webhook = webhook_ids[n % WEBHOOKS].clone();
            async move {
                let request = match n % 10 {
                    0 | 1 => http
                        .post(format!("{api}/v1/events"))
                        .json(&json!({"type": "load.created", "data": {"n": n}})),
                    2..=4 => http.get(format!("{api}/v1/webhooks?limit=10")),
                    5 | 6 => http.get(format!("{api}/v1/webhooks/{webhook}")),
                    7 => http.get(format!("{api}/v1/events?limit=5")),
                    8 => http.get(format!("{api}/v1/deliveries?limit=5")),
                    _ => http.get(format!("{api}/v1/me")),
                };
                let at = Instant::now();
                let status = request
                    .bearer_auth(&key)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                (status, at.elapsed().as_secs_f64() * 1000.0, n % 10 < 2)
            }
        })
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies: Vec<f64> = results.iter().map(|r| r.1).collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let server_errors = results.iter().filter(|r| r.0 >= 500 || r.0 == 0).count();
    let events = results.iter().filter(|r| r.2 && r.0 == 202).count();
    let expected = events * WEBHOOKS;
    let wait = Instant::now() + Duration::from_secs(180);
    while seen.lock().expect("lock").len() < expected && Instant::now() < wait {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let received = seen.lock().expect("lock").len();
    let summary = json!({
        "clients": CLIENTS, "requests": REQUESTS, "seconds": elapsed,
        "requests_per_s": REQUESTS as f64 / elapsed,
        "p50_ms": percentile(&latencies, 50.0), "p99_ms": percentile(&latencies, 99.0),
        "server_errors": server_errors, "events_accepted": events,
        "deliveries_expected": expected, "deliveries_received": received,
        "deliveries_lost": expected.saturating_sub(received),
        "delivery_drain_seconds": started.elapsed().as_secs_f64() - elapsed,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?
    );
    if server_errors > 0 || received < expected {
        return Err(format!(
            "{server_errors} server errors, {} deliveries lost",
            expected - received.min(expected)
        ));
    }
    Ok(())
}
