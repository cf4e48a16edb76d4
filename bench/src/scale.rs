//! The honest meter and the capacity model (SPEC §8, items 5 and 6): the real `deliver_batch`
//! against the stub, which bills every write and read as DynamoDB would (indexes
//! included) and per partition key value, in four scenarios:
//! - fan-out factors 1, 5 and 100: batches of 10 events of about 1 KB to tenants with 1, 5
//!   and 100 matching webhooks;
//! - a webhook that fails every attempt, through its whole retry schedule (the retry tasks
//!   the pipeline queues are handed back to it until none is left);
//! - factor 5 with a receiver answering in 100 ms, for the Lambda time a delivery costs.

use std::collections::BTreeMap;
use std::time::Instant;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::config::SharedInterceptor;
use serde::Serialize;
use serde_json::{Map, Value, json};
use shared::state::AppState;

use crate::fanout::{EVENTS_PER_BATCH, batch_of, seed_tenant, stub_config};
use crate::meter::AwsMeter;

/// Measured batches per factor (after one warm-up).
const BATCHES: usize = 4;
/// Eight attempts, all due at once: the failing webhook's whole schedule, without waiting.
const FAILING_SCHEDULE: &str = "0ms,0ms,0ms,0ms,0ms,0ms,0ms";

/// About 1 KB of event data (its JSON), different for every event.
pub fn event_data_kb(n: usize) -> Map<String, Value> {
    let mut data = crate::fanout::event_data(n);
    data.insert(
        "reference".into(),
        json!(format!("{n:08}-{}", ulid::Ulid::new())),
    );
    let size = serde_json::to_vec(&data).map_or(0, |v| v.len());
    data.insert(
        "padding".into(),
        json!("p".repeat(1000usize.saturating_sub(size + 14))),
    );
    data
}

/// What one scenario cost.
#[derive(Debug, Default, Serialize)]
pub struct Scenario {
    pub factor: usize,
    pub events: usize,
    pub deliveries: usize,
    pub write_units: f64,
    pub index_write_units: f64,
    pub read_units: f64,
    /// Bytes the scenario's records hold, table and indexes (overhead included).
    pub stored_bytes: u64,
    /// Wall time of a batch (milliseconds, median).
    pub batch_wall_ms: f64,
    pub sqs_requests: u64,
    pub kms_requests: u64,
    /// Write and read units per partition key value, shapes of keys with the tenant and ids
    /// replaced by placeholders.
    pub partitions: BTreeMap<String, (f64, f64)>,
}

#[derive(Debug, Serialize)]
pub struct ScaleReport {
    pub factors: Vec<Scenario>,
    pub failing: Scenario,
    pub slow: Scenario,
}

/// Asks the stub for its bill since the last question (and starts a new one).
async fn bill(http: &reqwest::Client, endpoint: &str) -> Value {
    http.get(format!("{endpoint}/__billing"))
        .send()
        .await
        .expect("the stub answers")
        .json()
        .await
        .expect("the stub's bill is JSON")
}

/// The retry tasks the pipeline queued since the last question.
async fn queued(http: &reqwest::Client, endpoint: &str) -> Vec<String> {
    let messages: Vec<Value> = http
        .get(format!("{endpoint}/__messages"))
        .send()
        .await
        .expect("the stub answers")
        .json()
        .await
        .expect("the stub's messages are JSON");
    messages
        .into_iter()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect()
}

/// A partition key value (`table T#f5#DL`, `GSI1 T#f5#WH#wh_...`) with its tenant, ids
/// and shard numbers replaced by placeholders.
fn shape(key: &str, tenant: &str) -> String {
    let parts: Vec<&str> = key.split('#').collect();
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let (index, rest) = part.split_once(' ').unwrap_or(("", part));
            let rest = if i > 0 && parts[i - 1] == "SRC" {
                "<source>".to_string()
            } else if rest == tenant {
                "<tenant>".to_string()
            } else if rest.starts_with("wh_") {
                "<webhook>".to_string()
            } else if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()) {
                "<shard>".to_string()
            } else {
                rest.to_string()
            };
            if index.is_empty() {
                rest
            } else {
                format!("{index} {rest}")
            }
        })
        .collect::<Vec<_>>()
        .join("#")
}

/// Whether a partition key value belongs to `tenant` (`... T#<tenant>` or `... T#<tenant>#...`).
fn belongs(key: &str, tenant: &str) -> bool {
    key.split_once("T#")
        .map(|(_, rest)| rest.split('#').next() == Some(tenant))
        .unwrap_or(false)
}

/// A partition key value split at its shard number (`table T#f5#DL#3` -> `table T#f5#DL`,
/// 3), if it has one.
fn split_shard(key: &str) -> Option<(&str, &str)> {
    let (base, last) = key.rsplit_once('#')?;
    (!last.is_empty() && last.chars().all(|c| c.is_ascii_digit())).then_some((base, last))
}

