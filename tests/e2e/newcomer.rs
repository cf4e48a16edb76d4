//! What a newcomer tripped on in the first hour (SPEC §3, §4, §6): a repeated source id
//! delivered again, a manual retry that ended the automatic schedule, test deliveries that
//! looked like real ones, and messages that named the wrong credential or field.

use std::time::Duration;

use serde_json::json;

use crate::receiver::{Answer, Receiver};
use crate::utils::{Stack, id};

const WAIT: Duration = Duration::from_secs(20);

/// A repeated source `id` delivers nothing again, not even to a webhook created since:
/// through the API and through the ingest queue alike.
#[tokio::test]
async fn a_repeated_source_id_delivers_nothing_again_not_even_to_a_newer_webhook() {
    let stack = Stack::start_with(&[("RETRY_SCHEDULE", "1s")]).await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    client.webhook(&receiver.url("first"), json!("*")).await;
    let by_api = json!({"type": "user.created", "data": {"n": 1}, "id": "signup-42"});
    let first = client.post("/v1/events", by_api.clone()).await;
    let first = first.assert_status(202).clone();
    let by_queue = json!({"tenant_id": client.tenant, "type": "user.created", "data": {"n": 1}, "id": "row-7"});
    stack.send_to_ingest(&by_queue.to_string()).await;
    receiver.wait_for("first", 2, WAIT).await;

    let newer = client.webhook(&receiver.url("newer"), json!("*")).await;
    let again = client.post("/v1/events", by_api).await;
    assert_eq!(
        again.assert_status(202),
        &first,
        "the first event, as documented"
    );
    stack.send_to_ingest(&by_queue.to_string()).await;
    // The positive signal: an event published after the repeats reaches the newer webhook.
    let marker = client.publish("user.created", json!({"n": 2})).await;
    let got = receiver.wait_for("newer", 1, WAIT).await;
    assert_eq!(got[0].header("webhook-id"), id(&marker));
    // The ingest repeat was taken off the queue before the marker's fan-out ended? Give it
    // the time a batch takes, then count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        receiver.requests("newer").len(),
        1,
        "the newer webhook got only the marker"
    );
    assert_eq!(receiver.requests("first").len(), 3);
    let of_first = client.deliveries(&format!("event_id={}", id(&first))).await;
    assert_eq!(of_first.len(), 1, "{of_first:#?}");
    assert!(
        client
            .deliveries(&format!("webhook_id={}", id(&newer)))
            .await
            .iter()
            .all(|d| d["event_id"] == marker["id"])
    );
}

/// A failed manual retry of a pending delivery leaves its automatic retries in place (its
/// `next_attempt_at` unchanged, the schedule's steps all still to come); a failed delivery
/// retried by hand stays failed.
#[tokio::test]
async fn a_failed_manual_retry_leaves_the_automatic_schedule_in_place() {
    let stack = Stack::start_with(&[("RETRY_SCHEDULE", "8s,1s")]).await;
    let receiver = Receiver::start().await;
    receiver.default("down", Answer::Status(503));
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    client.webhook(&receiver.url("down"), json!("*")).await;
    client.publish("user.created", json!({})).await;
    let pending = client
        .wait_for_deliveries("", WAIT, |d| d.len() == 1 && d[0]["attempts"] == 1)
        .await;
    let delivery = id(&pending[0]);
    let due = pending[0]["next_attempt_at"].clone();
    assert!(due.is_string(), "{pending:#?}");

    let retried = client
        .post_empty(&format!("/v1/deliveries/{delivery}/retry"))
        .await;
    let retried = retried.assert_status(200);
    assert_eq!(retried["status"], "pending", "{retried}");
    assert_eq!(retried["attempts"], 2);
    assert_eq!(
        retried["next_attempt_at"], due,
        "the next attempt is due as before"
    );

    // Both automatic retries still come: two more attempts, then the schedule is spent.
    let failed = client
        .wait_for_deliveries("status=failed", Duration::from_secs(40), |d| d.len() == 1)
        .await;
    assert_eq!(failed[0]["attempts"], 4, "{failed:#?}");
    assert_eq!(receiver.requests("down").len(), 4);

    let again = client
        .post_empty(&format!("/v1/deliveries/{delivery}/retry"))
        .await;
    let again = again.assert_status(200);
    assert_eq!(again["status"], "failed", "a failed delivery stays failed");
    assert_eq!(again["next_attempt_at"], json!(null));
    assert_eq!(again["attempts"], 5);
}

