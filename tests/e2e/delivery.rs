//! Events in, signed deliveries out: fan-out, signatures checked by the official Standard
//! Webhooks library, retries, pause and unpause, idempotent ingest from the API and SQS,
//! isolation of slow endpoints, redirects, Basic auth, rotation, the delivery log.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::receiver::{Answer, Received, Receiver};
use crate::utils::{Client, Stack, all_with_status, id};

const WAIT: Duration = Duration::from_secs(20);

/// A stack whose retries come quickly.
async fn fast_stack(schedule: &str) -> Stack {
    Stack::start_with(&[("RETRY_SCHEDULE", schedule)]).await
}

async fn tenant(stack: &Stack) -> Client {
    let client = stack.tenant().await;
    client
        .event_types(&[
            "user.created",
            "user.deleted",
            "data.updated",
            "invoice.paid",
        ])
        .await;
    client
}

/// Verifies a delivery as a receiver would, with libraries independent of the service:
/// the official Standard Webhooks verifier, and a separate HMAC-SHA256 for the hex header.
fn assert_signed(request: &Received, secret: &str) {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&request.body, &request.headers)
        .unwrap_or_else(|e| panic!("Standard Webhooks verification failed: {e:?}"));
    assert_eq!(
        request.header("x-webhook-signature"),
        hex_hmac(request, secret)
    );
}

/// The simple scheme's signature: hex HMAC-SHA256 of the body, keyed by the whole secret.
fn hex_hmac(request: &Received, secret: &str) -> String {
    let mac = hmac_sha256::HMAC::mac(&request.body, secret.as_bytes());
    mac.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn events_reach_every_matching_webhook_signed_and_shaped_as_documented() {
    let stack = fast_stack("1s").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    let exact = client
        .webhook(&receiver.url("exact"), json!("user.created"))
        .await;
    let prefix = client
        .webhook(&receiver.url("prefix"), json!("user.*"))
        .await;
    let all = client.webhook(&receiver.url("all"), json!("*")).await;
    client
        .webhook(&receiver.url("other"), json!(["data.*", "invoice.paid"]))
        .await;

    let event = client
        .publish(
            "user.created",
            json!({"email": "ada@example.com", "plan": {"tier": 2}}),
        )
        .await;
    assert!(id(&event).starts_with("evt_"));
    assert_eq!(event["type"], "user.created");

    for (path, webhook) in [("exact", &exact), ("prefix", &prefix), ("all", &all)] {
        let got = receiver.wait_for(path, 1, WAIT).await;
        let request = &got[0];
        assert_signed(request, webhook["secret"].as_str().unwrap());
        assert_eq!(request.header("webhook-id"), id(&event));
        assert_eq!(request.header("x-webhook-event"), "user.created");
        assert_eq!(request.header("x-webhook-attempt"), "1");
        assert!(
            request
                .headers
                .get("x-webhook-signature-previous")
                .is_none()
        );
        assert!(request.headers.get("x-webhook-test").is_none());
        assert_eq!(request.header("content-type"), "application/json");
        assert!(
            request.header("user-agent").contains("webhooks"),
            "{}",
            request.header("user-agent")
        );
        assert!(request.header("authorization").is_empty());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let ts: i64 = request.header("webhook-timestamp").parse().unwrap();
        assert!((now - ts).abs() < 60);
        assert_eq!(
            request.json(),
            json!({"id": id(&event), "type": "user.created", "created": event["created_at"],
                   "data": {"email": "ada@example.com", "plan": {"tier": 2}}})
        );
    }
    let deliveries = client
        .wait_for_deliveries("event_type=user.created", WAIT, |d| {
            all_with_status(d, 3, "succeeded")
        })
        .await;
    for d in &deliveries {
        assert_eq!(d["event_id"], event["id"]);
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["last_attempt"]["status_code"], 200);
        assert_eq!(d["last_attempt"]["response_excerpt"], "received");
        assert_eq!(d["next_attempt_at"], Value::Null);
    }
    let read = client.get(&format!("/v1/events/{}", id(&event))).await;
    let summary = &read.assert_status(200)["deliveries"];
    assert_eq!(summary["total"], 3);
    assert_eq!(summary["succeeded"], 3);
    assert_eq!(read.body["data"]["email"], "ada@example.com");
    assert!(
        receiver.requests("other").is_empty(),
        "a non-matching webhook got the event"
    );
    // The webhook records when it was last triggered.
    let wh = client.get(&format!("/v1/webhooks/{}", id(&exact))).await;
    assert!(wh.body["last_triggered_at"].is_string(), "{}", wh.body);
}

