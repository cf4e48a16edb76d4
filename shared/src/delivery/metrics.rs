//! CloudWatch metrics in Embedded Metric Format: JSON lines on stdout that Lambda's log
//! pipeline turns into metrics (namespace `Webhooks`), with no API call and no extra
//! latency. The pipeline counts as it goes; [`flush`] writes one line per batch (more when
//! a batch made over a hundred attempts: EMF takes at most 100 values per metric per line).
//!
//! No tenant or webhook id is ever a dimension (one metric per tenant would cost per
//! tenant and per month); they go in the log lines. The only dimension is a delivery's
//! `Outcome`.
//!
//! | metric | unit | what |
//! |---|---|---|
//! | `Deliveries` (by `Outcome`: succeeded, retrying, failed, buffered, deferred) | Count | attempts' results and records written without an attempt |
//! | `AttemptLatency` | Milliseconds | each attempt's time to the answer (or the error) |
//! | `RetriesQueued` | Count | retry tasks sent |
//! | `BreakersOpen` | Count | webhooks whose circuit breaker is open in this instance |
//! | `StorageThrottles` | Count | DynamoDB throttling answers absorbed (each retried by the SDK, or its message comes back) |
//! | `TasksParked` | Count | messages parked until their time |
//! | `RejectedMessages` | Count | ingest messages that can never be processed |
//! | `DroppedTasks` | Count | delivery-queue tasks dropped as untrustworthy (an event task whose event is not stored) |
//! | `DeadLettersBroughtBack` / `DeadLettersWaiting` | Count | the sweeper's work, and what waits for the operator |

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};

/// A delivery's outcome, the one dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Failed, with a retry queued.
    Retrying,
    /// Failed for good.
    Failed,
    /// Recorded for a paused webhook.
    Buffered,
    /// Recorded without an attempt: its webhook's breaker is open or its requests are at
    /// their cap; a retry task makes the attempt.
    Deferred,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Succeeded,
        Outcome::Retrying,
        Outcome::Failed,
        Outcome::Buffered,
        Outcome::Deferred,
    ];

    fn name(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Retrying => "retrying",
            Outcome::Failed => "failed",
            Outcome::Buffered => "buffered",
            Outcome::Deferred => "deferred",
        }
    }
}

/// Counts since the last flush. One deliver instance works one batch at a time, so a
/// flush at the end of a batch writes that batch's counts.
struct Counters {
    outcomes: [AtomicU64; 5],
    retries_queued: AtomicU64,
    parked: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
    latencies: Mutex<Vec<u64>>,
}

static COUNTERS: Counters = Counters {
    outcomes: [const { AtomicU64::new(0) }; 5],
    retries_queued: AtomicU64::new(0),
    parked: AtomicU64::new(0),
    rejected: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
    latencies: Mutex::new(Vec::new()),
};

/// Most latencies kept between flushes (a batch makes at most a few thousand attempts).
const MAX_LATENCIES: usize = 10_000;

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn take(counter: &AtomicU64) -> u64 {
    counter.swap(0, Ordering::Relaxed)
}

pub fn delivery(outcome: Outcome) {
    add(&COUNTERS.outcomes[outcome as usize], 1);
}

pub fn attempt_latency(millis: u64) {
    let mut latencies = COUNTERS.latencies.lock();
    if latencies.len() < MAX_LATENCIES {
        latencies.push(millis);
    }
}

pub fn retries_queued(n: usize) {
    add(&COUNTERS.retries_queued, n as u64);
}

pub fn parked() {
    add(&COUNTERS.parked, 1);
}

pub fn rejected_message() {
    add(&COUNTERS.rejected, 1);
}

pub fn dropped_task() {
    add(&COUNTERS.dropped, 1);
}

/// Counts an attempt's outcome and latency, from the record it left.
pub fn attempted(d: &crate::domain::delivery::Delivery) {
    use crate::domain::delivery::DeliveryStatus;
    if let Some(last) = d.attempt_log.last() {
        attempt_latency(last.response_time);
    }
    delivery(match d.status {
        DeliveryStatus::Succeeded => Outcome::Succeeded,
        DeliveryStatus::Pending => Outcome::Retrying,
        DeliveryStatus::Buffered => Outcome::Buffered,
        DeliveryStatus::Failed | DeliveryStatus::Cancelled => Outcome::Failed,
    });
}

