//! The domain: API keys and scopes, OAuth2 clients, event types, webhooks, and the validation rules of SPEC §3.

pub mod api_key;
pub mod delivery;
pub mod event;
pub mod event_type;
pub mod filter;
pub mod headers;
pub mod invalid;
pub mod oauth_client;
pub mod rate_limit;
pub mod retry;
pub mod schema;
pub mod schema_cost;
pub mod validation;
pub mod webhook;

use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 in UTC with millisecond precision, the API's one timestamp format.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Reads a timestamp written by [`format_time`] (or any RFC 3339 time).
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The latest time a record can hold: RFC 3339 has four-digit years.
pub fn latest_time() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(253_402_300_799_999).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `at` plus `wait`, checked: never past [`latest_time`], whatever the wait, and to the
/// millisecond a stored time keeps (so it reads back equal).
pub fn later(at: DateTime<Utc>, wait: std::time::Duration) -> DateTime<Utc> {
    let sum = chrono::TimeDelta::from_std(wait)
        .ok()
        .and_then(|w| at.checked_add_signed(w))
        .map_or_else(latest_time, |t| t.min(latest_time()));
    DateTime::from_timestamp_millis(sum.timestamp_millis()).unwrap_or(sum)
}

/// The current time, truncated to the milliseconds [`format_time`] keeps, so that a value
/// read back from storage equals the one written.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_survives_a_round_trip_through_text() {
        let at = super::now();
        assert_eq!(super::parse_time(&super::format_time(at)), Some(at));
    }
}
