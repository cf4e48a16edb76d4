//! Events: what a source publishes, stored once, and the payload every webhook receives.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::format_time;
use super::invalid::{Checked, Invalid, Rule};

/// Largest event `data`, serialised (SPEC: 200 KiB).
pub const MAX_DATA_BYTES: usize = 200 * 1024;
/// Longest source idempotency key.
pub const MAX_SOURCE_ID: usize = 128;

/// An accepted event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: String,
    pub tenant_id: String,
    pub event_type: String,
    pub data: Map<String, Value>,
    /// The source's idempotency key (`id` on publish), if it gave one.
    pub source_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Event {
    /// A new event, published now, with a fresh id and no source key yet.
    pub fn new(tenant_id: &str, event_type: &str, data: Map<String, Value>) -> Self {
        Event {
            id: crate::ids::IdKind::Event.generate(),
            tenant_id: tenant_id.to_string(),
            event_type: event_type.to_string(),
            data,
            source_id: None,
            created_at: super::now(),
        }
    }

    /// The event of an ingest message that names no source `id`, its id derived from the
    /// message's id and its time the message's: every receipt of one message (SQS delivers
    /// at least once) makes the same event, so storing it once is the idempotency check.
    pub fn from_message(
        tenant_id: &str,
        event_type: &str,
        data: Map<String, Value>,
        message_id: &str,
        sent_at: DateTime<Utc>,
    ) -> Self {
        use sha2::{Digest, Sha256};
        let millis = u64::try_from(sent_at.timestamp_millis()).unwrap_or(0);
        let digest = Sha256::digest(format!("{tenant_id}\n{message_id}").as_bytes());
        let mut random = [0u8; 16];
        random[6..].copy_from_slice(&digest[..10]);
        let id = ulid::Ulid::from_parts(millis, u128::from_be_bytes(random));
        Event {
            id: format!("{}{id}", crate::ids::IdKind::Event.prefix()),
            tenant_id: tenant_id.to_string(),
            event_type: event_type.to_string(),
            data,
            source_id: None,
            created_at: DateTime::from_timestamp_millis(millis as i64).unwrap_or(sent_at),
        }
    }

    /// The body POSTed to every webhook: `{"id", "type", "created", "data"}`.
    pub fn payload(&self) -> Vec<u8> {
        json!({
            "id": self.id,
            "type": self.event_type,
            "created": format_time(self.created_at),
            "data": self.data,
        })
        .to_string()
        .into_bytes()
    }

    /// The API's event object.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "type": self.event_type,
            "data": self.data,
            "source_id": self.source_id,
            "created_at": format_time(self.created_at),
        })
    }
}

impl crate::page::Weigh for Event {
    /// Its data as Lambda sends it (escaped inside the response's body: every `"` and `\`
    /// twice), plus room for the other fields.
    fn weight(&self) -> usize {
        crate::json::escaped_json_size(&self.data) + 1024
    }
}

/// A source idempotency key: at most 128 of `[A-Za-z0-9_.:-]`.
pub fn is_valid_source_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_SOURCE_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

/// The size of event data, serialised.
pub fn data_size(data: &Map<String, Value>) -> usize {
    crate::json::json_size(data)
}

/// Checks event data: a JSON object of at most 200 KiB.
pub fn check_data(data: Value) -> Checked<Map<String, Value>> {
    let Value::Object(map) = data else {
        return Err(Invalid::field("data", "data must be a JSON object"));
    };
    if data_size(&map) > MAX_DATA_BYTES {
        return Err(Invalid::new(
            Rule::TooLarge,
            "data",
            "data is larger than 200 KiB",
        ));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_has_the_seeds_shape() {
        let event = Event {
            id: "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
            tenant_id: "acme".into(),
            event_type: "user.created".into(),
            data: json!({"email": "a@example.com"})
                .as_object()
                .cloned()
                .unwrap(),
            source_id: None,
            created_at: crate::domain::parse_time("2026-01-02T03:04:05.678Z").unwrap(),
        };
        let payload: Value = serde_json::from_slice(&event.payload()).unwrap();
        assert_eq!(
            payload,
            json!({"id": "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV", "type": "user.created",
                   "created": "2026-01-02T03:04:05.678Z", "data": {"email": "a@example.com"}})
        );
    }

    #[test]
    fn one_message_always_makes_the_same_event() {
        let at = crate::domain::parse_time("2026-01-02T03:04:05.678Z").unwrap();
        let a = Event::from_message("acme", "a.b", Map::new(), "m-1", at);
        let again = Event::from_message("acme", "a.b", Map::new(), "m-1", at);
        assert_eq!(a, again);
        assert_eq!(a.created_at, at);
        assert!(crate::ids::IdKind::Event.is_valid(&a.id));
        assert_ne!(
            a.id,
            Event::from_message("acme", "a.b", Map::new(), "m-2", at).id
        );
        assert_ne!(
            a.id,
            Event::from_message("other", "a.b", Map::new(), "m-1", at).id
        );
    }

    #[test]
    fn source_ids_are_short_and_plain() {
        assert!(is_valid_source_id("order-42:v1.2_x"));
        for bad in ["", "a b", "ü", "a/b", &"x".repeat(129)] {
            assert!(!is_valid_source_id(bad), "{bad}");
        }
    }

    #[test]
    fn data_must_be_an_object_within_the_limit() {
        assert!(check_data(json!({"a": 1})).is_ok());
        assert_eq!(check_data(json!([1])).unwrap_err().rule, Rule::Malformed);
        let big = json!({"x": "y".repeat(MAX_DATA_BYTES)});
        assert_eq!(check_data(big).unwrap_err().rule, Rule::TooLarge);
    }
}
