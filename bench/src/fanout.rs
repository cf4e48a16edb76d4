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
use shared::delivery::PARALLEL_RECORD_WRITES;
use shared::delivery::http::{
    DeliveryClient, Outgoing, Target, TargetPolicy, Transport, parse_target,
};
use shared::delivery::send::signed_headers;
use shared::domain::delivery::{Attempt, Delivery, DeliveryStatus};
use shared::domain::event_type::EventType;
use shared::domain::filter::Filter;
use shared::domain::headers::HeaderList;
use shared::domain::webhook::{Confidential, Secret, Webhook};
use shared::ids::IdKind;
use shared::state::AppState;
use shared::storage::RECORDS_PER_WRITE;
use shared::storage::dynamo::items::delivery_item;

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
    /// KMS requests of the first batch a fresh process delivers (its data keys unwrapped).
    pub first_batch_kms_requests: u64,
    pub peak_rss_kb: u64,
    /// Against the stub only: the service's own stages, each measured alone.
    pub stages: Option<Stages>,
}

/// CPU milliseconds per 1,000 deliveries of the service's own stages, each run alone in
/// this process on the fan-out's data (median of [`STAGE_RUNS`]): beside the HTTP client's
/// own cost (the ceiling's CPU), they show where a delivery's CPU goes.
#[derive(Debug, Serialize)]
pub struct Stages {
    /// Both signatures and the other headers of 1,000 attempts.
    pub signing_cpu_ms: f64,
    /// 1,000 evaluations of the webhooks' content filters on the batch's events (what the
    /// fan-out decides per event and webhook after the type match).
    pub filter_cpu_ms: f64,
    /// Building 1,000 delivery items (DynamoDB attribute maps).
    pub record_items_cpu_ms: f64,
    /// Writing 1,000 records through the SDK as the fan-out does (40 BatchWriteItem, 8 in
    /// flight), their items included.
    pub record_writes_cpu_ms: f64,
    /// Checking 1,000 events' data against their type's compiled schema ([`bench_schema`]):
    /// per event, not per delivery (the publish route checks, or the fan-out for an
    /// event from the ingest queue). Milliseconds per 1,000 are microseconds per event.
    pub schema_checks_cpu_ms_per_1000_events: f64,
    /// Compiling that schema once (what an instance does the first time it sees the type).
    pub schema_compile_ms: f64,
}

/// The schema of the bench's events, as a tenant would write it: every field typed, the
/// nested objects and the array of items described.
pub fn bench_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["order_id", "customer", "items", "currency", "total"],
        "properties": {
            "order_id": {"type": "string", "pattern": "^ord_[0-9]{8}$"},
            "customer": {
                "type": "object",
                "required": ["id", "email"],
                "properties": {
                    "id": {"type": "string"},
                    "email": {"type": "string", "format": "email"},
                    "name": {"type": "string", "maxLength": 200}
                }
            },
            "items": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/$defs/item"}
            },
            "currency": {"enum": ["EUR", "USD", "GBP"]},
            "total": {"type": "integer", "minimum": 0},
            "shipping": {"type": "object", "additionalProperties": {"type": "string"}},
            "notes": {"type": "string", "maxLength": 1000}
        },
        "$defs": {
            "item": {
                "type": "object",
                "required": ["sku", "quantity", "unit_price"],
                "properties": {
                    "sku": {"type": "string"},
                    "quantity": {"type": "integer", "minimum": 1},
                    "unit_price": {"type": "integer", "minimum": 0}
                },
                "additionalProperties": false
            }
        }
    })
}

const STAGE_RUNS: usize = 7;

/// This process's CPU time (user + system, every thread), in milliseconds, to the
/// nanosecond: the kernel's own account, not 10 ms ticks.
pub fn process_cpu_ms() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 * 1000.0 + t.tv_nsec as f64 / 1e6
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
    batch_of(TENANT, round, event_data)
}

