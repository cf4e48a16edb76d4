//! Fault injection end to end: every accepted event ends as one record per matching webhook
//! with a final state, whatever fails on the way.

use std::time::Duration;

use serde_json::{Value, json};

use crate::receiver::{Answer, Receiver};
use crate::storage_faults::ThrottlingProxy;
use crate::utils::{Stack, all_with_status};

/// An SQS event as Lambda hands it over: one message, received `receive_count` times.
fn one_message(id: &str, body: &str, receive_count: u32) -> aws_lambda_events::sqs::SqsEvent {
    let mut event = aws_lambda_events::sqs::SqsEvent::default();
    let mut record = aws_lambda_events::sqs::SqsMessage::default();
    record.message_id = Some(id.to_string());
    record.receipt_handle = Some(format!("receipt-{id}-{receive_count}"));
    record.body = Some(body.to_string());
    record
        .attributes
        .insert("ApproximateReceiveCount".into(), receive_count.to_string());
    event.records.push(record);
    event
}

/// Every record of the tenant, by webhook: exactly one each, all in a final state.
async fn one_final_record_per_webhook(client: &crate::utils::Client, webhooks: &[Value]) {
    let records = client.deliveries("").await;
    for wh in webhooks {
        let mine: Vec<&Value> = records
            .iter()
            .filter(|d| d["webhook_id"] == wh["id"])
            .collect();
        assert_eq!(mine.len(), 1, "webhook {}: {mine:#?}", wh["id"]);
        assert!(
            ["succeeded", "failed", "cancelled", "buffered"]
                .contains(&mine[0]["status"].as_str().unwrap())
                || mine[0]["next_attempt_at"].is_string(),
            "{:#?}",
            mine[0]
        );
    }
    assert_eq!(records.len(), webhooks.len());
}

#[tokio::test]
async fn a_deliver_invocation_killed_mid_batch_loses_nothing_when_the_message_returns() {
    let stack = Stack::start_with(&[("RETRY_SCHEDULE", "1h")]).await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["order.paid"]).await;
    let mut webhooks = Vec::new();
    for n in 0..6 {
        // Half answer at once, half after a while: the crash comes in between.
        let path = format!("w{n}");
        if n % 2 == 1 {
            receiver.default(&path, Answer::Slow(Duration::from_millis(1500), 200));
        }
        webhooks.push(client.webhook(&receiver.url(&path), json!("*")).await);
    }
    let body = json!({"tenant_id": client.tenant, "type": "order.paid", "data": {"n": 1}, "id": "order-1"}).to_string();
    // The invocation dies (its future is dropped) while the slow requests are in flight.
    let crashed = tokio::time::timeout(
        Duration::from_millis(700),
        shared::delivery::deliver_batch(&stack.state, one_message("m-1", &body, 1)),
    )
    .await;
    assert!(crashed.is_err(), "the invocation was meant to be cut short");
    // SQS hands the unacknowledged message over again.
    let response =
        shared::delivery::deliver_batch(&stack.state, one_message("m-1", &body, 2)).await;
    assert!(response.batch_item_failures.is_empty());
    one_final_record_per_webhook(&client, &webhooks).await;
    let done = client.deliveries("status=succeeded").await;
    assert_eq!(done.len(), 6, "{done:#?}");
    for n in 0..6 {
        let got = receiver.requests(&format!("w{n}")).len();
        assert!(
            (1..=2).contains(&got),
            "w{n}: {got} requests (at least once, at most one repeat)"
        );
    }
    // A third copy finds the event done and sends nothing.
    let before: usize = (0..6)
        .map(|n| receiver.requests(&format!("w{n}")).len())
        .sum();
    shared::delivery::deliver_batch(&stack.state, one_message("m-1", &body, 3)).await;
    let after: usize = (0..6)
        .map(|n| receiver.requests(&format!("w{n}")).len())
        .sum();
    assert_eq!(before, after);
}

#[tokio::test]
async fn throttled_storage_during_a_fan_out_delays_but_never_loses_deliveries() {
    let proxy = ThrottlingProxy::start().await;
    let stack = Stack::start_with(&[
        ("AWS_ENDPOINT_URL", proxy.endpoint.as_str()),
        ("RETRY_SCHEDULE", "1h"),
    ])
    .await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["order.paid"]).await;
    let mut webhooks = Vec::new();
    for n in 0..4 {
        webhooks.push(
            client
                .webhook(&receiver.url(&format!("t{n}")), json!("*"))
                .await,
        );
    }
    let body = json!({"tenant_id": client.tenant, "type": "order.paid", "data": {}}).to_string();
    // The records cannot be written: the message must come back, not be acknowledged.
    proxy.throttle(&["BatchWriteItem"]);
    let response =
        shared::delivery::deliver_batch(&stack.state, one_message("m-t", &body, 1)).await;
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "the message is reported for retry"
    );
    assert!(
        client.deliveries("").await.is_empty(),
        "nothing half-recorded"
    );
    // Storage recovers; SQS hands the message over again.
    proxy.throttle(&[]);
    let response =
        shared::delivery::deliver_batch(&stack.state, one_message("m-t", &body, 2)).await;
    assert!(response.batch_item_failures.is_empty());
    client
        .wait_for_deliveries("", Duration::from_secs(20), |d| {
            all_with_status(d, 4, "succeeded")
        })
        .await;
    one_final_record_per_webhook(&client, &webhooks).await;
}

#[tokio::test]
async fn receivers_that_hang_or_are_not_listening_fail_that_attempt_only() {
    let stack = Stack::start_with(&[("RETRY_SCHEDULE", "1h")]).await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["order.paid"]).await;
    receiver.default("hang", Answer::Slow(Duration::from_secs(30), 200));
    receiver.default("error", Answer::Status(503));
    let hang = client.webhook(&receiver.url("hang"), json!("*")).await;
    let closed = client
        .webhook("http://127.0.0.1:9/closed", json!("*"))
        .await;
    let error = client.webhook(&receiver.url("error"), json!("*")).await;
    let fine = client.webhook(&receiver.url("fine"), json!("*")).await;
    client.publish("order.paid", json!({})).await;
    let records = client
        .wait_for_deliveries("", Duration::from_secs(40), |d| {
            d.len() == 4 && d.iter().all(|x| x["attempts"] == 1)
        })
        .await;
    let of = |wh: &Value| {
        records
            .iter()
            .find(|d| d["webhook_id"] == wh["id"])
            .unwrap()
            .clone()
    };
    assert_eq!(of(&fine)["status"], "succeeded");
    for failing in [&hang, &closed, &error] {
        let d = of(failing);
        assert_eq!(d["status"], "pending", "{d:#?}");
        assert!(d["next_attempt_at"].is_string());
    }
    assert!(
        of(&hang)["last_attempt"]["error"]
            .as_str()
            .unwrap()
            .contains("timed out")
    );
    let waited = of(&hang)["last_attempt"]["response_time"].as_u64().unwrap();
    assert!(
        (14_000..20_000).contains(&waited),
        "the total timeout is 15 s: {waited} ms"
    );
    assert!(
        of(&closed)["last_attempt"]["error"]
            .as_str()
            .unwrap()
            .contains("connect")
    );
    assert_eq!(of(&error)["last_attempt"]["status_code"], 503);
}
