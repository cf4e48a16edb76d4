//! Counts and times every AWS request at the SDK client: DynamoDB read requests (and the
//! read units their answers cost), DynamoDB write units (from each item's size, as DynamoDB
//! bills them), SQS and KMS requests, and the wall time during which any request was in
//! flight.
//!
//! The interceptor only copies what it sees; the JSON of the writes is read when the totals
//! are asked for, after the measured run, so the meter adds no parsing to the deliver CPU.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use serde::Serialize;
use serde_json::Value;

/// Totals since the last reset.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub ddb_read_requests: u64,
    pub ddb_read_units: f64,
    pub ddb_write_requests: u64,
    pub ddb_write_units: f64,
    pub sqs_requests: u64,
    /// KMS requests (data keys generated and unwrapped for sealed secrets).
    pub kms_requests: u64,
    /// Milliseconds during which at least one AWS request was in flight.
    pub aws_busy_ms: f64,
}

#[derive(Debug, Default)]
struct State {
    counts: Counts,
    /// (start, end) of every request, since the last reset.
    intervals: Vec<(Instant, Instant)>,
    /// Every DynamoDB write since the last reset: its operation and request body.
    writes: Vec<(String, Vec<u8>)>,
}

/// Cloning shares the totals: one clone goes into the SDK, the bench reads another.
#[derive(Clone, Debug, Default)]
pub struct AwsMeter {
    state: Arc<Mutex<State>>,
}

#[derive(Clone, Debug)]
struct Started(Instant);

/// Marks a DynamoDB read, whose answer's size sets its read units.
#[derive(Clone, Debug)]
struct ReadRequest;

impl Storable for ReadRequest {
    type Storer = StoreReplace<Self>;
}

impl Storable for Started {
    type Storer = StoreReplace<Self>;
}

impl AwsMeter {
    pub fn reset(&self) {
        *self.state.lock().expect("meter lock") = State::default();
    }

    /// The totals, with the busy time as the union of the requests' intervals.
    pub fn counts(&self) -> Counts {
        let state = self.state.lock().expect("meter lock");
        let mut intervals = state.intervals.clone();
        intervals.sort_by_key(|(s, _)| *s);
        let mut busy = 0.0;
        let mut current: Option<(Instant, Instant)> = None;
        for (s, e) in intervals {
            current = match current {
                Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
                Some((cs, ce)) => {
                    busy += (ce - cs).as_secs_f64();
                    Some((s, e))
                }
                None => Some((s, e)),
            };
        }
        if let Some((cs, ce)) = current {
            busy += (ce - cs).as_secs_f64();
        }
        let mut counts = state.counts.clone();
        counts.aws_busy_ms = busy * 1000.0;
        counts.ddb_write_units = state
            .writes
            .iter()
            .map(|(operation, body)| {
                let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                write_units(operation, &body)
            })
            .sum();
        counts
    }
}

/// The size DynamoDB bills for an item in its JSON wire form: attribute names plus values.
pub fn item_size(item: &Value) -> usize {
    item.as_object()
        .map(|attributes| {
            attributes
                .iter()
                .map(|(name, v)| name.len() + value_size(v))
                .sum()
        })
        .unwrap_or(0)
}

fn value_size(v: &Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "S" | "B" => inner.as_str().map_or(0, str::len),
        "N" => inner.as_str().map_or(0, |n| n.len().div_ceil(2) + 1),
        "BOOL" | "NULL" => 1,
        "L" => {
            3 + inner
                .as_array()
                .map_or(0, |l| l.iter().map(|x| 1 + value_size(x)).sum())
        }
        "M" => {
            3 + inner.as_object().map_or(0, |m| {
                m.iter().map(|(k, x)| 1 + k.len() + value_size(x)).sum()
            })
        }
        _ => inner.to_string().len(),
    }
}

/// Write units of one item of `size` bytes (1 KB each, rounded up).
fn units(size: usize) -> f64 {
    size.div_ceil(1024).max(1) as f64
}

/// The write units a DynamoDB write request costs.
pub fn write_units(operation: &str, body: &Value) -> f64 {
    match operation {
        "PutItem" => units(item_size(&body["Item"])),
        // Updates and deletes are billed on the item's size; ours are small items.
        "UpdateItem" | "DeleteItem" => 1.0,
        "BatchWriteItem" => body["RequestItems"]
            .as_object()
            .into_iter()
            .flat_map(|tables| tables.values())
            .filter_map(Value::as_array)
            .flatten()
            .map(|w| match w.get("PutRequest") {
                Some(put) => units(item_size(&put["Item"])),
                None => 1.0,
            })
            .sum(),
        // Transactions cost two units per item unit.
        "TransactWriteItems" => body["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| match t.get("Put") {
                Some(put) => 2.0 * units(item_size(&put["Item"])),
                None => 2.0,
            })
            .sum(),
        _ => 0.0,
    }
}

impl Intercept for AwsMeter {
    fn name(&self) -> &'static str {
        "AwsMeter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let target = request.headers().get("x-amz-target").unwrap_or("");
        let (service, operation) = target.split_once('.').unwrap_or(("", target));
        let mut state = self.state.lock().expect("meter lock");
        if service.starts_with("AmazonSQS") {
            state.counts.sqs_requests += 1;
        } else if service == "TrentService" {
            state.counts.kms_requests += 1;
        } else if service.starts_with("DynamoDB") {
            match operation {
                "GetItem" | "Query" | "Scan" | "BatchGetItem" => {
                    state.counts.ddb_read_requests += 1;
                    cfg.interceptor_state().store_put(ReadRequest);
                }
                _ => {
                    let body = request.body().bytes().unwrap_or_default().to_vec();
                    state.counts.ddb_write_requests += 1;
                    state.writes.push((operation.to_string(), body));
                }
            }
        }
        cfg.interceptor_state().store_put(Started(Instant::now()));
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Read units: 4 KB of answer per unit (strongly consistent; eventually consistent
        // reads cost half, so this is the upper bound).
        if cfg.load::<ReadRequest>().is_some()
            && let Some(bytes) = context.response().body().bytes()
        {
            self.state.lock().expect("meter lock").counts.ddb_read_units +=
                bytes.len().div_ceil(4096).max(1) as f64;
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Started(start)) = cfg.load::<Started>().cloned() else {
            return Ok(());
        };
        self.state
            .lock()
            .expect("meter lock")
            .intervals
            .push((start, Instant::now()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn item_sizes_and_write_units_follow_dynamodbs_rules() {
        let item = json!({"PK": {"S": "T#a"}, "n": {"N": "12345"}, "ok": {"BOOL": true}});
        assert_eq!(item_size(&item), 2 + 3 + 1 + 4 + 2 + 1);
        let big = json!({"d": {"S": "x".repeat(1500)}});
        assert_eq!(write_units("PutItem", &json!({"Item": big})), 2.0);
        let batch = json!({"RequestItems": {"t": [
            {"PutRequest": {"Item": item}}, {"PutRequest": {"Item": big}}, {"DeleteRequest": {"Key": {}}}
        ]}});
        assert_eq!(write_units("BatchWriteItem", &batch), 1.0 + 2.0 + 1.0);
        let transaction = json!({"TransactItems": [{"Put": {"Item": item}}, {"Update": {}}]});
        assert_eq!(write_units("TransactWriteItems", &transaction), 4.0);
    }
}
