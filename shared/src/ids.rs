//! Typed, prefixed identifiers: a prefix plus a ULID, so ids sort by creation time.

use parking_lot::Mutex;
use ulid::{Generator, Ulid};

/// ULIDs from one process increase strictly, even within a millisecond, so records created
/// back to back keep their order.
static GENERATOR: Mutex<Generator> = Mutex::new(Generator::new());

/// A fresh ULID, greater than every earlier one from this process.
pub fn new_ulid() -> Ulid {
    let mut generator = GENERATOR.lock();
    // Overflow needs 2^80 ids in one millisecond; fall back to a random one if it happens.
    generator.generate().unwrap_or_else(|_| Ulid::new())
}

/// The kinds of identifier the API hands out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    Webhook,
    Event,
    Delivery,
    ApiKey,
    Client,
    PortalSession,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::Webhook => "wh_",
            IdKind::Event => "evt_",
            IdKind::Delivery => "dlv_",
            IdKind::ApiKey => "key_",
            IdKind::Client => "cli_",
            IdKind::PortalSession => "ps_",
        }
    }

    /// A fresh id of this kind.
    pub fn generate(self) -> String {
        format!("{}{}", self.prefix(), new_ulid())
    }

    /// Whether `text` is an id of this kind. Anything else can never name a stored record.
    pub fn is_valid(self, text: &str) -> bool {
        text.strip_prefix(self.prefix())
            .is_some_and(|rest| Ulid::from_string(rest).is_ok() && rest.len() == 26)
    }
}

/// The time an id was made (its ULID's millisecond), whatever its kind.
pub fn id_time(id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let (_, ulid) = id.split_once('_')?;
    let millis = Ulid::from_string(ulid).ok()?.timestamp_ms();
    chrono::DateTime::from_timestamp_millis(i64::try_from(millis).ok()?)
}

/// Whether a caller is a portal session (its key id is the session's `ps_` id).
pub fn is_portal_session(key_id: &str) -> bool {
    key_id.starts_with(IdKind::PortalSession.prefix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_carry_their_prefix_and_validate() {
        let id = IdKind::Webhook.generate();
        assert!(id.starts_with("wh_"));
        assert_eq!(id.len(), 3 + 26);
        assert!(IdKind::Webhook.is_valid(&id));
        assert!(!IdKind::Event.is_valid(&id));
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "wh_",
            "wh_123",
            "wh_01J!!!!!!!!!!!!!!!!!!!!!!!",
            "WH_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        ] {
            assert!(!IdKind::Webhook.is_valid(bad), "{bad}");
        }
        assert!(IdKind::Webhook.is_valid("wh_01ARZ3NDEKTSV4RRFFQ69G5FAV"));
    }

    #[test]
    fn an_id_tells_when_it_was_made() {
        let before = chrono::Utc::now();
        let id = IdKind::Event.generate();
        let made = id_time(&id).unwrap();
        assert!(made >= before - chrono::TimeDelta::milliseconds(1));
        assert!(made <= chrono::Utc::now());
        assert_eq!(id_time("evt_nope"), None);
    }

    #[test]
    fn later_ids_sort_after_earlier_ones_even_within_a_millisecond() {
        let ids: Vec<String> = (0..1000).map(|_| IdKind::Delivery.generate()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
