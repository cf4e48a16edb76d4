//! Deliveries: one per (event, webhook), with every attempt recorded.

use chrono::{DateTime, Utc};
use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use ulid::Ulid;

use super::format_time;

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    Succeeded,
    /// Out of attempts, or ended by a 410.
    Failed,
    /// Held while its webhook is paused; sent on unpause.
    Buffered,
    /// Its webhook was deleted or disabled before it could be sent.
    Cancelled,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 5] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Succeeded,
        DeliveryStatus::Failed,
        DeliveryStatus::Buffered,
        DeliveryStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Buffered => "buffered",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Waiting on something: an attempt or an unpause.
    pub fn is_open(self) -> bool {
        matches!(self, DeliveryStatus::Pending | DeliveryStatus::Buffered)
    }
}

/// Bytes of a response body kept with an attempt.
pub const EXCERPT_BYTES: usize = 256;
/// Attempts kept in a delivery's log (the default schedule makes 8; manual retries add).
pub const MAX_LOGGED_ATTEMPTS: usize = 10;

/// One try at delivering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub status_code: Option<u16>,
    /// Milliseconds from sending to the response (or the failure).
    pub response_time: u64,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

impl Attempt {
    pub fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|c| (200..300).contains(&c))
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// An attempt's JSON, in the API and in a delivery item's `attempt_log` alike: written
/// straight to text, with no intermediate map (the fan-out writes 1,000 per batch).
impl Serialize for Attempt {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("Attempt", 5)?;
        out.serialize_field("at", &format_time(self.at))?;
        out.serialize_field("status_code", &self.status_code)?;
        out.serialize_field("response_time", &self.response_time)?;
        out.serialize_field("error", &self.error)?;
        out.serialize_field("response_excerpt", &self.response_excerpt)?;
        out.end()
    }
}

/// A delivery record.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub id: String,
    pub tenant_id: String,
    pub event_id: String,
    pub webhook_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    /// Every attempt made, automatic and by hand (the `X-Webhook-Attempt` of the last).
    pub attempts: u32,
    /// Of those, the ones made by hand (a retry or a recover): they leave the automatic
    /// schedule where it was, so it counts only the others.
    pub manual_attempts: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The most recent attempts, oldest first, at most [`MAX_LOGGED_ATTEMPTS`].
    pub attempt_log: Vec<Attempt>,
}

impl Delivery {
    /// A delivery with no attempt yet.
    pub fn new(
        tenant_id: &str,
        event_id: &str,
        webhook_id: &str,
        event_type: &str,
        status: DeliveryStatus,
        at: DateTime<Utc>,
    ) -> Self {
        Delivery {
            id: delivery_id(event_id, webhook_id),
            tenant_id: tenant_id.to_string(),
            event_id: event_id.to_string(),
            webhook_id: webhook_id.to_string(),
            event_type: event_type.to_string(),
            status,
            attempts: 0,
            manual_attempts: 0,
            created_at: at,
            updated_at: at,
            next_attempt_at: None,
            attempt_log: Vec::new(),
        }
    }

    pub fn last_attempt(&self) -> Option<&Attempt> {
        self.attempt_log.last()
    }

    /// The attempts the automatic schedule made: its position, and what a retry task
    /// numbers (a task whose number is made already is a duplicate).
    pub fn automatic_attempts(&self) -> u32 {
        self.attempts.saturating_sub(self.manual_attempts)
    }

    /// Records an attempt (numbered `attempt`) and what follows it.
    pub fn record(
        &mut self,
        attempt_number: u32,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: Option<DateTime<Utc>>,
    ) {
        self.attempts = attempt_number;
        self.updated_at = attempt.at;
        self.status = status;
        self.next_attempt_at = next_attempt_at;
        self.attempt_log.push(attempt);
        let excess = self.attempt_log.len().saturating_sub(MAX_LOGGED_ATTEMPTS);
        self.attempt_log.drain(..excess);
    }

    /// Ends the delivery as `status` at `now`, no attempt made and none to follow.
    pub fn close(&mut self, status: DeliveryStatus, now: DateTime<Utc>) {
        self.status = status;
        self.next_attempt_at = None;
        self.updated_at = now;
    }

    /// The API's delivery object; `with_log` adds `attempt_log`.
    pub fn to_json(&self, with_log: bool) -> Value {
        let mut out = json!({
            "id": self.id,
            "event_id": self.event_id,
            "webhook_id": self.webhook_id,
            "event_type": self.event_type,
            "status": self.status.as_str(),
            "attempts": self.attempts,
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
            "next_attempt_at": self.next_attempt_at.map(format_time),
            "last_attempt": self.last_attempt().map(Attempt::to_json),
        });
        if with_log {
            out["attempt_log"] = self.attempt_log.iter().map(Attempt::to_json).collect();
        }
        out
    }
}