/// `POST .../test` marks its delivery `X-Webhook-Test: true`; a real one carries no such
/// header.
#[tokio::test]
async fn test_deliveries_are_marked_and_real_ones_are_not() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    let wh = client.webhook(&receiver.url("hooks"), json!("*")).await;
    client
        .post(
            &format!("/v1/webhooks/{}/test", id(&wh)),
            json!({"event": "user.created"}),
        )
        .await
        .assert_status(200);
    client.publish("user.created", json!({})).await;
    let got = receiver.wait_for("hooks", 2, WAIT).await;
    assert_eq!(got[0].header("x-webhook-test"), "true");
    assert!(!got[1].headers.contains_key("x-webhook-test"));
}

/// A 401 and a 403 name the credential the caller used; a typo is an unknown field, not
/// the required one it misses.
#[tokio::test]
async fn messages_name_the_credential_used_and_the_unknown_field() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    let message = |reply: &crate::utils::Reply| {
        reply.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    let typo = client
        .post(
            "/v1/webhooks",
            json!({"url": "https://example.com/h", "event": ["user.created"]}),
        )
        .await;
    typo.assert_error(400, "INVALID_REQUEST");
    assert_eq!(typo.field(), Some("event"), "{}", typo.body);
    assert_eq!(message(&typo), "unknown field event");

    let unknown_key = stack
        .client(&client.tenant, Some("whk_not_a_key_of_anyone".into()))
        .get("/v1/webhooks")
        .await;
    unknown_key.assert_error(401, "UNAUTHORIZED");
    assert!(
        message(&unknown_key).contains("API key"),
        "{}",
        unknown_key.body
    );
    let forged = stack
        .client(
            &client.tenant,
            Some("eyJhbGciOiJFUzI1NiJ9.eyJ4IjoxfQ.c2ln".into()),
        )
        .get("/v1/webhooks")
        .await;
    forged.assert_error(401, "UNAUTHORIZED");
    assert!(message(&forged).contains("access token"), "{}", forged.body);

    let token = crate::oauth::access_token(&stack, &client.tenant, "webhooks:read").await;
    let by_token = stack
        .client(&client.tenant, Some(token))
        .post("/v1/events", json!({"type": "user.created", "data": {}}))
        .await;
    by_token.assert_error(403, "FORBIDDEN");
    assert_eq!(
        message(&by_token),
        "this access token lacks the events:write scope"
    );

    let session = client
        .post("/v1/portal-sessions", json!({"read_only": true}))
        .await;
    let session = session.assert_status(201)["token"]
        .as_str()
        .unwrap()
        .to_string();
    crate::utils::remember_secret(&session);
    let by_session = stack
        .client(&client.tenant, Some(session))
        .post(
            "/v1/webhooks",
            json!({"url": "https://example.com/h", "events": ["user.created"]}),
        )
        .await;
    by_session.assert_error(403, "FORBIDDEN");
    assert_eq!(
        message(&by_session),
        "this portal session lacks the webhooks:write scope"
    );
    let by_key = stack
        .key_for(
            &client.tenant,
            &[shared::domain::api_key::Scope::WebhooksRead],
        )
        .await
        .post("/v1/events", json!({"type": "user.created", "data": {}}))
        .await;
    assert_eq!(
        message(&by_key),
        "this API key lacks the events:write scope"
    );
}