/// A batch of ingest messages of `tenant`, as Lambda hands them over, with `data(n)`.
pub fn batch_of(
    tenant: &str,
    round: usize,
    data: impl Fn(usize) -> Map<String, Value>,
) -> SqsEvent {
    let mut event = SqsEvent::default();
    for n in 0..EVENTS_PER_BATCH {
        let mut record = SqsMessage::default();
        let id = format!("bench-{round}-{n}-{}", ulid::Ulid::new());
        record.message_id = Some(id.clone());
        record.receipt_handle = Some(id);
        record.body =
            Some(json!({"tenant_id": tenant, "type": EVENT_TYPE, "data": data(n)}).to_string());
        record
            .attributes
            .insert("ApproximateReceiveCount".into(), "1".into());
        event.records.push(record);
    }
    event
}

async fn seed(state: &AppState, receiver: &str) {
    let urls: Vec<String> = (0..WEBHOOKS)
        .map(|i| format!("{receiver}/hook/{i}"))
        .collect();
    seed_tenant(state, TENANT, &urls).await;
}

/// The tenant's catalogue (one event type) and a webhook per URL, its secret sealed.
pub async fn seed_tenant(state: &AppState, tenant: &str, urls: &[String]) {
    let et = EventType {
        name: EVENT_TYPE.into(),
        description: "bench".into(),
        schema: None,
        created_at: shared::domain::now(),
        sort_key: shared::ids::new_ulid().to_string(),
    };
    state
        .store
        .create_event_type(tenant, &et, 1000)
        .await
        .map_err(|e| format!("{e:?}"))
        .expect("seeding the event type");
    for (i, url) in urls.iter().enumerate() {
        let mut wh = Webhook::new(
            tenant,
            url.clone(),
            vec!["bench.*".into()],
            Secret::generate(),
        );
        wh.name = Some(format!("bench {i}"));
        // Every webhook with a content filter the events pass and custom headers, an
        // authorization one among them (issue 13: the figures hold with both).
        wh.filter = Some(
            Filter::parse(json!({
                "type": {"$startsWith": "bench."},
                "data": {"currency": {"$in": ["EUR", "USD"]}, "total": {"$gte": 100},
                         "customer": {"id": {"$startsWith": "cus_"}}}
            }))
            .expect("the bench filter parses"),
        );
        wh.headers = HeaderList(vec![
            ("X-Team".into(), "bench".into()),
            ("X-Hook-Ref".into(), format!("ref-{i}")),
        ]);
        wh.authorization = Some(Confidential::Clear(format!("Bearer bench-token-{i}")));
        state
            .sealer
            .seal_webhook(&mut wh)
            .await
            .expect("sealing a webhook's secret");
        state
            .store
            .create_webhook(&wh, 1000)
            .await
            .map_err(|e| format!("{e:?}"))
            .expect("seeding a webhook");
    }
}

/// The configuration of a bench process whose AWS calls go to the stub at `endpoint`.
pub fn stub_config(endpoint: &str, table: &str, schedule: &str) -> Config {
    let vars: HashMap<&str, String> = HashMap::from([
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("TABLE_NAME", table.to_string()),
        ("RETRY_SCHEDULE", schedule.to_string()),
        ("DELIVER_ONLY_TO_LOOPBACK", "true".to_string()),
    ]);
    let mut config =
        Config::from_vars(Mode::Local, |k| vars.get(k).cloned()).expect("bench config");
    let url = |name: &str| format!("{endpoint}/000000000000/{table}-{name}");
    config.queues = Some(QueueUrls {
        ingest: url("IngestQueue"),
        ingest_dlq: url("IngestDeadLetterQueue"),
        delivery: url("DeliveryQueue"),
        delivery_dlq: Some(url("DeliveryDeadLetterQueue")),
    });
    config.secrets_key_id = Some("alias/bench-stub".into());
    config
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
        let template = tools::local::template::Template::built_in().expect("template");
        let sdk = shared::state::sdk_config(&config).await;
        tools::local::provision::ensure_table(
            &aws_sdk_dynamodb::Client::new(&sdk),
            &template,
            &table,
        )
        .await
        .expect("creating the bench table");
        let queues = tools::local::provision::ensure_queues(
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
            delivery_dlq: Some(queues["DeliveryDeadLetterQueue"].url.clone()),
        });
        let keys = tools::local::provision::ensure_kms_keys(
            &aws_sdk_kms::Client::new(&sdk),
            &template,
            &table,
        )
        .await
        .expect("creating the bench's KMS keys");
        config.secrets_key_id = keys
            .get(tools::local::stack::SECRETS_KEY)
            .map(|k| k.alias.clone());
        config.token_key_id = keys
            .get(tools::local::stack::TOKEN_KEY)
            .map(|k| k.alias.clone());
    } else {
        config = stub_config(endpoint, &table, "1h");
    }
    let meter = AwsMeter::default();
    let state =
        AppState::with_interceptor(config, Some(SharedInterceptor::new(meter.clone()))).await;
    seed(&state, receiver).await;
    // Warm-up: connections, the webhooks' last_triggered_at (refreshed at most once a
    // minute per webhook, as in steady traffic).
    meter.reset();
    shared::delivery::deliver_batch(&state, batch(0)).await;
    let first_batch_kms_requests = meter.counts().kms_requests;
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
    let peak_rss_kb = peak_rss_kb();
    let stages = if emulator {
        None
    } else {
        Some(measure_stages(&state).await)
    };
    FanoutReport {
        runs: measured,
        first_batch_kms_requests,
        peak_rss_kb,
        stages,
    }
}

