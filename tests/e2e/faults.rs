//! Fault injection end to end: every accepted event ends as one record per matching webhook
//! with a final state, whatever fails on the way.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::receiver::{Answer, Receiver};
use crate::storage_faults::ThrottlingProxy;
use crate::utils::{
    Client, Reply, Running, Stack, all_with_status, emulator_endpoint, id, service_log,
    workspace_binary,
};

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
        shared::delivery::deliver_batch(stack.function("deliver"), one_message("m-1", &body, 1)),
    )
    .await;
    assert!(crashed.is_err(), "the invocation was meant to be cut short");
    // SQS hands the unacknowledged message over again.
    let response =
        shared::delivery::deliver_batch(stack.function("deliver"), one_message("m-1", &body, 2))
            .await;
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
    shared::delivery::deliver_batch(stack.function("deliver"), one_message("m-1", &body, 3)).await;
    let after: usize = (0..6)
        .map(|n| receiver.requests(&format!("w{n}")).len())
        .sum();
    assert_eq!(before, after);
}

/// A separate `webhooks-local` process that only delivers (its own pollers, the stack's
/// table and queues), as one more Lambda instance of `deliver` would.
fn deliver_process(stack: &Stack) -> Running {
    let child = Command::new(workspace_binary("webhooks-local"))
        .env("AWS_ENDPOINT_URL", emulator_endpoint())
        .env("TABLE_NAME", &stack.table)
        .env("PORT", "0")
        .env("RETRY_SCHEDULE", "1h")
        // A message this process received comes back 4 s later unless it is deleted.
        .env("LOCAL_VISIBILITY_TIMEOUT", "4")
        .env_remove("DEV_API_KEY")
        .stdout(Stdio::null())
        .stderr(service_log())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    Running(child)
}

