//! Queueing: the SQS message shapes (defined here only) and the calls that send them.
//!
//! The ingest queue carries events from sources as SPEC §4 describes them, with no tag:
//! `{"tenant_id", "type", "data", "id"?}`, and nothing else ([`parse_ingest`]): it is a
//! trust boundary. The service's own messages travel on the delivery queue, which only
//! the service can write to, and carry a `kind` ([`parse_task`]): an event published
//! through the API, a retry of one delivery, or a page of work on one webhook's
//! deliveries (release after unpause, cancel after delete, recover of failed ones). [`TaskQueue`] is what
//! the service needs of the queues: [`sqs`] implements it on SQS, [`memory`] in memory for
//! unit tests.

pub mod memory;
pub mod redrive;
pub mod sqs;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::api_key::validate_tenant_id;
use crate::domain::event::{MAX_DATA_BYTES, data_size, is_valid_source_id};
use crate::domain::validation::is_valid_event_type_name;

/// An event to store (unless stored already) and fan out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventTask {
    pub tenant_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: Map<String, Value>,
    /// The source's idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Set when the API stored the event before queueing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// With `event_id`: when the API stored it (RFC 3339), for the payload's `created`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// With `event_id`: sent again because the first fan-out may not have finished, so the
    /// deliver function must skip the deliveries already recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resend: bool,
    /// An ingest message brought back from the dead-letter queue: the message it first
    /// came in, whose id and time make its event's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// The SQS message an ingest event first came in: an event without a source `id` takes its
/// id from it, so every receipt of that message (and the message brought back from the
/// dead-letter queue) makes the same event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub message_id: String,
    /// When SQS accepted it (Unix milliseconds, its `SentTimestamp`).
    pub sent_at: i64,
}

impl EventTask {
    /// The task that fans out an event already stored; `resend` when an earlier fan-out
    /// may have recorded some of its deliveries (they are skipped).
    pub fn stored(event: &crate::domain::event::Event, resend: bool) -> Self {
        EventTask {
            tenant_id: event.tenant_id.clone(),
            event_type: event.event_type.clone(),
            data: event.data.clone(),
            id: event.source_id.clone(),
            event_id: Some(event.id.clone()),
            created_at: Some(crate::domain::format_time(event.created_at)),
            resend,
            origin: None,
        }
    }
}

/// One more attempt at one delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryTask {
    pub tenant_id: String,
    pub delivery_id: String,
    /// The delivery's webhook, so a task its webhook's breaker holds back costs no storage
    /// read (absent from tasks queued before this field was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
    /// The automatic attempt this task makes (1-based; attempts by hand are not counted,
    /// so a failed retry by hand leaves the task valid). A task whose attempt was already
    /// made is a duplicate and is dropped.
    pub attempt: u32,
    /// Unix milliseconds before which the attempt must not be made.
    pub not_before: i64,
}

/// A page of work on one webhook's open deliveries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookTask {
    pub tenant_id: String,
    pub webhook_id: String,
    /// The passes made after the work seemed done, a moment later, for what the index
    /// had not shown yet (global secondary indexes are eventually consistent).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub settle: u8,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// A page of a webhook's failed deliveries to send again (`recover_webhook`): those created
/// in `[since, until)` (Unix milliseconds) after `after`, the last one the previous page
/// sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverTask {
    pub tenant_id: String,
    pub webhook_id: String,
    pub since: i64,
    pub until: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// When the recover was asked (Unix milliseconds): a settling pass leaves alone what
    /// was attempted since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<i64>,
    /// As [`WebhookTask::settle`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub settle: u8,
}

/// Every message the deliver function reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    /// Fan out an event the API stored (`event_id` set; a task for an event that is not
    /// stored is dropped).
    Event(EventTask),
    /// An ingest message brought back from the ingest dead-letter queue (by the sweeper or
    /// `webhooks-admin redrive`): stored and fanned out as it would have been, resuming a
    /// fan-out its first receipts began.
    Redriven(EventTask),
    Retry(RetryTask),
    /// Send the buffered deliveries of a webhook that was unpaused, oldest first.
    Release(WebhookTask),
    /// Cancel the open deliveries of a webhook that was deleted.
    Cancel(WebhookTask),
    /// Send a webhook's failed deliveries again, oldest first.
    Recover(RecoverTask),
}