/// The median CPU milliseconds of `STAGE_RUNS` runs of `stage`.
async fn stage_cpu<F: Future<Output = ()>>(mut stage: impl FnMut() -> F) -> f64 {
    let mut runs = Vec::with_capacity(STAGE_RUNS);
    for _ in 0..STAGE_RUNS {
        let cpu = process_cpu_ms();
        stage().await;
        runs.push(process_cpu_ms() - cpu);
    }
    crate::coldstart::median(&runs)
}

async fn measure_stages(state: &AppState) -> Stages {
    let view = state
        .store
        .load_tenant(TENANT)
        .await
        .expect("reading the bench tenant");
    let total = EVENTS_PER_BATCH * WEBHOOKS;
    let event_id = IdKind::Event.generate();
    let body = payload(&event_id);
    let now = shared::domain::now();
    let mut credentials = Vec::with_capacity(view.webhooks.len());
    for webhook in &view.webhooks {
        credentials.push(
            state
                .sealer
                .credentials(webhook)
                .await
                .expect("opening a bench webhook's credentials"),
        );
    }
    let signing_cpu_ms = stage_cpu(|| async {
        let headers: Vec<_> = (0..total)
            .map(|n| {
                let credentials = &credentials[n % credentials.len()];
                signed_headers(credentials, &event_id, EVENT_TYPE, &body, 1, now)
            })
            .collect();
        std::hint::black_box(headers);
    })
    .await;
    let events: Vec<shared::domain::event::Event> = (0..EVENTS_PER_BATCH)
        .map(|n| shared::domain::event::Event::new(TENANT, EVENT_TYPE, event_data(n)))
        .collect();
    let created = shared::domain::format_time(now);
    let filter_cpu_ms = stage_cpu(|| async {
        let admitted = (0..total)
            .filter(|n| {
                let webhook = &view.webhooks[n % view.webhooks.len()];
                let event = &events[n % events.len()];
                shared::delivery::decide::admits(webhook, event, &created)
            })
            .count();
        assert_eq!(admitted, total, "the bench filter admits every event");
        std::hint::black_box(admitted);
    })
    .await;
    let records: Vec<Delivery> = (0..total)
        .map(|n| {
            let webhook = &view.webhooks[n % view.webhooks.len()];
            let event = format!("{event_id}{n}");
            let mut delivery = Delivery::new(
                TENANT,
                &event,
                &webhook.id,
                EVENT_TYPE,
                DeliveryStatus::Pending,
                now,
            );
            let attempt = Attempt {
                at: now,
                status_code: Some(200),
                response_time: 1,
                error: None,
                response_excerpt: Some("ok".into()),
            };
            delivery.record(1, attempt, DeliveryStatus::Succeeded, None);
            delivery
        })
        .collect();
    let expires = state.expires_at();
    let record_items_cpu_ms = stage_cpu(|| async {
        let items: Vec<_> = records.iter().map(|d| delivery_item(d, expires)).collect();
        std::hint::black_box(items);
    })
    .await;
    let record_writes_cpu_ms = stage_cpu(|| async {
        let written: Vec<_> = futures::stream::iter(records.chunks(RECORDS_PER_WRITE))
            .map(|chunk| state.store.put_deliveries(chunk, expires))
            .buffer_unordered(PARALLEL_RECORD_WRITES)
            .collect()
            .await;
        assert!(
            written.iter().all(Result::is_ok),
            "the stub refused a record write"
        );
    })
    .await;
    let compile_started = process_cpu_ms();
    let schema = shared::domain::schema::Schema::compile(&bench_schema())
        .expect("the bench schema compiles");
    let schema_compile_ms = process_cpu_ms() - compile_started;
    let data: Vec<Value> = (0..1000).map(|n| Value::Object(event_data(n))).collect();
    let schema_checks_cpu_ms_per_1000_events = stage_cpu(|| async {
        let passed = data.iter().filter(|d| schema.check(d).is_ok()).count();
        assert_eq!(
            passed,
            data.len(),
            "the bench events match the bench schema"
        );
    })
    .await;
    Stages {
        signing_cpu_ms,
        filter_cpu_ms,
        record_items_cpu_ms,
        record_writes_cpu_ms,
        schema_checks_cpu_ms_per_1000_events,
        schema_compile_ms,
    }
}