#[tokio::test]
async fn a_deliver_process_killed_mid_batch_loses_nothing_when_its_messages_return() {
    // The test's stack serves the API only; deliver runs in child processes.
    let stack = Stack::start_with(&[("LOCAL_POLLERS", "0")]).await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["order.paid"]).await;
    let events = 3;
    let mut webhooks = Vec::new();
    for n in 0..4 {
        let path = format!("k{n}");
        // Half the receivers hold the first process's requests until it is killed; the
        // other half answer at once, so the kill lands between outcomes.
        if n % 2 == 0 {
            receiver.script(
                &path,
                vec![Answer::Slow(Duration::from_secs(60), 200); events],
            );
        }
        webhooks.push(client.webhook(&receiver.url(&path), json!("*")).await);
    }
    let mut published = HashSet::new();
    for i in 0..events {
        published.insert(id(&client.publish("order.paid", json!({"n": i})).await));
    }

    let mut first = deliver_process(&stack);
    for n in 0..4 {
        receiver
            .wait_for(&format!("k{n}"), events, Duration::from_secs(30))
            .await;
    }
    // Every request is out, half of them unanswered: SIGKILL, no chance to clean up.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let settled = client.deliveries("status=succeeded").await.len();
    assert!(
        settled < 4 * events,
        "the kill came too late to interrupt anything ({settled} settled)"
    );

    // Another process takes over when the messages' visibility timeout runs out.
    let _second = deliver_process(&stack);
    let records = client
        .wait_for_deliveries("", Duration::from_secs(60), |d| {
            all_with_status(d, 4 * events, "succeeded")
        })
        .await;
    let pairs: HashSet<(String, String)> = records
        .iter()
        .map(|d| {
            (
                d["event_id"].as_str().unwrap().to_string(),
                d["webhook_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(pairs.len(), 4 * events, "one record per event and webhook");
    assert!(pairs.iter().all(|(event, _)| published.contains(event)));
    // Every webhook heard every event (a held request may have been sent again).
    let mut sent = 0;
    for n in 0..4 {
        let requests = receiver.requests(&format!("k{n}"));
        let mut per_message: HashMap<String, usize> = HashMap::new();
        for r in &requests {
            *per_message
                .entry(r.header("webhook-id").to_string())
                .or_default() += 1;
        }
        assert_eq!(per_message.len(), events, "k{n}: {per_message:?}");
        sent += requests.len();
        assert!(
            per_message.values().all(|&sent| sent <= 3),
            "k{n}: repeats are bounded: {per_message:?}"
        );
    }
    eprintln!(
        "process kill: {settled} of {} deliveries recorded at the kill; {sent} requests for them in all",
        4 * events
    );
}

/// Sends a request until it is not throttled, as a client honouring `Retry-After` would
/// (faster): every refusal must be 503 `UNAVAILABLE` with `Retry-After`, nothing else 5xx.
async fn until_served(
    client: &Client,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    throttled: &mut usize,
) -> Reply {
    for _ in 0..50 {
        let reply = client.send(method.clone(), path, body.clone()).await;
        if reply.status != 503 {
            assert!(reply.status < 500, "{method} {path}: {reply:?}");
            return reply;
        }
        reply.assert_error(503, "UNAVAILABLE");
        assert!(reply.headers.contains_key("retry-after"), "{reply:?}");
        *throttled += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{method} {path}: still throttled after 50 tries");
}

#[tokio::test]
async fn with_a_share_of_storage_calls_throttled_the_api_says_503_and_every_event_arrives() {
    use reqwest::Method;

    let proxy = ThrottlingProxy::start().await;
    // The sweeper runs as in `make run`, with a margin short enough for a test: whatever a
    // throttled message could not finish (even in a dead-letter queue) comes back.
    let stack = Stack::start_with(&[
        ("AWS_ENDPOINT_URL", proxy.endpoint.as_str()),
        ("LOCAL_VISIBILITY_TIMEOUT", "2"),
        ("RETRY_SCHEDULE", "1s"),
        ("LOCAL_SWEEP_INTERVAL", "1s"),
        ("SWEEP_MARGIN", "5s"),
    ])
    .await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    // From here on, half of all DynamoDB calls (the SDK's own retries included) are
    // refused, everywhere: the authorizer, the routes and the deliver pollers.
    proxy.throttle_share(50, 0x5eed);
    let mut refused = 0;
    until_served(
        &client,
        Method::POST,
        "/v1/event-types",
        Some(json!({"name": "order.paid"})),
        &mut refused,
    )
    .await
    .assert_status(201);
    let (hooks, events) = (4, 5);
    for n in 0..hooks {
        let body = json!({"url": receiver.url(&format!("s{n}")), "events": "*"});
        until_served(
            &client,
            Method::POST,
            "/v1/webhooks",
            Some(body),
            &mut refused,
        )
        .await
        .assert_status(201);
    }
    for i in 0..events {
        // A source retrying a refused publish sends the same `id`: one event, not two.
        let body = json!({"type": "order.paid", "id": format!("order-{i}"), "data": {"i": i}});
        until_served(
            &client,
            Method::POST,
            "/v1/events",
            Some(body),
            &mut refused,
        )
        .await
        .assert_status(202);
    }

    // Reads while the deliveries are under way: refused or served, never a 500.
    for path in ["/v1/me", "/v1/webhooks", "/v1/event-types"].repeat(4) {
        until_served(&client, Method::GET, path, None, &mut refused)
            .await
            .assert_status(200);
    }
    // Then storage recovers (as throttling does), and every delivery completes: those the
    // throttled pipeline finished, and those the sweeper brings back, whatever the seed did
    // to their messages' receives.
    proxy.throttle(&[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let records = loop {
        let reply = until_served(
            &client,
            Method::GET,
            "/v1/deliveries?limit=100",
            None,
            &mut refused,
        )
        .await;
        let records = reply.assert_status(200)["data"].as_array().unwrap().clone();
        if all_with_status(&records, hooks * events, "succeeded") {
            break records;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every delivery completed once storage recovered: {records:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let listed = until_served(
        &client,
        Method::GET,
        "/v1/events?limit=100",
        None,
        &mut refused,
    )
    .await;
    assert_eq!(
        listed.assert_status(200)["data"].as_array().unwrap().len(),
        events,
        "no event lost or doubled"
    );
    for n in 0..hooks {
        let heard: HashSet<String> = receiver
            .requests(&format!("s{n}"))
            .iter()
            .map(|r| r.header("webhook-id").to_string())
            .collect();
        assert_eq!(heard.len(), events, "s{n} heard every event");
    }
    let pairs: HashSet<(&str, &str)> = records
        .iter()
        .map(|d| {
            (
                d["event_id"].as_str().unwrap(),
                d["webhook_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(pairs.len(), hooks * events);
    // Some refusals reach the API (the SDK's retries absorb most); every one was a 503 with
    // Retry-After. The deterministic 503 per route is `storage_faults.rs`'s test.
    let injected = proxy.throttled_answers();
    assert!(injected > 0, "nothing was throttled");
    eprintln!(
        "throttled share: {injected} DynamoDB calls throttled, {refused} API requests answered 503"
    );
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
        shared::delivery::deliver_batch(stack.function("deliver"), one_message("m-t", &body, 1))
            .await;
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
        shared::delivery::deliver_batch(stack.function("deliver"), one_message("m-t", &body, 2))
            .await;
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