/// Reads a message of the ingest queue: only the ingest message of SPEC §4, untagged.
/// Anyone allowed to send there is a producer, not the service: a message that names a
/// `kind` (an internal task), a tenant id that is not one, or data over 200 KiB can never
/// be processed. The error says why (the message goes to the dead-letter queue).
pub fn parse_ingest(body: &str) -> Result<EventTask, String> {
    let object = json_object(body)?;
    if object.contains_key("kind") {
        return Err("internal tasks are not accepted on the ingest queue".into());
    }
    let event = read_ingest(&object)?;
    check_ingest(&event)?;
    Ok(event)
}

/// Reads a message of the delivery queue: the service's own tasks, tagged with `kind`.
pub fn parse_task(body: &str) -> Result<Task, String> {
    let value = Value::Object(json_object(body)?);
    let task = serde_json::from_value::<Task>(value).map_err(|e| format!("malformed task: {e}"))?;
    match &task {
        Task::Event(event) => {
            check_ingest(event)?;
            if event.event_id.is_none() {
                return Err("an event task names no stored event (event_id)".into());
            }
        }
        Task::Redriven(event) => check_ingest(event)?,
        _ => {}
    }
    Ok(task)
}

fn json_object(body: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))? {
        Value::Object(object) => Ok(object),
        _ => Err("not a JSON object".into()),
    }
}

fn read_ingest(object: &Map<String, Value>) -> Result<EventTask, String> {
    let text = |field: &str| match object.get(field) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        None | Some(Value::Null) => Ok(None),
        Some(_) => Err(format!("{field} must be a string")),
    };
    let known = ["tenant_id", "type", "data", "id"];
    if let Some(unknown) = object.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!("unknown field {unknown}"));
    }
    Ok(EventTask {
        tenant_id: text("tenant_id")?.ok_or("tenant_id is required")?,
        event_type: text("type")?.ok_or("type is required")?,
        data: match object.get("data") {
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err("data must be a JSON object".into()),
            None => return Err("data is required".into()),
        },
        id: text("id")?,
        event_id: None,
        created_at: None,
        resend: false,
        origin: None,
    })
}

fn check_ingest(event: &EventTask) -> Result<(), String> {
    validate_tenant_id(&event.tenant_id).map_err(|why| format!("tenant_id: {why}"))?;
    if !is_valid_event_type_name(&event.event_type) {
        return Err("type is not an event type name".into());
    }
    if let Some(id) = &event.id
        && !is_valid_source_id(id)
    {
        return Err("id must be at most 128 of [A-Za-z0-9_.:-]".into());
    }
    if data_size(&event.data) > MAX_DATA_BYTES {
        return Err("data is larger than 200 KiB".into());
    }
    Ok(())
}

/// The queues the service sends to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueName {
    /// Events: from sources, and from `POST /v1/events`.
    Ingest,
    /// The service's own tasks: retries, release and cancel pages.
    Delivery,
}

/// A queue call failed; the caller reports its work as failed so it is retried.
#[derive(Debug, thiserror::Error)]
#[error("queue: {0}")]
pub struct QueueError(pub String);