/// An event's body as sent: its id, type, time and the bench data.
fn payload(event_id: &str) -> Bytes {
    Bytes::from(
        json!({"id": event_id, "type": EVENT_TYPE, "created": "2026-01-01T00:00:00.000Z", "data": event_data(0)})
            .to_string(),
    )
}

/// The ceiling: the delivery client POSTing the fan-out's 1,000 bodies, with the same
/// headers precomputed, to the same receiver: no storage, no signing, no bookkeeping.
/// Returns each run's POSTs per second and CPU milliseconds per 1,000 POSTs.
pub async fn run_ceiling(receiver: &str, runs: usize) -> (Vec<f64>, Vec<f64>) {
    let client = DeliveryClient::new(TargetPolicy::LoopbackOnly);
    let body = payload(&IdKind::Event.generate());
    let urls: Vec<Target> = (0..WEBHOOKS)
        .map(|i| parse_target(&format!("{receiver}/hook/{i}")))
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
    let (mut rates, mut cpu) = (Vec::new(), Vec::new());
    for round in 0..=runs {
        let cpu_before = process_cpu_ms();
        let started = Instant::now();
        let sent: Vec<bool> = futures::stream::iter((0..total).map(|n| {
            let client = &client;
            let outgoing = Outgoing {
                url: &urls[n % WEBHOOKS],
                body: body.clone(),
                headers: headers.clone(),
                custom: &[],
                auth: None,
            };
            async move { client.send(outgoing).await.attempt.succeeded() }
        }))
        .buffer_unordered(shared::delivery::MAX_IN_FLIGHT)
        .collect()
        .await;
        let elapsed = started.elapsed().max(Duration::from_micros(1));
        let cpu_ms = process_cpu_ms() - cpu_before;
        assert!(
            sent.iter().all(|ok| *ok),
            "the receiver refused a ceiling POST"
        );
        if round > 0 {
            // Round 0 warms the connection pool, as the fan-out's warm-up does.
            rates.push(total as f64 / elapsed.as_secs_f64());
            cpu.push(cpu_ms * 1000.0 / total as f64);
        }
    }
    (rates, cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_events_match_the_bench_schema_and_a_broken_one_does_not() {
        let schema = shared::domain::schema::Schema::compile(&bench_schema()).unwrap();
        let mut data = event_data(7);
        assert_eq!(schema.check(&Value::Object(data.clone())), Ok(()));
        data["items"][1]["quantity"] = json!(0);
        let mismatch = schema.check(&Value::Object(data)).unwrap_err();
        assert_eq!(mismatch.path, "data.items.1.quantity");
    }
}