/// The sweeper's counts, written at once.
pub fn swept(brought_back: usize, waiting: usize) {
    let mut values = Map::new();
    values.insert("DeadLettersBroughtBack".into(), json!(brought_back));
    values.insert("DeadLettersWaiting".into(), json!(waiting));
    emit(&[], values);
}

/// Writes what was counted since the last flush (nothing if nothing was); `breakers_open`
/// is a gauge of this instance's open breakers.
pub fn flush(breakers_open: usize) {
    let mut plain = Map::new();
    let throttles = crate::storage::dynamo::throttles::take_throttles();
    for (name, n) in [
        ("RetriesQueued", take(&COUNTERS.retries_queued)),
        ("StorageThrottles", throttles),
        ("TasksParked", take(&COUNTERS.parked)),
        ("RejectedMessages", take(&COUNTERS.rejected)),
        ("DroppedTasks", take(&COUNTERS.dropped)),
    ] {
        if n > 0 {
            plain.insert(name.into(), json!(n));
        }
    }
    if breakers_open > 0 {
        plain.insert("BreakersOpen".into(), json!(breakers_open));
    }
    let latencies = std::mem::take(&mut *COUNTERS.latencies.lock());
    let mut chunks = latencies.chunks(100);
    if let Some(first) = chunks.next() {
        plain.insert("AttemptLatency".into(), json!(first));
    }
    if !plain.is_empty() {
        emit(&[], plain);
    }
    for rest in chunks {
        emit(
            &[],
            Map::from_iter([("AttemptLatency".into(), json!(rest))]),
        );
    }
    for outcome in Outcome::ALL {
        let n = take(&COUNTERS.outcomes[outcome as usize]);
        if n > 0 {
            let values = Map::from_iter([
                ("Outcome".to_string(), json!(outcome.name())),
                ("Deliveries".to_string(), json!(n)),
            ]);
            emit(&["Outcome"], values);
        }
    }
}

/// Whether metrics are written: in Lambda (whose log pipeline reads them), or where
/// `EMF_METRICS` asks for them; not in the local stack's or the benchmarks' output.
fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| {
        std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
            || std::env::var_os("EMF_METRICS").is_some()
    })
}

/// One EMF line: `values` holds the metrics (and the dimensions' values).
fn emit(dimensions: &[&str], values: Map<String, Value>) {
    if enabled() {
        println!("{}", line(dimensions, values));
    }
}

fn unit(metric: &str) -> &'static str {
    if metric == "AttemptLatency" {
        "Milliseconds"
    } else {
        "Count"
    }
}

fn line(dimensions: &[&str], mut values: Map<String, Value>) -> Value {
    let metrics: Vec<Value> = values
        .keys()
        .filter(|k| !dimensions.contains(&k.as_str()))
        .map(|name| json!({"Name": name, "Unit": unit(name)}))
        .collect();
    values.insert(
        "_aws".into(),
        json!({
            "Timestamp": Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": "Webhooks",
                "Dimensions": [dimensions],
                "Metrics": metrics,
            }],
        }),
    );
    Value::Object(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_declares_its_metrics_and_dimension_in_embedded_metric_format() {
        let values = Map::from_iter([
            ("Outcome".to_string(), json!("succeeded")),
            ("Deliveries".to_string(), json!(3)),
        ]);
        let line = line(&["Outcome"], values);
        let declared = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], "Webhooks");
        assert_eq!(declared["Dimensions"], json!([["Outcome"]]));
        assert_eq!(
            declared["Metrics"],
            json!([{"Name": "Deliveries", "Unit": "Count"}])
        );
        assert_eq!(line["Deliveries"], 3);
        assert!(line["_aws"]["Timestamp"].as_i64().unwrap() > 0);
        let latency = super::line(
            &[],
            Map::from_iter([("AttemptLatency".into(), json!([5, 7]))]),
        );
        assert_eq!(
            latency["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Milliseconds"
        );
    }
}