#[tokio::test]
async fn failures_are_retried_per_delivery_until_success() {
    let stack = fast_stack("300ms,300ms,300ms").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    receiver.script(
        "flaky",
        vec![
            Answer::Status(500),
            Answer::Reset,
            Answer::Status(503),
            Answer::Status(204),
        ],
    );
    let flaky = client.webhook(&receiver.url("flaky"), json!("*")).await;
    client.webhook(&receiver.url("steady"), json!("*")).await;
    let event = client.publish("invoice.paid", json!({"amount": 42})).await;

    let got = receiver.wait_for("flaky", 4, WAIT).await;
    let attempts: Vec<&str> = got.iter().map(|r| r.header("x-webhook-attempt")).collect();
    assert_eq!(attempts, vec!["1", "2", "3", "4"]);
    assert!(got.iter().all(|r| r.header("webhook-id") == id(&event)));
    for r in &got {
        assert_signed(r, flaky["secret"].as_str().unwrap());
    }
    // Retries go to the failing webhook only.
    assert_eq!(receiver.requests("steady").len(), 1);
    let done = client
        .wait_for_deliveries(&format!("webhook_id={}", id(&flaky)), WAIT, |d| {
            all_with_status(d, 1, "succeeded")
        })
        .await;
    let detail = client
        .get(&format!("/v1/deliveries/{}", id(&done[0])))
        .await;
    let body = detail.assert_status(200);
    assert_eq!(body["attempts"], 4);
    let log = body["attempt_log"].as_array().unwrap();
    let codes: Vec<Value> = log.iter().map(|a| a["status_code"].clone()).collect();
    assert_eq!(codes, vec![json!(500), Value::Null, json!(503), json!(204)]);
    assert!(log[1]["error"].is_string());
    assert_eq!(log[0]["response_excerpt"], "received");
    assert!(
        log.iter()
            .all(|a| a["response_time"].is_u64() && a["at"].is_string())
    );
}

#[tokio::test]
async fn a_410_ends_the_retries_of_that_delivery() {
    let stack = fast_stack("200ms,200ms").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    receiver.default("gone", Answer::Status(410));
    let gone = client.webhook(&receiver.url("gone"), json!("*")).await;
    // The positive signal: a webhook that fails once with a 500 gets its retry through the
    // same schedule and queue; once it has, a retry of the 410 would have come too.
    receiver.script("probe", vec![Answer::Status(500)]);
    client.webhook(&receiver.url("probe"), json!("*")).await;
    client.publish("user.created", json!({})).await;
    let failed = client
        .wait_for_deliveries(&format!("webhook_id={}", id(&gone)), WAIT, |d| {
            all_with_status(d, 1, "failed")
        })
        .await;
    assert_eq!(failed[0]["attempts"], 1);
    assert_eq!(failed[0]["last_attempt"]["status_code"], 410);
    receiver.wait_for("probe", 2, WAIT).await;
    assert_eq!(receiver.requests("gone").len(), 1);
}

#[tokio::test]
async fn an_exhausted_schedule_fails_and_a_manual_retry_sends_again() {
    let stack = fast_stack("100ms,100ms").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    receiver.default("down", Answer::Status(500));
    let down = client.webhook(&receiver.url("down"), json!("*")).await;
    client.publish("user.deleted", json!({"id": 7})).await;
    let failed = client
        .wait_for_deliveries(&format!("webhook_id={}", id(&down)), WAIT, |d| {
            all_with_status(d, 1, "failed")
        })
        .await;
    assert_eq!(failed[0]["attempts"], 3);
    assert_eq!(failed[0]["next_attempt_at"], Value::Null);
    assert_eq!(receiver.requests("down").len(), 3);

    receiver.default("down", Answer::Status(200));
    let retried = client
        .post_empty(&format!("/v1/deliveries/{}/retry", id(&failed[0])))
        .await;
    let body = retried.assert_status(200);
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["attempts"], 4);
    assert_eq!(body["attempt_log"].as_array().unwrap().len(), 4);
    let got = receiver.requests("down");
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].header("x-webhook-attempt"), "4");
    assert_signed(&got[3], down["secret"].as_str().unwrap());
    // A succeeded delivery can be sent again too.
    let again = client
        .post_empty(&format!("/v1/deliveries/{}/retry", id(&failed[0])))
        .await;
    assert_eq!(again.assert_status(200)["attempts"], 5);
    client
        .post_empty("/v1/deliveries/dlv_01ARZ3NDEKTSV4RRFFQ69G5FAV/retry")
        .await
        .assert_error(404, "DELIVERY_NOT_FOUND");
}

