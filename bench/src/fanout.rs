//! The deliver process of the fan-out bench: it seeds a tenant with 100 webhooks, then hands
//! batches of 10 events to the real `deliver_batch`, measuring wall time, its own CPU time,
//! the AWS requests it made and its peak memory. It also measures the ceiling: the same
//! HTTP client POSTing the same bodies with no service logic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::config::SharedInterceptor;
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value, json};
use shared::config::{Config, Mode, QueueUrls};
use shared::delivery::client::{DeliveryClient, Outgoing, TargetPolicy};
use shared::domain::event_type::EventType;
use shared::domain::webhook::{Secret, Webhook};
use shared::ids::IdKind;
use shared::state::AppState;

use crate::meter::{AwsMeter, Counts};

pub const EVENTS_PER_BATCH: usize = 10;
pub const WEBHOOKS: usize = 100;
pub const TENANT: &str = "bench";
pub const EVENT_TYPE: &str = "bench.order.created";

/// What one measured invocation did.
#[derive(Debug, Serialize)]
pub struct Run {
    pub deliveries: usize,
    pub wall_ms: f64,
    pub cpu_ms: f64,
    pub failures: usize,
    pub counts: Counts,
}

#[derive(Debug, Serialize)]
pub struct FanoutReport {
    pub runs: Vec<Run>,
    pub peak_rss_kb: u64,
}

/// This process's CPU time (user + system), from /proc/self/stat, in milliseconds.
pub fn process_cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command (which is in parentheses): utime is the 14th, stime the 15th.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    ticks * 10.0 // USER_HZ is 100 on Linux
}

