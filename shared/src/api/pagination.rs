//! Cursor pagination for every list: `limit`, `after`, `before`, newest first, and opaque
//! cursors that name their list and tenant and carry a checksum, so a tampered or foreign
//! cursor is a 400.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::request::Call;
use crate::error::{ApiError, ApiResult};

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

/// Where a page starts, relative to a cursor. Lists run newest first, so `After` pages
/// towards older items and `Before` towards newer ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    First,
    After(String),
    Before(String),
}

/// A list request's paging: how many, and from where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub position: Position,
}

/// A cursor is tied to one list of one tenant.
#[derive(Clone, Copy, Debug)]
pub struct CursorScope<'a> {
    pub list: &'a str,
    pub tenant_id: &'a str,
}

impl CursorScope<'_> {
    pub fn encode(&self, key: &str) -> String {
        let payload = format!("{}\n{}\n{}", self.list, self.tenant_id, key);
        let sum = checksum(&payload);
        URL_SAFE_NO_PAD.encode(format!("{payload}\n{sum}"))
    }

    /// The sort key inside a cursor, if the cursor is intact and belongs to this list.
    pub fn decode(&self, cursor: &str) -> Option<String> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (payload, sum) = text.rsplit_once('\n')?;
        if checksum(payload) != sum {
            return None;
        }
        let mut parts = payload.splitn(3, '\n');
        let (list, tenant, key) = (parts.next()?, parts.next()?, parts.next()?);
        (list == self.list && tenant == self.tenant_id && !key.is_empty()).then(|| key.to_string())
    }
}

fn checksum(payload: &str) -> String {
    let digest = Sha256::digest(format!("webhooks-cursor-v1\n{payload}").as_bytes());
    hex::encode(&digest[..8])
}

impl PageRequest {
    /// Reads `limit`, `after` and `before` from the query.
    pub fn from_call(call: &Call, scope: CursorScope<'_>) -> ApiResult<Self> {
        let limit = match call.query("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::invalid_field(
                        "limit",
                        "limit must be a whole number from 1 to 100",
                    ));
                }
            },
        };
        let decode = |field: &str, cursor: String| {
            scope.decode(&cursor).ok_or_else(|| {
                ApiError::invalid_field(field, format!("{field} is not a cursor of this list"))
            })
        };
        let position = match (call.query("after"), call.query("before")) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid_request("give after or before, not both"));
            }
            (Some(after), None) => Position::After(decode("after", after)?),
            (None, Some(before)) => Position::Before(decode("before", before)?),
            (None, None) => Position::First,
        };
        Ok(PageRequest { limit, position })
    }
}

/// One page of a list.
#[derive(Debug)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub limit: usize,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_key: Option<String>,
    pub end_key: Option<String>,
}

impl<T> Page<T> {
    /// The list response: `{"data": [...], "pagination": {...}}`.
    pub fn to_json(&self, scope: CursorScope<'_>, item: impl Fn(&T) -> Value) -> Value {
        json!({
            "data": self.data.iter().map(item).collect::<Vec<_>>(),
            "pagination": {
                "limit": self.limit,
                "has_next_page": self.has_next_page,
                "has_previous_page": self.has_previous_page,
                "start_cursor": self.start_key.as_deref().map(|k| scope.encode(k)),
                "end_cursor": self.end_key.as_deref().map(|k| scope.encode(k)),
            }
        })
    }
}