#[tokio::test]
async fn retry_after_from_the_receiver_delays_the_next_attempt() {
    // Honoured up to the schedule's longest wait (5 s here).
    let stack = fast_stack("100ms,5s").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    receiver.script(
        "busy",
        vec![Answer::WithHeaders(503, vec![("retry-after", "2".into())])],
    );
    client.webhook(&receiver.url("busy"), json!("*")).await;
    client.publish("user.created", json!({})).await;
    let got = receiver.wait_for("busy", 2, WAIT).await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "second attempt after {gap:?}"
    );
}

/// A receiver's `Retry-After` can be anything: a number of seconds that overflows every
/// clock, or a date in the year 9999. Neither may fail the batch (the other webhook of the
/// same event gets exactly one delivery), nor write a time the log cannot read back, nor
/// hold the next attempt past the schedule's longest wait (here 2 s, plus jitter).
#[tokio::test]
async fn no_retry_after_a_receiver_sends_can_crash_the_batch_or_corrupt_the_record() {
    let stack = fast_stack("100ms,2s").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    for (path, value) in [
        ("seconds", "9000000000000"),
        ("overflow", "10000000000000000000000"),
        ("date", "Fri, 31 Dec 9999 23:59:59 GMT"),
    ] {
        receiver.script(
            path,
            vec![
                Answer::WithHeaders(503, vec![("retry-after", value.into())]),
                Answer::WithHeaders(503, vec![("retry-after", value.into())]),
            ],
        );
        client.webhook(&receiver.url(path), json!("*")).await;
    }
    let healthy = client.webhook(&receiver.url("healthy"), json!("*")).await;
    client.publish("user.created", json!({})).await;

    for path in ["seconds", "overflow", "date"] {
        let got = receiver.wait_for(path, 3, WAIT).await;
        // Within the schedule's longest wait (2 s, jitter 20%), not the header's years. The
        // bound is loose here (SQS delays whole seconds, and the whole suite loads the
        // emulator); the exact cap is `decide`'s property test's.
        for pair in got.windows(2) {
            let gap = pair[1].at - pair[0].at;
            assert!(gap < Duration::from_millis(2400 + 3000), "{path}: {gap:?}");
        }
    }
    let done = client
        .wait_for_deliveries("", WAIT, |list| all_with_status(list, 4, "succeeded"))
        .await;
    assert!(done.iter().all(|d| d["next_attempt_at"].is_null()));
    let healthy_id = id(&healthy);
    assert_eq!(receiver.requests("healthy").len(), 1);
    let mine = client.deliveries(&format!("webhook_id={healthy_id}")).await;
    assert_eq!(mine[0]["attempts"], 1);
}

#[tokio::test]
async fn paused_webhooks_buffer_and_unpause_releases_every_delivery() {
    let stack = fast_stack("1s").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    let wh = client.webhook(&receiver.url("paused"), json!("*")).await;
    let path = format!("/v1/webhooks/{}", id(&wh));
    client
        .post_empty(&format!("{path}/pause"))
        .await
        .assert_status(200);
    let mut events = Vec::new();
    for n in 0..3 {
        events.push(id(&client.publish("user.created", json!({"n": n})).await));
    }
    let buffered = client
        .wait_for_deliveries(&format!("webhook_id={}", id(&wh)), WAIT, |d| {
            all_with_status(d, 3, "buffered")
        })
        .await;
    assert!(
        buffered
            .iter()
            .all(|d| d["attempts"] == 0 && d["last_attempt"].is_null())
    );
    assert!(receiver.requests("paused").is_empty());

    let unpaused = client.post_empty(&format!("{path}/unpause")).await;
    assert_eq!(unpaused.assert_status(200)["released"], 3);
    assert_eq!(unpaused.body["status"], "active");
    let got = receiver.wait_for("paused", 3, WAIT).await;
    let mut ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    ids.sort();
    let mut expected: Vec<&str> = events.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(ids, expected, "each buffered event exactly once");
    for r in &got {
        assert_signed(r, wh["secret"].as_str().unwrap());
    }
    client
        .wait_for_deliveries(&format!("webhook_id={}", id(&wh)), WAIT, |d| {
            all_with_status(d, 3, "succeeded")
        })
        .await;
    // Nothing left to release.
    let again = client.post_empty(&format!("{path}/unpause")).await;
    assert_eq!(again.assert_status(200)["released"], 0);
}