/// This process's peak resident memory (VmHWM), in kB.
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A realistic event body of about 600 bytes.
pub fn event_data(n: usize) -> Map<String, Value> {
    json!({
        "order_id": format!("ord_{n:08}"),
        "customer": {"id": "cus_0042", "email": "ada@example.com", "name": "Ada Lovelace"},
        "items": [
            {"sku": "sku-1", "quantity": 2, "unit_price": 1999},
            {"sku": "sku-2", "quantity": 1, "unit_price": 4999}
        ],
        "currency": "EUR",
        "total": 8997,
        "shipping": {"line1": "12 Analytical Engine Row", "city": "London", "postcode": "N1 9GU", "country": "GB"},
        "notes": "x".repeat(200),
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}

fn batch(round: usize) -> SqsEvent {
    let mut event = SqsEvent::default();
    for n in 0..EVENTS_PER_BATCH {
        let mut record = SqsMessage::default();
        let id = format!("bench-{round}-{n}-{}", ulid::Ulid::new());
        record.message_id = Some(id.clone());
        record.receipt_handle = Some(id);
        record.body = Some(
            json!({"tenant_id": TENANT, "type": EVENT_TYPE, "data": event_data(n)}).to_string(),
        );
        record
            .attributes
            .insert("ApproximateReceiveCount".into(), "1".into());
        event.records.push(record);
    }
    event
}

async fn seed(state: &AppState, receiver: &str) {
    let et = EventType {
        name: EVENT_TYPE.into(),
        description: "bench".into(),
        schema: None,
        created_at: shared::domain::now(),
        sort_key: shared::ids::new_ulid().to_string(),
    };
    state
        .store
        .create_event_type(TENANT, &et)
        .await
        .expect("seeding the event type");
    for i in 0..WEBHOOKS {
        let mut wh = Webhook::new(
            TENANT,
            format!("{receiver}/hook/{i}"),
            vec!["bench.*".into()],
            Secret::generate(),
        );
        wh.name = Some(format!("bench {i}"));
        state
            .store
            .create_webhook(&wh, 1000)
            .await
            .map_err(|e| format!("{e:?}"))
            .expect("seeding a webhook");
    }
}

/// Runs the fan-out bench against `endpoint` (the emulator or the stub).
pub async fn run_fanout(
    endpoint: &str,
    receiver: &str,
    emulator: bool,
    runs: usize,
) -> FanoutReport {
    let table = format!("bench-{}", ulid::Ulid::new().to_string().to_lowercase());
    let vars: HashMap<&str, String> = HashMap::from([
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("TABLE_NAME", table.clone()),
        ("RETRY_SCHEDULE", "1h".to_string()),
        ("DELIVER_ONLY_TO_LOOPBACK", "true".to_string()),
    ]);
    let mut config =
        Config::from_vars(Mode::Local, |k| vars.get(k).cloned()).expect("bench config");
    if emulator {
        let template = shared::local::template::Template::built_in().expect("template");
        let sdk = shared::state::sdk_config(&config).await;
        shared::local::provision::ensure_table(
            &aws_sdk_dynamodb::Client::new(&sdk),
            &template,
            &table,
        )
        .await
        .expect("creating the bench table");
        let queues = shared::local::provision::ensure_queues(
            &aws_sdk_sqs::Client::new(&sdk),
            &template,
            &table,
        )
        .await
        .expect("creating the bench queues");
        config.queues = Some(QueueUrls {
            ingest: queues["IngestQueue"].url.clone(),
            ingest_dlq: queues["IngestDeadLetterQueue"].url.clone(),
            delivery: queues["DeliveryQueue"].url.clone(),
        });
    } else {
        let url = |name: &str| format!("{endpoint}/000000000000/{table}-{name}");
        config.queues = Some(QueueUrls {
            ingest: url("IngestQueue"),
            ingest_dlq: url("IngestDeadLetterQueue"),
            delivery: url("DeliveryQueue"),
        });
    }
    let meter = AwsMeter::default();
    let state =
        AppState::with_interceptor(config, Some(SharedInterceptor::new(meter.clone()))).await;
    seed(&state, receiver).await;
    // Warm-up: connections, the webhooks' last_triggered_at (refreshed at most once a
    // minute per webhook, as in steady traffic).
    shared::delivery::deliver_batch(&state, batch(0)).await;
    let mut measured = Vec::new();
    for round in 1..=runs {
        let event = batch(round);
        meter.reset();
        let cpu = process_cpu_ms();
        let started = Instant::now();
        let response = shared::delivery::deliver_batch(&state, event).await;
        let wall = started.elapsed();
        measured.push(Run {
            deliveries: EVENTS_PER_BATCH * WEBHOOKS,
            wall_ms: wall.as_secs_f64() * 1000.0,
            cpu_ms: process_cpu_ms() - cpu,
            failures: response.batch_item_failures.len(),
            counts: meter.counts(),
        });
    }
    FanoutReport {
        runs: measured,
        peak_rss_kb: peak_rss_kb(),
    }
}

/// The ceiling: the delivery client POSTing the fan-out's 1,000 bodies, with the same
/// headers precomputed, to the same receiver: no storage, no signing, no bookkeeping.
pub async fn run_ceiling(receiver: &str, runs: usize) -> Vec<f64> {
    let client = DeliveryClient::new(TargetPolicy::LoopbackOnly);
    let body = Bytes::from(
        json!({"id": IdKind::Event.generate(), "type": EVENT_TYPE, "created": "2026-01-01T00:00:00.000Z", "data": event_data(0)})
            .to_string(),
    );
    let urls: Vec<String> = (0..WEBHOOKS)
        .map(|i| format!("{receiver}/hook/{i}"))
        .collect();
    let headers = vec![
        ("webhook-id", "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV".to_string()),
        ("webhook-timestamp", "1767225600".to_string()),
        (
            "webhook-signature",
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=".to_string(),
        ),
        (
            "x-webhook-signature",
            "e0fc16c6d4a28f39a6e0935569f05d86e87367db24a4b6d9271215c603e49f6a".to_string(),
        ),
        ("x-webhook-event", EVENT_TYPE.to_string()),
        ("x-webhook-attempt", "1".to_string()),
    ];
    let total = EVENTS_PER_BATCH * WEBHOOKS;
    let mut rates = Vec::new();
    for round in 0..=runs {
        let started = Instant::now();
        let sent: Vec<bool> = futures::stream::iter((0..total).map(|n| {
            let client = &client;
            let outgoing = Outgoing {
                url: &urls[n % WEBHOOKS],
                body: body.clone(),
                headers: headers.clone(),
                auth: None,
            };
            async move { client.send(outgoing).await.attempt.succeeded() }
        }))
        .buffer_unordered(shared::delivery::MAX_IN_FLIGHT)
        .collect()
        .await;
        let elapsed = started.elapsed().max(Duration::from_micros(1));
        assert!(
            sent.iter().all(|ok| *ok),
            "the receiver refused a ceiling POST"
        );
        if round > 0 {
            // Round 0 warms the connection pool, as the fan-out's warm-up does.
            rates.push(total as f64 / elapsed.as_secs_f64());
        }
    }
    rates
}