/// Pages through a whole list held in memory. `items` may come in any order; each item's
/// `sort_key` orders it (greater is newer) and is what its cursor names.
pub fn paginate<T>(
    mut items: Vec<T>,
    sort_key: impl Fn(&T) -> &str,
    request: &PageRequest,
) -> Page<T> {
    items.sort_by(|a, b| sort_key(b).cmp(sort_key(a)));
    let total = items.len();
    // The window [start, end) of the newest-first list.
    let (start, end) = match &request.position {
        Position::First => (0, request.limit.min(total)),
        Position::After(cursor) => {
            let start = items.partition_point(|i| sort_key(i) >= cursor.as_str());
            (start, (start + request.limit).min(total))
        }
        Position::Before(cursor) => {
            let end = items.partition_point(|i| sort_key(i) > cursor.as_str());
            (end.saturating_sub(request.limit), end)
        }
    };
    let data: Vec<T> = items.drain(start..end).collect();
    Page {
        start_key: data.first().map(|i| sort_key(i).to_string()),
        end_key: data.last().map(|i| sort_key(i).to_string()),
        has_previous_page: start > 0,
        has_next_page: end < total,
        data,
        limit: request.limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPE: CursorScope<'static> = CursorScope {
        list: "webhooks",
        tenant_id: "acme",
    };

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("k{i:03}")).collect()
    }

    fn page(items: Vec<String>, limit: usize, position: Position) -> Page<String> {
        paginate(items, |s| s.as_str(), &PageRequest { limit, position })
    }

    #[test]
    fn pages_run_newest_first_and_walk_both_ways() {
        let first = page(keys(5), 2, Position::First);
        assert_eq!(first.data, vec!["k004", "k003"]);
        assert!(first.has_next_page && !first.has_previous_page);

        let second = page(keys(5), 2, Position::After(first.end_key.clone().unwrap()));
        assert_eq!(second.data, vec!["k002", "k001"]);
        assert!(second.has_next_page && second.has_previous_page);

        let last = page(keys(5), 2, Position::After(second.end_key.clone().unwrap()));
        assert_eq!(last.data, vec!["k000"]);
        assert!(!last.has_next_page && last.has_previous_page);

        let back = page(
            keys(5),
            2,
            Position::Before(last.start_key.clone().unwrap()),
        );
        assert_eq!(back.data, second.data);
        let front = page(
            keys(5),
            2,
            Position::Before(back.start_key.clone().unwrap()),
        );
        assert_eq!(front.data, first.data);
        assert!(!front.has_previous_page);
    }

    #[test]
    fn an_empty_list_has_no_cursors() {
        let empty = page(vec![], 20, Position::First);
        assert!(empty.data.is_empty() && !empty.has_next_page && !empty.has_previous_page);
        assert_eq!(
            empty.to_json(SCOPE, |s| json!(s))["pagination"]["end_cursor"],
            Value::Null
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_tampering_and_other_lists() {
        let cursor = SCOPE.encode("wh_01ARZ3NDEKTSV4RRFFQ69G5FAV");
        assert_eq!(
            SCOPE.decode(&cursor).as_deref(),
            Some("wh_01ARZ3NDEKTSV4RRFFQ69G5FAV")
        );
        let other_tenant = CursorScope {
            list: "webhooks",
            tenant_id: "evil",
        };
        assert_eq!(other_tenant.decode(&cursor), None);
        let other_list = CursorScope {
            list: "event-types",
            tenant_id: "acme",
        };
        assert_eq!(other_list.decode(&cursor), None);
        let mut tampered = cursor.clone().into_bytes();
        tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
        assert_eq!(SCOPE.decode(&String::from_utf8(tampered).unwrap()), None);
        for junk in ["", "!!!", "bm90IGEgY3Vyc29y", "\u{1F600}"] {
            assert_eq!(SCOPE.decode(junk), None);
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    const SCOPE: CursorScope<'static> = CursorScope {
        list: "deliveries",
        tenant_id: "acme",
    };

    proptest! {
        /// Any text given as a cursor decodes to a key or to nothing: never a panic.
        #[test]
        fn arbitrary_cursors_never_panic(text in ".*") {
            let _ = SCOPE.decode(&text);
        }

        /// Every key survives a cursor's round trip, and a changed byte is noticed.
        #[test]
        fn cursors_round_trip_and_detect_tampering(key in "[ -~]{1,80}", flip in any::<proptest::sample::Index>()) {
            let cursor = SCOPE.encode(&key);
            prop_assert_eq!(SCOPE.decode(&cursor), Some(key.clone()));
            let mut bytes = cursor.into_bytes();
            let i = flip.index(bytes.len());
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            prop_assert_ne!(SCOPE.decode(&tampered), Some(key));
        }

        /// Walking forward page by page visits every item once, newest first.
        #[test]
        fn paging_forward_visits_everything_once(n in 0usize..60, limit in 1usize..10) {
            let items: Vec<String> = (0..n).map(|i| format!("k{i:03}")).collect();
            let mut seen = Vec::new();
            let mut position = Position::First;
            loop {
                let page = paginate(items.clone(), |s| s.as_str(), &PageRequest { limit, position });
                seen.extend(page.data.iter().cloned());
                if !page.has_next_page { break; }
                position = Position::After(page.end_key.clone().unwrap());
            }
            let mut expected = items.clone();
            expected.reverse();
            prop_assert_eq!(seen, expected);
        }
    }
}