#[tokio::test]
async fn disabled_webhooks_get_nothing_not_even_a_record() {
    let stack = fast_stack("1s").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    let off = client.webhook(&receiver.url("off"), json!("*")).await;
    client
        .patch(
            &format!("/v1/webhooks/{}", id(&off)),
            json!({"status": "disabled"}),
        )
        .await
        .assert_status(200);
    client.webhook(&receiver.url("on"), json!("*")).await;
    client.publish("user.created", json!({})).await;
    receiver.wait_for("on", 1, WAIT).await;
    client
        .wait_for_deliveries("", WAIT, |d| all_with_status(d, 1, "succeeded"))
        .await;
    assert!(receiver.requests("off").is_empty());
    assert!(
        client
            .deliveries(&format!("webhook_id={}", id(&off)))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_repeated_source_id_through_the_api_delivers_once() {
    let stack = fast_stack("1s").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    client.webhook(&receiver.url("once"), json!("*")).await;
    let body = json!({"type": "invoice.paid", "data": {"n": 1}, "id": "invoice-42:paid"});
    let first = client.post("/v1/events", body.clone()).await;
    let first = first.assert_status(202).clone();
    assert_eq!(first["source_id"], "invoice-42:paid");
    receiver.wait_for("once", 1, WAIT).await;
    let second = client
        .post(
            "/v1/events",
            json!({"type": "invoice.paid", "data": {"n": 2}, "id": "invoice-42:paid"}),
        )
        .await;
    assert_eq!(
        second.assert_status(202),
        &first,
        "the first event, unchanged"
    );
    // The positive signal: a later event, published after the repeat, arrives.
    let marker = client.publish("invoice.paid", json!({"n": 3})).await;
    let got = receiver.wait_for("once", 2, WAIT).await;
    assert_eq!(got[1].header("webhook-id"), id(&marker));
    assert_eq!(
        receiver.requests("once").len(),
        2,
        "the repeat delivered nothing"
    );
    assert_eq!(client.deliveries("").await.len(), 2);
    let events = client.get("/v1/events").await;
    assert_eq!(
        events.assert_status(200)["data"].as_array().unwrap().len(),
        2
    );
}

#[tokio::test]
async fn events_from_the_ingest_queue_are_delivered_once_per_source_id() {
    let stack = fast_stack("1s").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    let wh = client.webhook(&receiver.url("sqs"), json!("data.*")).await;
    let message = json!({"tenant_id": client.tenant, "type": "data.updated", "data": {"row": 9}, "id": "row-9-v1"});
    stack.send_to_ingest(&message.to_string()).await;
    stack.send_to_ingest(&message.to_string()).await;
    let got = receiver.wait_for("sqs", 1, WAIT).await;
    assert_signed(&got[0], wh["secret"].as_str().unwrap());
    assert_eq!(got[0].json()["data"], json!({"row": 9}));
    // The positive signal: a later message on the same queue arrives.
    let marker = json!({"tenant_id": client.tenant, "type": "data.updated", "data": {"row": 10}, "id": "row-10-v1"});
    stack.send_to_ingest(&marker.to_string()).await;
    let deadline = std::time::Instant::now() + WAIT;
    while !receiver
        .requests("sqs")
        .iter()
        .any(|r| r.json()["data"] == json!({"row": 10}))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the later message never arrived"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let rows: Vec<Value> = receiver
        .requests("sqs")
        .iter()
        .map(|r| r.json()["data"]["row"].clone())
        .collect();
    assert_eq!(
        rows.iter().filter(|r| **r == json!(9)).count(),
        1,
        "one delivery for one source id: {rows:?}"
    );
    let events = client.get("/v1/events").await;
    let data = events.assert_status(200)["data"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["source_id"], "row-9-v1");
    assert_eq!(client.deliveries("").await.len(), 2);
}

/// An SQS event as Lambda would hand it over, with one message per `(id, body)`.
fn sqs_event(messages: &[(&str, &str)]) -> aws_lambda_events::sqs::SqsEvent {
    let mut event = aws_lambda_events::sqs::SqsEvent::default();
    for (id, body) in messages {
        let mut record = aws_lambda_events::sqs::SqsMessage::default();
        record.message_id = Some(id.to_string());
        record.receipt_handle = Some(format!("receipt-{id}"));
        record.body = Some(body.to_string());
        record
            .attributes
            .insert("ApproximateReceiveCount".into(), "1".into());
        event.records.push(record);
    }
    event
}

#[tokio::test]
async fn the_same_sqs_message_twice_makes_one_event_and_one_delivery() {
    let stack = fast_stack("1s").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    client.webhook(&receiver.url("dup"), json!("*")).await;
    // No source id: the SQS message id is the idempotency key. The deliver handler gets the
    // same message twice in one batch and once more in a later one, as at-least-once allows.
    let body = json!({"tenant_id": client.tenant, "type": "user.created", "data": {}}).to_string();
    let batch = sqs_event(&[("m-1", &body), ("m-1", &body)]);
    // The concurrent copy may be told to come back (a conflicting write): that is allowed.
    let response = shared::delivery::deliver_batch(stack.function("deliver"), batch).await;
    assert!(response.batch_item_failures.len() <= 1);
    let response =
        shared::delivery::deliver_batch(stack.function("deliver"), sqs_event(&[("m-1", &body)]))
            .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "a later repeat finds the event done"
    );
    receiver.wait_for("dup", 1, WAIT).await;
    let records = client.deliveries("").await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(
        client.get("/v1/events").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(
        receiver.requests("dup").len() <= 2,
        "at most the concurrent copy repeats the POST"
    );
}

#[tokio::test]
async fn malformed_and_unknown_ingest_messages_go_to_the_dead_letter_queue_without_blocking_the_batch()
 {
    let stack = fast_stack("1s").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    client.webhook(&receiver.url("good"), json!("*")).await;
    let good = json!({"tenant_id": client.tenant, "type": "user.created", "data": {"ok": true}})
        .to_string();
    let unknown_type =
        json!({"tenant_id": client.tenant, "type": "nope.nope", "data": {}}).to_string();
    let unknown_tenant =
        json!({"tenant_id": "nobody-at-all", "type": "user.created", "data": {}}).to_string();
    let batch = sqs_event(&[
        ("bad-json", "{not json"),
        ("no-data", r#"{"tenant_id":"t","type":"a.b"}"#),
        ("unknown-type", &unknown_type),
        ("unknown-tenant", &unknown_tenant),
        ("good", &good),
    ]);
    let response = shared::delivery::deliver_batch(stack.function("deliver"), batch).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "rejects are not retried"
    );
    receiver.wait_for("good", 1, WAIT).await;
    let mut reasons: Vec<String> = stack
        .dead_letters(4, WAIT)
        .await
        .into_iter()
        .map(|(_, reason)| reason)
        .collect();
    reasons.sort();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("not JSON")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("data is required")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("nope.nope")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("nobody-at-all")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn a_slow_endpoint_never_delays_the_others() {
    let stack = fast_stack("1s").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    receiver.default("slow", Answer::Slow(Duration::from_secs(6), 200));
    client.webhook(&receiver.url("slow"), json!("*")).await;
    for n in 0..5 {
        client
            .webhook(&receiver.url(&format!("fast{n}")), json!("*"))
            .await;
    }
    client.publish("user.created", json!({})).await;
    receiver.wait_for("slow", 1, WAIT).await;
    for n in 0..5 {
        receiver.wait_for(&format!("fast{n}"), 1, WAIT).await;
    }
    assert_eq!(
        receiver.finished("slow"),
        0,
        "every fast endpoint was called while the slow one was still answering"
    );
    client
        .wait_for_deliveries("status=succeeded", WAIT, |d| d.len() == 6)
        .await;
}

#[tokio::test]
async fn redirects_are_failures_and_are_not_followed() {
    let stack = fast_stack("1h").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    receiver.default(
        "moved",
        Answer::WithHeaders(302, vec![("location", receiver.url("target"))]),
    );
    let wh = client.webhook(&receiver.url("moved"), json!("*")).await;
    client.publish("user.created", json!({})).await;
    let pending = client
        .wait_for_deliveries(&format!("webhook_id={}", id(&wh)), WAIT, |d| {
            d.len() == 1 && d[0]["attempts"] == 1
        })
        .await;
    assert_eq!(
        pending[0]["status"], "pending",
        "a redirect is retried later, like any failure"
    );
    assert_eq!(pending[0]["last_attempt"]["status_code"], 302);
    assert!(
        pending[0]["last_attempt"]["error"]
            .as_str()
            .unwrap()
            .contains("redirect")
    );
    assert!(pending[0]["next_attempt_at"].is_string());
    assert!(receiver.requests("target").is_empty());
}

#[tokio::test]
async fn basic_auth_credentials_go_with_every_delivery() {
    let stack = fast_stack("1s").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    let wh = client
        .post(
            "/v1/webhooks",
            json!({"url": receiver.url("auth"), "events": "*", "auth": {"username": "hook", "password": "p@ss:word"}}),
        )
        .await
        .assert_status(201)
        .clone();
    client.publish("user.created", json!({})).await;
    let got = receiver.wait_for("auth", 1, WAIT).await;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("hook:p@ss:word")
    );
    assert_eq!(got[0].header("authorization"), expected);
    assert_signed(&got[0], wh["secret"].as_str().unwrap());
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign() {
    let stack = fast_stack("1s").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    let old = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let wh = client
        .post(
            "/v1/webhooks",
            json!({"url": receiver.url("rot"), "events": "*", "secret": old}),
        )
        .await
        .assert_status(201)
        .clone();
    let rotated = client
        .post_empty(&format!("/v1/webhooks/{}/secret/rotate", id(&wh)))
        .await;
    let new = rotated.assert_status(200)["secret"]
        .as_str()
        .unwrap()
        .to_string();
    client
        .publish("user.created", json!({"rotating": true}))
        .await;
    let got = receiver.wait_for("rot", 1, WAIT).await;
    let signatures: Vec<&str> = got[0].header("webhook-signature").split(' ').collect();
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    assert_signed(&got[0], &new);
    // A receiver still holding the old secret verifies too.
    standardwebhooks::Webhook::new(old)
        .unwrap()
        .verify(&got[0].body, &got[0].headers)
        .unwrap();
    // And so does one of the simple scheme: the old secret's hex signature has its header.
    assert_eq!(
        got[0].header("x-webhook-signature-previous"),
        hex_hmac(&got[0], old)
    );
}

#[tokio::test]
async fn deleting_a_webhook_cancels_its_pending_and_buffered_deliveries() {
    let stack = fast_stack("1h").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    receiver.default("failing", Answer::Status(500));
    let failing = client.webhook(&receiver.url("failing"), json!("*")).await;
    let paused = client.webhook(&receiver.url("paused"), json!("*")).await;
    client
        .post_empty(&format!("/v1/webhooks/{}/pause", id(&paused)))
        .await
        .assert_status(200);
    client.publish("user.created", json!({})).await;
    client
        .wait_for_deliveries(&format!("webhook_id={}", id(&failing)), WAIT, |d| {
            all_with_status(d, 1, "pending")
        })
        .await;
    client
        .wait_for_deliveries(&format!("webhook_id={}", id(&paused)), WAIT, |d| {
            all_with_status(d, 1, "buffered")
        })
        .await;
    for wh in [&failing, &paused] {
        client
            .delete(&format!("/v1/webhooks/{}", id(wh)))
            .await
            .assert_status(200);
    }
    for wh in [&failing, &paused] {
        let cancelled = client
            .wait_for_deliveries(&format!("webhook_id={}", id(wh)), WAIT, |d| {
                all_with_status(d, 1, "cancelled")
            })
            .await;
        assert_eq!(cancelled[0]["next_attempt_at"], Value::Null);
        // The log stays readable; a retry of a deleted webhook's delivery is refused.
        client
            .post_empty(&format!("/v1/deliveries/{}/retry", id(&cancelled[0])))
            .await
            .assert_error(404, "WEBHOOK_NOT_FOUND");
    }
}

#[tokio::test]
async fn a_webhook_failing_for_the_whole_window_is_disabled() {
    let stack = Stack::start_with(&[
        ("RETRY_SCHEDULE", "700ms,700ms,700ms"),
        ("AUTO_DISABLE_AFTER", "1s"),
    ])
    .await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    receiver.default("dead", Answer::Status(503));
    let dead = client.webhook(&receiver.url("dead"), json!("*")).await;
    client.publish("user.created", json!({})).await;
    let deadline = std::time::Instant::now() + WAIT;
    let disabled = loop {
        let wh = client.get(&format!("/v1/webhooks/{}", id(&dead))).await;
        if wh.body["status"] == "disabled" {
            break wh.body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never disabled: {}",
            wh.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("failed"),
        "{disabled}"
    );
    // Its remaining retries are cancelled, and new events skip it.
    client
        .wait_for_deliveries(&format!("webhook_id={}", id(&dead)), WAIT, |d| {
            d.len() == 1 && d[0]["status"] != "pending"
        })
        .await;
    // Re-enabling clears the reason.
    let enabled = client
        .patch(
            &format!("/v1/webhooks/{}", id(&dead)),
            json!({"status": "active"}),
        )
        .await;
    assert_eq!(enabled.assert_status(200)["disabled_reason"], Value::Null);
}

#[tokio::test]
async fn test_deliveries_answer_with_their_outcome() {
    let stack = fast_stack("1s").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    let ok = client.webhook(&receiver.url("test-ok"), json!("*")).await;
    let result = client
        .post(
            &format!("/v1/webhooks/{}/test", id(&ok)),
            json!({"event": "user.created", "data": {"test": 1}}),
        )
        .await;
    let body = result.assert_status(200).clone();
    assert_eq!(body["success"], true);
    assert_eq!(body["details"]["status_code"], 200);
    assert!(body["details"]["response_time"].is_u64());
    assert!(body["details"]["timestamp"].is_string());
    assert_eq!(body["details"]["error"], Value::Null);
    let got = receiver.requests("test-ok");
    assert_eq!(got.len(), 1);
    assert_signed(&got[0], ok["secret"].as_str().unwrap());
    assert_eq!(got[0].json()["data"], json!({"test": 1}));
    assert_eq!(got[0].header("x-webhook-event"), "user.created");

    receiver.default("test-500", Answer::Status(500));
    let failing = client.webhook(&receiver.url("test-500"), json!("*")).await;
    let result = client
        .post(
            &format!("/v1/webhooks/{}/test", id(&failing)),
            json!({"event": "user.created"}),
        )
        .await;
    assert_eq!(result.assert_status(200)["success"], false);
    assert_eq!(result.body["details"]["status_code"], 500);

    let closed = client
        .webhook("http://127.0.0.1:9/nothing-listens", json!("*"))
        .await;
    let result = client
        .post(
            &format!("/v1/webhooks/{}/test", id(&closed)),
            json!({"event": "user.created"}),
        )
        .await;
    assert_eq!(result.assert_status(200)["success"], false);
    assert_eq!(result.body["details"]["status_code"], Value::Null);
    assert!(
        result.body["details"]["error"]
            .as_str()
            .unwrap()
            .contains("connect")
    );
    // Test deliveries are not recorded.
    assert!(client.deliveries("").await.is_empty());
    client
        .post(&format!("/v1/webhooks/{}/test", id(&ok)), json!({}))
        .await
        .assert_error(400, "INVALID_REQUEST");
}

#[tokio::test]
async fn publishing_checks_type_data_and_id() {
    let stack = fast_stack("1s").await;
    let client = tenant(&stack).await;
    let unknown = client
        .post("/v1/events", json!({"type": "nope.nope", "data": {}}))
        .await;
    unknown.assert_error(422, "UNKNOWN_EVENT_TYPE");
    assert_eq!(unknown.field(), Some("type"));
    for (body, field) in [
        (json!({"data": {}}), "type"),
        (json!({"type": "user.created"}), "data"),
        (json!({"type": "user.created", "data": [1]}), "data"),
        (
            json!({"type": "user.created", "data": {}, "id": "has spaces"}),
            "id",
        ),
        (json!({"type": "user.created", "data": {}, "id": 5}), "id"),
        (
            json!({"type": "user.created", "data": {}, "extra": 1}),
            "extra",
        ),
    ] {
        let reply = client.post("/v1/events", body.clone()).await;
        reply.assert_error(400, "INVALID_REQUEST");
        assert_eq!(reply.field(), Some(field), "{body}");
    }
    let big = json!({"type": "user.created", "data": {"x": "y".repeat(201 * 1024)}});
    client
        .post("/v1/events", big)
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
    assert_eq!(client.get("/v1/events").await.body["data"], json!([]));
}

#[tokio::test]
async fn events_and_deliveries_are_invisible_to_other_tenants() {
    let stack = fast_stack("1s").await;
    let receiver = Receiver::start().await;
    let owner = tenant(&stack).await;
    let other = tenant(&stack).await;
    let wh = owner.webhook(&receiver.url("mine"), json!("*")).await;
    other.webhook(&receiver.url("theirs"), json!("*")).await;
    let event = owner
        .publish("user.created", json!({"secret": "owner-only"}))
        .await;
    receiver.wait_for("mine", 1, WAIT).await;
    let delivery = owner
        .wait_for_deliveries("", WAIT, |d| all_with_status(d, 1, "succeeded"))
        .await
        .remove(0);
    // The positive signal: the other tenant's own later event reaches its webhook.
    let theirs = other.publish("user.created", json!({})).await;
    let got = receiver.wait_for("theirs", 1, WAIT).await;
    assert_eq!(
        got.iter()
            .map(|r| r.header("webhook-id"))
            .collect::<Vec<_>>(),
        vec![id(&theirs).as_str()],
        "another tenant's webhook got the event"
    );

    other
        .get(&format!("/v1/events/{}", id(&event)))
        .await
        .assert_error(404, "EVENT_NOT_FOUND");
    other
        .get(&format!("/v1/deliveries/{}", id(&delivery)))
        .await
        .assert_error(404, "DELIVERY_NOT_FOUND");
    other
        .post_empty(&format!("/v1/deliveries/{}/retry", id(&delivery)))
        .await
        .assert_error(404, "DELIVERY_NOT_FOUND");
    other
        .post(
            &format!("/v1/webhooks/{}/test", id(&wh)),
            json!({"event": "user.created"}),
        )
        .await
        .assert_error(404, "WEBHOOK_NOT_FOUND");
    let their_events = other.get("/v1/events").await.body["data"].clone();
    assert_eq!(their_events.as_array().unwrap().len(), 1, "{their_events}");
    assert_eq!(their_events[0]["id"], theirs["id"]);
    assert!(
        other
            .deliveries("")
            .await
            .iter()
            .all(|d| d["event_id"] == theirs["id"])
    );
    assert!(
        other
            .deliveries(&format!("webhook_id={}", id(&wh)))
            .await
            .is_empty()
    );
    // The owner's event reaches only the owner's webhook even with a shared type name.
    assert_eq!(receiver.requests("mine").len(), 1);
}

#[tokio::test]
async fn the_log_filters_by_webhook_type_status_and_time() {
    let stack = fast_stack("1h").await;
    let receiver = Receiver::start().await;
    let client = tenant(&stack).await;
    receiver.default("bad", Answer::Status(500));
    let good = client.webhook(&receiver.url("good"), json!("*")).await;
    let bad = client.webhook(&receiver.url("bad"), json!("user.*")).await;
    let before = chrono_now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    client.publish("user.created", json!({})).await;
    client.publish("invoice.paid", json!({})).await;
    client
        .wait_for_deliveries("", WAIT, |d| {
            d.len() == 3 && d.iter().all(|x| x["attempts"] == 1)
        })
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let middle = chrono_now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    client.publish("data.updated", json!({})).await;
    client
        .wait_for_deliveries("", WAIT, |d| {
            d.len() == 4 && d.iter().all(|x| x["attempts"] == 1)
        })
        .await;

    assert_eq!(
        client
            .deliveries(&format!("webhook_id={}", id(&good)))
            .await
            .len(),
        3
    );
    assert_eq!(
        client
            .deliveries(&format!("webhook_id={}", id(&bad)))
            .await
            .len(),
        1
    );
    assert_eq!(client.deliveries("event_type=invoice.paid").await.len(), 1);
    assert_eq!(client.deliveries("status=pending").await.len(), 1);
    assert_eq!(client.deliveries("status=succeeded").await.len(), 3);
    assert_eq!(
        client
            .deliveries(&format!(
                "status=succeeded&webhook_id={}&event_type=user.created",
                id(&good)
            ))
            .await
            .len(),
        1
    );
    assert_eq!(
        client
            .deliveries(&format!("from={before}&to={middle}"))
            .await
            .len(),
        3
    );
    assert_eq!(client.deliveries(&format!("from={middle}")).await.len(), 1);
    let events = client.get(&format!("/v1/events?from={middle}")).await;
    assert_eq!(
        events.assert_status(200)["data"].as_array().unwrap().len(),
        1
    );
    let typed = client.get("/v1/events?type=invoice.paid").await;
    assert_eq!(typed.assert_status(200)["data"][0]["type"], "invoice.paid");
    // Newest first, and pages walk both ways.
    let page = client.get("/v1/deliveries?limit=2").await;
    let first_page = page.assert_status(200).clone();
    assert_eq!(first_page["pagination"]["has_next_page"], true);
    let end = first_page["pagination"]["end_cursor"].as_str().unwrap();
    let next = client
        .get(&format!("/v1/deliveries?limit=2&after={end}"))
        .await;
    let second_page = next.assert_status(200).clone();
    assert_eq!(second_page["data"].as_array().unwrap().len(), 2);
    assert_eq!(second_page["pagination"]["has_next_page"], false);
    let start = second_page["pagination"]["start_cursor"].as_str().unwrap();
    let back = client
        .get(&format!("/v1/deliveries?limit=2&before={start}"))
        .await;
    assert_eq!(back.assert_status(200)["data"], first_page["data"]);
    let mut all: Vec<Value> = first_page["data"].as_array().unwrap().clone();
    all.extend(second_page["data"].as_array().unwrap().clone());
    let ids: Vec<String> = all.iter().map(id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(ids, sorted, "newest first");

    for query in [
        "status=lost",
        "webhook_id=nope",
        "event_type=bad%20type",
        "from=yesterday",
        "to=2026-13-01T00:00:00Z",
    ] {
        client
            .get(&format!("/v1/deliveries?{query}"))
            .await
            .assert_error(400, "INVALID_REQUEST");
    }
    client
        .get("/v1/events?type=bad%20type")
        .await
        .assert_error(400, "INVALID_REQUEST");
    client
        .get("/v1/events?from=soon")
        .await
        .assert_error(400, "INVALID_REQUEST");
}

/// Now as RFC 3339 UTC with milliseconds, URL-safe (no '+').
fn chrono_now() -> String {
    shared::domain::format_time(chrono::Utc::now())
}
