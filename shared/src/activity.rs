//! What the local stack shows a person while it runs (SPEC §7): one readable line per API
//! request and per delivery attempt. Each is a `debug` event under the target
//! [`TARGET`]: Lambda's JSON logs (at `info`) never carry them, and cost nothing when they
//! are off (the line is built only when the target is enabled). `make run` prints them,
//! plainly, on its standard output. No line names a secret: ids, types, status codes,
//! errors (which never quote a credential) and times only.

use chrono::{DateTime, Local, Utc};

use crate::domain::delivery::{Delivery, DeliveryStatus};

/// The tracing target of the readable lines.
pub const TARGET: &str = "activity";

/// One API request answered: method, path (no query: it may hold a cursor), status, the
/// tenant when the authorizer found one, and the time it took.
pub fn request(method: &str, path: &str, status: u16, tenant: Option<&str>, millis: u128) {
    tracing::debug!(
        target: TARGET,
        "{}",
        describe_request(method, path, status, tenant, millis)
    );
}

/// One attempt recorded on `delivery` (its last): the webhook, the event type, the status
/// code or the error, and what follows.
pub fn attempted(delivery: &Delivery) {
    tracing::debug!(target: TARGET, "{}", describe_attempt(delivery, Utc::now()));
}

pub fn describe_request(
    method: &str,
    path: &str,
    status: u16,
    tenant: Option<&str>,
    millis: u128,
) -> String {
    let tenant = tenant.map(|t| format!(" tenant {t}")).unwrap_or_default();
    format!("request  {method} {path} -> {status}{tenant} ({millis} ms)")
}

pub fn describe_attempt(d: &Delivery, now: DateTime<Utc>) -> String {
    let outcome = match d.last_attempt() {
        Some(a) => match (&a.status_code, &a.error) {
            (Some(code), _) => format!("{code} in {} ms", a.response_time),
            (None, Some(error)) => format!("error: {error}"),
            (None, None) => "no answer".to_string(),
        },
        None => "no attempt".to_string(),
    };
    let next = match (d.status, d.next_attempt_at) {
        (DeliveryStatus::Pending, Some(at)) => {
            let wait = (at - now).num_seconds().max(0);
            format!(
                "pending, next attempt at {} (in {wait} s)",
                at.with_timezone(&Local).format("%H:%M:%S")
            )
        }
        (status, _) => status.as_str().to_string(),
    };
    format!(
        "attempt  {} {} {} #{} -> {outcome}; {next}",
        d.webhook_id, d.event_type, d.id, d.attempts
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::delivery::Attempt;

    fn delivery(status_code: Option<u16>, error: Option<&str>, status: DeliveryStatus) -> Delivery {
        let now = Utc::now();
        let mut d = Delivery::new(
            "acme",
            "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "wh_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "user.created",
            DeliveryStatus::Pending,
            now,
        );
        let attempt = Attempt {
            at: now,
            status_code,
            response_time: 12,
            error: error.map(str::to_string),
            response_excerpt: None,
        };
        let next = (status == DeliveryStatus::Pending).then(|| now + chrono::Duration::seconds(5));
        d.record(1, attempt, status, next);
        d
    }

    #[test]
    fn an_attempt_reads_as_webhook_type_outcome_and_what_follows() {
        let now = Utc::now();
        let ok = describe_attempt(&delivery(Some(200), None, DeliveryStatus::Succeeded), now);
        assert!(
            ok.contains("wh_01ARZ3NDEKTSV4RRFFQ69G5FAV user.created"),
            "{ok}"
        );
        assert!(ok.ends_with("#1 -> 200 in 12 ms; succeeded"), "{ok}");
        let failed = describe_attempt(
            &delivery(None, Some("connection refused"), DeliveryStatus::Pending),
            now,
        );
        assert!(
            failed.contains("-> error: connection refused; pending, next attempt at "),
            "{failed}"
        );
        assert!(
            failed.ends_with("(in 5 s)") || failed.ends_with("(in 4 s)"),
            "{failed}"
        );
    }

    #[test]
    fn a_request_reads_as_method_path_status_tenant_and_time() {
        assert_eq!(
            describe_request("POST", "/v1/events", 202, Some("dev"), 14),
            "request  POST /v1/events -> 202 tenant dev (14 ms)"
        );
        assert_eq!(
            describe_request("GET", "/v1/me", 401, None, 1),
            "request  GET /v1/me -> 401 (1 ms)"
        );
    }
}
