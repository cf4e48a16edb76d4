//! Signing and sending one attempt: the headers of SPEC §4 (both signatures, under every
//! secret in force) and the request through the delivery transport.

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::http::{Outgoing, Sent, Target, Transport};
use crate::domain::webhook::Credentials;
use crate::signing::{hex_signature, standard_signature_header};

/// The headers of one attempt of `event` at `now`, signed with a webhook's `credentials`:
/// its id, timestamp, both signatures (the Standard Webhooks one under every secret in
/// force; during a rotation's overlap the simple one under the previous secret too, in
/// `X-Webhook-Signature-Previous`), type and attempt.
pub fn signed_headers(
    credentials: &Credentials,
    event_id: &str,
    event_type: &str,
    body: &[u8],
    attempt: u32,
    now: DateTime<Utc>,
) -> Vec<(&'static str, String)> {
    let timestamp = now.timestamp();
    let previous = credentials
        .previous
        .as_ref()
        .filter(|(_, until)| *until > now)
        .map(|(previous, _)| previous);
    let mut secrets = vec![&credentials.secret];
    secrets.extend(previous);
    let mut headers = vec![
        ("webhook-id", event_id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        (
            "webhook-signature",
            standard_signature_header(&secrets, event_id, timestamp, body),
        ),
        (
            "x-webhook-signature",
            hex_signature(&credentials.secret, body),
        ),
        ("x-webhook-event", event_type.to_string()),
        ("x-webhook-attempt", attempt.to_string()),
    ];
    if let Some(previous) = previous {
        headers.push((
            "x-webhook-signature-previous",
            hex_signature(previous, body),
        ));
    }
    headers
}

/// One attempt to make: which event, to which webhook (its credentials in the clear) at
/// which parsed URL, with which body.
pub struct Attempting<'a> {
    pub credentials: &'a Credentials,
    pub target: &'a Target,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub body: Bytes,
    pub number: u32,
    /// A test delivery (`POST .../test`): marked `X-Webhook-Test: true`.
    pub test: bool,
}

/// Signs and sends one attempt.
pub async fn send_attempt(transport: &dyn Transport, attempt: Attempting<'_>) -> Sent {
    let mut headers = signed_headers(
        attempt.credentials,
        attempt.event_id,
        attempt.event_type,
        &attempt.body,
        attempt.number,
        Utc::now(),
    );
    if attempt.test {
        headers.push(("x-webhook-test", "true".to_string()));
    }
    transport
        .send(Outgoing {
            url: attempt.target,
            body: attempt.body,
            headers,
            custom: &attempt.credentials.headers,
            auth: attempt
                .credentials
                .auth
                .as_ref()
                .map(|(user, password)| (user.as_str(), password.as_str())),
        })
        .await
}