/// What the handlers and the pipeline need of the queues.
#[async_trait]
pub trait TaskQueue: Send + Sync {
    /// Sends tasks, each with its delay (at most 15 minutes).
    async fn send(&self, queue: QueueName, tasks: &[(Task, Duration)]) -> Result<(), QueueError>;
    /// Parks a received message until `wait` from now (at most 12 h) before it is seen again.
    async fn defer(
        &self,
        queue: QueueName,
        receipt_handle: &str,
        wait: Duration,
    ) -> Result<(), QueueError>;
    /// Sends an ingest message that can never be processed to the dead-letter queue, with
    /// its reason.
    async fn reject(&self, body: &str, reason: &str) -> Result<(), QueueError>;
    /// Which of the service's queues an SQS record came from, by its event source ARN.
    fn queue_of_arn(&self, arn: &str) -> Option<QueueName>;
    /// Brings back the messages of `queue`'s dead-letter queue as [`redrive::decide`]
    /// says; `progress` hears the count moved after each batch.
    async fn redrive(
        &self,
        queue: QueueName,
        options: &redrive::Options,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<redrive::Redriven, QueueError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn untagged_messages_are_ingest_events() {
        let event = parse_ingest(
            r#"{"tenant_id":"acme","type":"user.created","data":{"a":1},"id":"src-1"}"#,
        )
        .unwrap();
        assert_eq!(event.tenant_id, "acme");
        assert_eq!(event.event_type, "user.created");
        assert_eq!(event.id.as_deref(), Some("src-1"));
        assert_eq!(event.event_id, None);
    }

    #[test]
    fn tasks_round_trip_with_their_kind() {
        let tasks = [
            Task::Retry(RetryTask {
                tenant_id: "t".into(),
                delivery_id: "dlv_x".into(),
                webhook_id: Some("wh_x".into()),
                attempt: 2,
                not_before: 5,
            }),
            Task::Release(WebhookTask {
                tenant_id: "t".into(),
                webhook_id: "wh_x".into(),
                settle: 0,
            }),
            Task::Cancel(WebhookTask {
                tenant_id: "t".into(),
                webhook_id: "wh_x".into(),
                settle: 1,
            }),
            Task::Recover(RecoverTask {
                tenant_id: "t".into(),
                webhook_id: "wh_x".into(),
                since: 1,
                until: 2,
                after: Some("dlv_x".into()),
                requested_at: Some(2),
                settle: 0,
            }),
            Task::Event(EventTask {
                tenant_id: "t".into(),
                event_type: "a.b".into(),
                data: Map::new(),
                id: None,
                event_id: Some("evt_x".into()),
                created_at: Some("2026-01-01T00:00:00.000Z".into()),
                resend: true,
                origin: None,
            }),
            Task::Redriven(EventTask {
                origin: Some(Origin {
                    message_id: "m-1".into(),
                    sent_at: 1,
                }),
                ..parse_ingest(r#"{"tenant_id":"t","type":"a.b","data":{}}"#).unwrap()
            }),
        ];
        for task in tasks {
            let body = serde_json::to_string(&task).unwrap();
            assert!(body.contains("\"kind\""), "{body}");
            assert_eq!(parse_task(&body).unwrap(), task);
            assert!(
                parse_ingest(&body)
                    .unwrap_err()
                    .contains("not accepted on the ingest queue")
            );
        }
        // An event task must name the event the API stored: a task carrying an event's
        // content without one is never the service's.
        let forged = r#"{"kind":"event","tenant_id":"t","type":"a.b","data":{"n":1}}"#;
        assert!(parse_task(forged).unwrap_err().contains("event_id"));
        let retry: Value = serde_json::to_value(Task::Retry(RetryTask {
            tenant_id: "t".into(),
            delivery_id: "d".into(),
            webhook_id: None,
            attempt: 3,
            not_before: 9,
        }))
        .unwrap();
        assert_eq!(
            retry,
            json!({"kind": "retry", "tenant_id": "t", "delivery_id": "d", "attempt": 3, "not_before": 9}),
            "a task queued before tasks named their webhook reads the same"
        );
    }

    #[test]
    fn malformed_messages_say_why() {
        for (body, why) in [
            ("not json", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"type":"a.b","data":{}}"#, "tenant_id is required"),
            (r#"{"tenant_id":"t","data":{}}"#, "type is required"),
            (r#"{"tenant_id":"t","type":"a.b"}"#, "data is required"),
            (
                r#"{"tenant_id":"t","type":"a.b","data":[1]}"#,
                "data must be a JSON object",
            ),
            (
                r#"{"tenant_id":"t","type":"a b","data":{}}"#,
                "type is not an event type name",
            ),
            (
                r#"{"tenant_id":"t","type":"a.b","data":{},"id":"no spaces"}"#,
                "id must be",
            ),
            (
                r#"{"tenant_id":"t","type":"a.b","data":{},"extra":1}"#,
                "unknown field extra",
            ),
            (r#"{"kind":"teleport"}"#, "not accepted on the ingest queue"),
            (
                r#"{"kind":"cancel","tenant_id":"x","webhook_id":"wh_1"}"#,
                "not accepted on the ingest queue",
            ),
            (r#"{"tenant_id":"a#b","type":"a.b","data":{}}"#, "tenant_id"),
            (r#"{"tenant_id":"","type":"a.b","data":{}}"#, "tenant_id"),
        ] {
            let reason = parse_ingest(body).unwrap_err();
            assert!(reason.contains(why), "{body}: {reason}");
        }
        assert!(
            parse_task(r#"{"kind":"teleport"}"#)
                .unwrap_err()
                .contains("malformed task")
        );
        assert!(parse_task(r#"{"tenant_id":"t","type":"a.b","data":{}}"#).is_err());
    }

    #[test]
    fn data_over_200_kib_is_refused_on_the_queue_too() {
        let big =
            json!({"tenant_id": "t", "type": "a.b", "data": {"x": "y".repeat(MAX_DATA_BYTES)}});
        assert!(
            parse_ingest(&big.to_string())
                .unwrap_err()
                .contains("200 KiB")
        );
        let fits = json!({"tenant_id": "t", "type": "a.b", "data": {"x": "y".repeat(1000)}});
        assert!(parse_ingest(&fits.to_string()).is_ok());
    }
}