impl crate::page::Weigh for Delivery {
    /// The fields, plus the last attempt's excerpt and error (a list shows no full log).
    fn weight(&self) -> usize {
        let last = self.last_attempt().map_or(0, |a| {
            a.response_excerpt.as_ref().map_or(0, String::len) * 6
                + a.error.as_ref().map_or(0, String::len) * 6
        });
        1024 + last
    }
}

/// The delivery id of an (event, webhook) pair, the same every time it is computed: a
/// repeated fan-out of one event finds the records it already wrote. A ULID whose time is
/// the event's, so deliveries sort with their events, and whose random part is a hash of
/// the pair, its first four bits the event's shard hint (so every delivery of an event
/// says where its event's records are kept).
pub fn delivery_id(event_id: &str, webhook_id: &str) -> String {
    let millis = event_id
        .strip_prefix("evt_")
        .and_then(|u| Ulid::from_string(u).ok())
        .map(|u| u.timestamp_ms())
        .unwrap_or_default();
    let digest = Sha256::digest(format!("{event_id}\n{webhook_id}").as_bytes());
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    random[6] = (random[6] & 0x0f) | (event_shard_hint(event_id) << 4);
    format!(
        "dlv_{}",
        Ulid::from_parts(millis, u128::from_be_bytes(random))
    )
}

/// The id of a replayed delivery of an event to a webhook that already has one: like
/// [`delivery_id`] (the event's time and shard hint), from a fresh random part.
pub fn replay_delivery_id(event_id: &str, webhook_id: &str) -> String {
    delivery_id(event_id, &format!("{webhook_id}\nreplay {}", Ulid::new()))
}

/// An event's shard hint, 0 to 15: four bits of the SHA-256 of its id.
pub fn event_shard_hint(event_id: &str) -> u8 {
    Sha256::digest(event_id.as_bytes())[0] >> 4
}

/// The shard hint a delivery id carries (its event's).
pub fn shard_hint(delivery_id: &str) -> Option<u8> {
    let ulid = Ulid::from_string(delivery_id.strip_prefix("dlv_")?).ok()?;
    Some((ulid.random() >> 76) as u8 & 0x0f)
}

/// The first bytes of a response body, as text.
pub fn excerpt(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let cut = &body[..body.len().min(EXCERPT_BYTES)];
    Some(String::from_utf8_lossy(cut).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IdKind;

    #[test]
    fn delivery_ids_are_stable_per_pair_and_sort_with_their_event() {
        let event = IdKind::Event.generate();
        let a = delivery_id(&event, "wh_01ARZ3NDEKTSV4RRFFQ69G5FAV");
        assert_eq!(a, delivery_id(&event, "wh_01ARZ3NDEKTSV4RRFFQ69G5FAV"));
        assert_ne!(a, delivery_id(&event, "wh_01ARZ3NDEKTSV4RRFFQ69G5FAW"));
        assert!(IdKind::Delivery.is_valid(&a));
        let event_time = &event[4..14];
        assert_eq!(&a[4..14], event_time);
        // Every delivery of an event carries the event's shard hint.
        let other = delivery_id(&event, "wh_01ARZ3NDEKTSV4RRFFQ69G5FAX");
        assert_eq!(shard_hint(&a), Some(event_shard_hint(&event)));
        assert_eq!(shard_hint(&other), shard_hint(&a));
        assert_eq!(shard_hint("nope"), None);
    }

    #[test]
    fn the_log_keeps_the_latest_attempts() {
        let at = crate::domain::now();
        let mut d = Delivery::new(
            "t",
            "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "wh_x",
            "a.b",
            DeliveryStatus::Pending,
            at,
        );
        for n in 1..=12 {
            let attempt = Attempt {
                at,
                status_code: Some(500),
                response_time: n,
                error: None,
                response_excerpt: None,
            };
            d.record(n as u32, attempt, DeliveryStatus::Pending, None);
        }
        assert_eq!(d.attempts, 12);
        assert_eq!(d.attempt_log.len(), MAX_LOGGED_ATTEMPTS);
        assert_eq!(d.attempt_log[0].response_time, 3);
        assert_eq!(d.to_json(false)["last_attempt"]["response_time"], 12);
        assert!(d.to_json(false).get("attempt_log").is_none());
        assert_eq!(d.to_json(true)["attempt_log"].as_array().unwrap().len(), 10);
    }

    #[test]
    fn excerpts_keep_256_bytes_of_text() {
        assert_eq!(excerpt(b""), None);
        assert_eq!(excerpt(b"ok").as_deref(), Some("ok"));
        assert_eq!(excerpt(&[b'x'; 1000]).unwrap().len(), 256);
        assert!(excerpt(&[0xff; 10]).is_some());
    }
}