/// How many shards the layout spreads a sharded key over, by the segment before the shard.
fn shards_of(base: &str) -> f64 {
    use shared::storage::dynamo::layout::{DELIVERY_SHARDS, EVENT_SHARDS};
    match base.rsplit('#').next() {
        Some("EV") => f64::from(EVENT_SHARDS),
        _ => f64::from(DELIVERY_SHARDS),
    }
}

/// Fills a scenario from the stub's bill: totals, and for each shape of key the busiest
/// key value. A sharded key counts the mean of its shards: the shard is picked by a hash,
/// so over time every shard takes its share (a short run's luck is not a ceiling).
fn account(scenario: &mut Scenario, bill: &Value, stored_before: u64, tenant: &str) {
    let b = &bill["bill"];
    scenario.write_units = b["write_units"].as_f64().unwrap_or(0.0);
    scenario.index_write_units = b["index_write_units"].as_f64().unwrap_or(0.0);
    scenario.read_units = b["read_units"].as_f64().unwrap_or(0.0);
    scenario.stored_bytes = bill["stored_bytes"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(stored_before);
    let mut partitions: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (kind, slot) in [("partition_writes", 0), ("partition_reads", 1)] {
        // Units per key value, sharded keys summed over their shards first.
        let mut groups: BTreeMap<String, (f64, bool)> = BTreeMap::new();
        for (key, units) in b[kind].as_object().into_iter().flatten() {
            if !belongs(key, tenant) {
                continue; // another scenario's tenant
            }
            let units = units.as_f64().unwrap_or(0.0);
            let (group, sharded) = match split_shard(key) {
                Some((base, _)) => (base.to_string(), true),
                None => (key.clone(), false),
            };
            let entry = groups.entry(group).or_insert((0.0, sharded));
            entry.0 += units;
        }
        for (group, (units, sharded)) in groups {
            let (label, units) = if sharded {
                (
                    format!("{}#<shard>", shape(&group, tenant)),
                    units / shards_of(&group),
                )
            } else {
                (shape(&group, tenant), units)
            };
            let entry = partitions.entry(label).or_default();
            if slot == 0 {
                entry.0 = entry.0.max(units);
            } else {
                entry.1 = entry.1.max(units);
            }
        }
    }
    scenario.partitions = partitions;
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Runs every scenario against the stub at `endpoint`, with the receiver at `receiver`
/// (`/hook/` answers 200, `/slow/` after 100 ms, `/fail/` 500).
pub async fn run_scale(endpoint: &str, receiver: &str) -> ScaleReport {
    let table = format!("scale-{}", ulid::Ulid::new().to_string().to_lowercase());
    let meter = AwsMeter::default();
    let state = AppState::with_interceptor(
        stub_config(endpoint, &table, FAILING_SCHEDULE),
        Some(SharedInterceptor::new(meter.clone())),
    )
    .await;
    let http = shared::tls::http_client();
    let mut factors = Vec::new();
    for factor in [1usize, 5, 100] {
        let tenant = format!("f{factor}");
        let urls: Vec<String> = (0..factor)
            .map(|i| format!("{receiver}/hook/{tenant}-{i}"))
            .collect();
        factors.push(scenario(&state, &http, endpoint, &meter, &tenant, &urls, factor).await);
    }
    let slow_urls: Vec<String> = (0..5).map(|i| format!("{receiver}/slow/{i}")).collect();
    let slow = scenario(&state, &http, endpoint, &meter, "slow", &slow_urls, 5).await;
    let failing = failing_webhook(&state, &http, endpoint, &meter, receiver).await;
    ScaleReport {
        factors,
        failing,
        slow,
    }
}

/// One tenant with `urls` as its webhooks: a warm-up batch, then [`BATCHES`] measured.
async fn scenario(
    state: &AppState,
    http: &reqwest::Client,
    endpoint: &str,
    meter: &AwsMeter,
    tenant: &str,
    urls: &[String],
    factor: usize,
) -> Scenario {
    seed_tenant(state, tenant, urls).await;
    shared::delivery::deliver_batch(state, batch_of(tenant, 0, event_data_kb)).await;
    let _ = queued(http, endpoint).await;
    let before = bill(http, endpoint).await["stored_bytes"]
        .as_u64()
        .unwrap_or(0);
    meter.reset();
    let mut walls = Vec::new();
    for round in 1..=BATCHES {
        let started = Instant::now();
        let response =
            shared::delivery::deliver_batch(state, batch_of(tenant, round, event_data_kb)).await;
        walls.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(
            response.batch_item_failures.is_empty(),
            "a batch of {tenant} failed against the stub"
        );
    }
    let counts = meter.counts();
    let mut s = Scenario {
        factor,
        events: BATCHES * EVENTS_PER_BATCH,
        deliveries: BATCHES * EVENTS_PER_BATCH * factor,
        batch_wall_ms: median(&mut walls),
        sqs_requests: counts.sqs_requests,
        kms_requests: counts.kms_requests,
        ..Scenario::default()
    };
    account(&mut s, &bill(http, endpoint).await, before, tenant);
    s
}

/// A tenant whose one webhook answers 500 to every attempt: a batch of events, then every
/// retry task handed back to the pipeline until the schedule is spent.
async fn failing_webhook(
    state: &AppState,
    http: &reqwest::Client,
    endpoint: &str,
    meter: &AwsMeter,
    receiver: &str,
) -> Scenario {
    let tenant = "dead";
    seed_tenant(state, tenant, &[format!("{receiver}/fail/0")]).await;
    shared::delivery::deliver_batch(state, batch_of(tenant, 0, event_data_kb)).await;
    drain(state, http, endpoint).await;
    let before = bill(http, endpoint).await["stored_bytes"]
        .as_u64()
        .unwrap_or(0);
    meter.reset();
    for round in 1..=BATCHES {
        shared::delivery::deliver_batch(state, batch_of(tenant, round, event_data_kb)).await;
    }
    drain(state, http, endpoint).await;
    let counts = meter.counts();
    let mut s = Scenario {
        factor: 1,
        events: BATCHES * EVENTS_PER_BATCH,
        deliveries: BATCHES * EVENTS_PER_BATCH,
        sqs_requests: counts.sqs_requests,
        kms_requests: counts.kms_requests,
        ..Scenario::default()
    };
    account(&mut s, &bill(http, endpoint).await, before, tenant);
    s
}

/// Hands the queued retry tasks back to the pipeline, as the delivery queue would, until
/// none is left.
async fn drain(state: &AppState, http: &reqwest::Client, endpoint: &str) {
    let queue = state
        .config
        .queues
        .as_ref()
        .map(|q| q.delivery.clone())
        .unwrap_or_default();
    let arn = format!(
        "arn:aws:sqs:us-east-1:000000000000:{}",
        queue.rsplit('/').next().unwrap_or_default()
    );
    for _ in 0..100 {
        let bodies = queued(http, endpoint).await;
        if bodies.is_empty() {
            return;
        }
        for chunk in bodies.chunks(EVENTS_PER_BATCH) {
            let mut batch = SqsEvent::default();
            for body in chunk {
                let mut record = SqsMessage::default();
                let id = ulid::Ulid::new().to_string();
                record.message_id = Some(id.clone());
                record.receipt_handle = Some(id);
                record.body = Some(body.clone());
                record.event_source_arn = Some(arn.clone());
                record
                    .attributes
                    .insert("ApproximateReceiveCount".into(), "1".into());
                batch.records.push(record);
            }
            shared::delivery::deliver_batch(state, batch).await;
        }
    }
}

/// DynamoDB's limits per partition key value.
pub const PARTITION_WRITE_UNITS: f64 = 1000.0;
pub const PARTITION_READ_UNITS: f64 = 3000.0;

/// The most `per`-things (events, deliveries) per second a scenario's busiest partition key
/// value allows, and which key shape it is.
pub fn ceiling(s: &Scenario, per: usize) -> (f64, String) {
    let mut best = (f64::INFINITY, String::from("none"));
    for (shape, (writes, reads)) in &s.partitions {
        for (units, limit, kind) in [
            (writes, PARTITION_WRITE_UNITS, "writes"),
            (reads, PARTITION_READ_UNITS, "reads"),
        ] {
            if *units > 0.0 {
                let rate = limit / (units / per as f64);
                if rate < best.0 {
                    best = (rate, format!("{shape} ({kind})"));
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_read_as_shapes_of_their_tenant() {
        assert_eq!(
            shape("table T#f5#DL#3", "f5"),
            "table T#<tenant>#DL#<shard>"
        );
        assert_eq!(
            shape("GSI1 T#f5#WH#wh_01ARZ", "f5"),
            "GSI1 T#<tenant>#WH#<webhook>"
        );
        assert_eq!(
            shape("table T#f5#SRC#sqs:m-1", "f5"),
            "table T#<tenant>#SRC#<source>"
        );
        assert_eq!(split_shard("table T#f5#DL#3"), Some(("table T#f5#DL", "3")));
        assert_eq!(split_shard("table T#f5"), None);
        assert_eq!(shards_of("table T#f5#EV"), 8.0);
        assert_eq!(shards_of("GSI2 T#f5#WH#wh_1#OPEN"), 16.0);
        assert!(belongs("table T#f1", "f1"));
        assert!(belongs("GSI2 T#f1#WH#wh_1#pending", "f1"));
        assert!(!belongs("table T#f100#DL", "f1"));
    }
}
