//! Tenant controls (SPEC §3): content filters, custom headers, rate limits, event-type
//! schemas, replay, recover.

use std::time::Duration;

use serde_json::{Value, json};

use crate::receiver::{Answer, Receiver};
use crate::utils::{Stack, id};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_content_filter_lets_only_matching_events_through_and_a_refused_one_leaves_no_record() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["order.paid"]).await;
    let filter = json!({"data": {"amount": {"$gte": 100}, "currency": {"$in": ["EUR", "USD"]}}});
    let created = client
        .post(
            "/v1/webhooks",
            json!({"url": receiver.url("big"), "events": "*", "filter": filter}),
        )
        .await;
    let webhook = created.assert_status(201).clone();
    assert_eq!(webhook["filter"], filter);
    let all = client.webhook(&receiver.url("all"), json!("*")).await;
    assert_eq!(all["filter"], Value::Null);

    let small = client
        .publish("order.paid", json!({"amount": 5, "currency": "EUR"}))
        .await;
    let other = client
        .publish("order.paid", json!({"amount": 500, "currency": "JPY"}))
        .await;
    let big = client
        .publish("order.paid", json!({"amount": 500, "currency": "EUR"}))
        .await;
    // Every event reaches the unfiltered webhook; once the last has, the filtered one has
    // had its chance at all three.
    receiver.wait_for("all", 3, WAIT).await;
    let got = receiver.wait_for("big", 1, WAIT).await;
    client
        .wait_for_deliveries(&format!("webhook_id={}", id(&all)), WAIT, |d| {
            d.len() == 3 && d.iter().all(|x| x["status"] == "succeeded")
        })
        .await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["id"], big["id"]);
    let filtered = client
        .deliveries(&format!("webhook_id={}", id(&webhook)))
        .await;
    assert_eq!(
        filtered.len(),
        1,
        "a refused event makes no record: {filtered:#?}"
    );
    assert_eq!(filtered[0]["event_id"], big["id"]);
    for refused in [&small, &other] {
        let event = client.get(&format!("/v1/events/{}", id(refused))).await;
        let body = event.assert_status(200).to_string();
        assert!(!body.contains(&id(&webhook)), "{body}");
    }

    // Changed by PATCH, removed with null; both show on GET.
    let path = format!("/v1/webhooks/{}", id(&webhook));
    let narrowed = json!({"type": "order.paid", "$not": {"data": {"test": true}}});
    let patched = client.patch(&path, json!({"filter": narrowed})).await;
    assert_eq!(patched.assert_status(200)["filter"], narrowed);
    assert_eq!(
        client.get(&path).await.assert_status(200)["filter"],
        narrowed
    );
    let cleared = client.patch(&path, json!({"filter": null})).await;
    assert_eq!(cleared.assert_status(200)["filter"], Value::Null);
    assert_eq!(
        client.get(&path).await.assert_status(200)["filter"],
        Value::Null
    );
}

#[tokio::test]
async fn a_filter_that_is_not_one_is_422_naming_its_path_and_changes_nothing() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    let url = crate::utils::local_url("f");
    for (filter, path) in [
        (json!(["a"]), "filter"),
        (
            json!({"data": {"amount": {"$regex": "^1"}}}),
            "filter.data.amount.$regex",
        ),
        (json!({"data": {"tags": ["a", "b"]}}), "filter.data.tags"),
        (json!({"$or": [{"type": "a"}, 7]}), "filter.$or[1]"),
        (
            json!({"data": {"x": {"$in": vec!["y".repeat(100); 45]}}}),
            "filter",
        ),
    ] {
        let reply = client
            .post(
                "/v1/webhooks",
                json!({"url": url, "events": "*", "filter": filter}),
            )
            .await;
        reply.assert_error(422, "INVALID_FILTER");
        assert_eq!(reply.field(), Some(path), "{}", reply.body);
    }
    assert_eq!(
        client.get("/v1/webhooks").await.body["data"],
        json!([]),
        "nothing was created"
    );
    let webhook = client.webhook(&url, json!("*")).await;
    let path = format!("/v1/webhooks/{}", id(&webhook));
    client
        .patch(&path, json!({"filter": {"$nope": 1}, "name": "changed"}))
        .await
        .assert_error(422, "INVALID_FILTER");
    let unchanged = client.get(&path).await;
    assert_eq!(unchanged.body["name"], Value::Null);
    assert_eq!(unchanged.body["filter"], Value::Null);
}

#[tokio::test]
async fn custom_headers_go_with_every_attempt_and_the_authorization_one_is_kept_like_a_password() {
    let stack = Stack::start_with(&[("RETRY_SCHEDULE", "1s")]).await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["order.paid"]).await;
    receiver.script("h", vec![Answer::Status(500), Answer::Status(200)]);
    let token = "Bearer e2e-h3ader-t0ken";
    let created = client
        .post(
            "/v1/webhooks",
            json!({"url": receiver.url("h"), "events": "*",
                   "headers": {"X-Team": "crm", "authorization": token}}),
        )
        .await;
    let webhook = created.assert_status(201).clone();
    assert_eq!(
        webhook["headers"],
        json!({"X-Team": "crm", "Authorization": "********"})
    );
    assert!(!created.body.to_string().contains(token));
    let path = format!("/v1/webhooks/{}", id(&webhook));
    let shown = client
        .get(&format!("{path}?show_authentication=true"))
        .await;
    assert_eq!(shown.assert_status(200)["headers"]["Authorization"], token);
    let listed = client.get("/v1/webhooks?show_authentication=true").await;
    assert_eq!(listed.body["data"][0]["headers"]["Authorization"], token);
    assert_eq!(
        client.get(&path).await.body["headers"]["Authorization"],
        "********"
    );

    // The first attempt fails and the retry follows: both carry the headers.
    client.publish("order.paid", json!({"n": 1})).await;
    let got = receiver.wait_for("h", 2, WAIT).await;
    for request in &got {
        assert_eq!(request.header("x-team"), "crm");
        assert_eq!(request.header("authorization"), token);
        assert_eq!(request.header("content-type"), "application/json");
    }
    // So does a test delivery.
    client
        .post(&format!("{path}/test"), json!({"event": "order.paid"}))
        .await
        .assert_status(200);
    let got = receiver.wait_for("h", 3, WAIT).await;
    assert_eq!(got[2].header("authorization"), token);

    // The masked value sent back keeps the stored one; the other headers are replaced.
    let patched = client
        .patch(
            &path,
            json!({"headers": {"X-Team": "ops", "Authorization": "********"}}),
        )
        .await;
    assert_eq!(
        patched.assert_status(200)["headers"],
        json!({"X-Team": "ops", "Authorization": "********"})
    );
    client
        .post(&format!("{path}/test"), json!({"event": "order.paid"}))
        .await
        .assert_status(200);
    let got = receiver.wait_for("h", 4, WAIT).await;
    assert_eq!(
        (got[3].header("x-team"), got[3].header("authorization")),
        ("ops", token)
    );

    // A new value through an update (the portal's settings form sends headers) is sealed
    // anew, with the update function's own KMS permission, and sent from then on.
    let renewed = "Bearer x-renewed-42";
    crate::utils::remember_secret(renewed);
    client
        .patch(&path, json!({"headers": {"Authorization": renewed}}))
        .await
        .assert_status(200);
    client
        .post(&format!("{path}/test"), json!({"event": "order.paid"}))
        .await
        .assert_status(200);
    let got = receiver.wait_for("h", 5, WAIT).await;
    assert_eq!(got[4].header("authorization"), renewed);

    // Basic auth and an authorization header exclude each other, both ways.
    client
        .put(
            &format!("{path}/auth"),
            json!({"username": "u", "password": "basic-pw-123"}),
        )
        .await
        .assert_error(422, "INVALID_HEADERS");
    let cleared = client.patch(&path, json!({"headers": null})).await;
    assert_eq!(cleared.assert_status(200)["headers"], json!({}));
    client
        .put(
            &format!("{path}/auth"),
            json!({"username": "u", "password": "basic-pw-123"}),
        )
        .await
        .assert_status(200);
    let refused = client
        .patch(
            &path,
            json!({"headers": {"Authorization": "Bearer x-other-1"}}),
        )
        .await;
    refused.assert_error(422, "INVALID_HEADERS");
    assert_eq!(refused.field(), Some("headers.Authorization"));
}

#[tokio::test]
async fn headers_the_spec_refuses_are_422_naming_the_header() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    let url = crate::utils::local_url("hdr");
    for (headers, field) in [
        (
            json!({"Content-Type": "text/plain"}),
            "headers.Content-Type",
        ),
        (
            json!({"X-Webhook-Signature": "forged"}),
            "headers.X-Webhook-Signature",
        ),
        (json!({"webhook-id": "forged"}), "headers.webhook-id"),
        (json!({"Host": "example.com"}), "headers.Host"),
        (json!({"X-Split": "a\r\nX-Injected: 1"}), "headers.X-Split"),
        (json!({"Bad Name": "v"}), "headers.Bad Name"),
        (json!({"X-Big": "v".repeat(1025)}), "headers.X-Big"),
        (json!("X-Team: crm"), "headers"),
    ] {
        let reply = client
            .post(
                "/v1/webhooks",
                json!({"url": url, "events": "*", "headers": headers}),
            )
            .await;
        reply.assert_error(422, "INVALID_HEADERS");
        assert_eq!(reply.field(), Some(field), "{}", reply.body);
    }
    let with_basic = client
        .post(
            "/v1/webhooks",
            json!({"url": url, "events": "*", "auth": {"username": "u", "password": "basic-pw-456"},
                   "headers": {"Authorization": "Bearer x-other-2"}}),
        )
        .await;
    with_basic.assert_error(422, "INVALID_HEADERS");
    assert_eq!(client.get("/v1/webhooks").await.body["data"], json!([]));
}

#[tokio::test]
async fn a_rate_limit_holds_across_concurrent_invocations_and_deliveries_over_it_wait_uncharged() {
    // make run's defaults: four pollers per queue, each with batches side by side.
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["tick"]).await;
    let created = client
        .post(
            "/v1/webhooks",
            json!({"url": receiver.url("limited"), "events": "*", "rate_limit": 2}),
        )
        .await;
    let webhook = created.assert_status(201).clone();
    assert_eq!(webhook["rate_limit"], 2);
    const EVENTS: usize = 12;
    for n in 0..EVENTS {
        client.publish("tick", json!({"n": n})).await;
    }
    let got = receiver
        .wait_for("limited", EVENTS, Duration::from_secs(60))
        .await;
    let mut times: Vec<_> = got.iter().map(|r| r.at).collect();
    times.sort();
    // Over any 3 s, at most 2 a second plus a burst of 2 (the windows are whole seconds).
    for (i, start) in times.iter().enumerate() {
        let within = times[i..]
            .iter()
            .filter(|t| t.duration_since(*start) < Duration::from_secs(3))
            .count();
        assert!(
            within <= 2 * 3 + 2,
            "{within} attempts within 3 s: {times:?}"
        );
    }
    let span = times[EVENTS - 1].duration_since(times[0]);
    assert!(span >= Duration::from_secs(4), "12 at 2/s took {span:?}");
    // Waiting for the rate is no attempt: each delivery succeeded at its first.
    let deliveries = client
        .wait_for_deliveries(&format!("webhook_id={}", id(&webhook)), WAIT, |d| {
            d.len() == EVENTS && d.iter().all(|x| x["status"] == "succeeded")
        })
        .await;
    assert!(
        deliveries.iter().all(|d| d["attempts"] == 1),
        "{deliveries:#?}"
    );

    // Removed with null; out of range or not a whole number is a 400 naming it.
    let path = format!("/v1/webhooks/{}", id(&webhook));
    let cleared = client.patch(&path, json!({"rate_limit": null})).await;
    assert_eq!(cleared.assert_status(200)["rate_limit"], Value::Null);
    for bad in [json!(0), json!(10_001), json!("5"), json!(2.5), json!(-1)] {
        let reply = client.patch(&path, json!({"rate_limit": bad})).await;
        reply.assert_error(400, "INVALID_REQUEST");
        assert_eq!(reply.field(), Some("rate_limit"));
    }
    assert_eq!(
        client
            .patch(&path, json!({"rate_limit": 10_000}))
            .await
            .assert_status(200)["rate_limit"],
        10_000
    );
}

/// Checks a replayed request as a receiver would: signed with the webhook's secret (the
/// official Standard Webhooks verifier), `webhook-id` the event's id.
fn assert_replayed(request: &crate::receiver::Received, secret: &Value, event: &Value) {
    standardwebhooks::Webhook::new(secret.as_str().unwrap())
        .unwrap()
        .verify(&request.body, &request.headers)
        .unwrap_or_else(|e| panic!("Standard Webhooks verification failed: {e:?}"));
    assert_eq!(request.header("webhook-id"), event["id"].as_str().unwrap());
    assert_eq!(request.json()["data"], event["data"]);
}

#[tokio::test]
async fn replay_sends_an_event_again_to_one_webhook_or_to_every_match_without_one() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["order.paid", "user.created"]).await;
    let first = client
        .webhook(&receiver.url("first"), json!("order.paid"))
        .await;
    let event = client.publish("order.paid", json!({"n": 1})).await;
    receiver.wait_for("first", 1, WAIT).await;
    let replay = format!("/v1/events/{}/replay", id(&event));

    // Created after the event: one subscribed to its type, one not.
    let later = client
        .webhook(&receiver.url("later"), json!("order.paid"))
        .await;
    let other = client
        .webhook(&receiver.url("other"), json!("user.created"))
        .await;
    // Without webhook_id: every active match that has no delivery of it yet.
    let queued = client.post(&replay, json!({})).await;
    assert_eq!(queued.assert_status(202)["queued"], 1);
    assert_eq!(queued.body["event_id"], event["id"]);
    let got = receiver.wait_for("later", 1, WAIT).await;
    assert_replayed(&got[0], &later["secret"], &event);
    client
        .wait_for_deliveries(&format!("webhook_id={}", id(&later)), WAIT, |d| {
            d.len() == 1 && d[0]["status"] == "succeeded"
        })
        .await;
    let again = client.send_raw(reqwest::Method::POST, &replay, None).await;
    assert_eq!(
        again.assert_status(202)["queued"],
        0,
        "nothing left to replay"
    );

    // With webhook_id: to one not subscribed to the type, and again to one that has a
    // delivery of it (a new record beside the first).
    let to_other = client
        .post(&replay, json!({"webhook_id": id(&other)}))
        .await;
    assert_eq!(to_other.assert_status(202)["queued"], 1);
    let got = receiver.wait_for("other", 1, WAIT).await;
    assert_replayed(&got[0], &other["secret"], &event);
    client
        .post(&replay, json!({"webhook_id": id(&first)}))
        .await
        .assert_status(202);
    let got = receiver.wait_for("first", 2, WAIT).await;
    assert_replayed(&got[1], &first["secret"], &event);
    let records = client
        .wait_for_deliveries(&format!("webhook_id={}", id(&first)), WAIT, |d| {
            d.len() == 2 && d.iter().all(|x| x["status"] == "succeeded")
        })
        .await;
    assert_ne!(records[0]["id"], records[1]["id"]);
    assert!(records.iter().all(|d| d["event_id"] == event["id"]));
    let summary = client.get(&format!("/v1/events/{}", id(&event))).await;
    assert_eq!(summary.assert_status(200)["deliveries"]["total"], 4);

    // Only an active webhook gets a replay; unknown ids are 404.
    client
        .post_empty(&format!("/v1/webhooks/{}/pause", id(&later)))
        .await
        .assert_status(200);
    client
        .post(&replay, json!({"webhook_id": id(&later)}))
        .await
        .assert_error(409, "CONFLICT");
    client
        .post(
            &replay,
            json!({"webhook_id": "wh_01ARZ3NDEKTSV4RRFFQ69G5FAV"}),
        )
        .await
        .assert_error(404, "WEBHOOK_NOT_FOUND");
    client
        .post(
            "/v1/events/evt_01ARZ3NDEKTSV4RRFFQ69G5FAV/replay",
            json!({}),
        )
        .await
        .assert_error(404, "EVENT_NOT_FOUND");
    client
        .post(&replay, json!({"webhook": id(&later)}))
        .await
        .assert_error(400, "INVALID_REQUEST");
}

/// Recover: once the receiver is back, the webhook's failed deliveries created in the
/// window go out again, oldest first, one after another, each as one more attempt on its
/// record; a failed one before the window stays as it was.
#[tokio::test]
async fn recover_sends_the_failed_deliveries_of_a_window_again_once_the_receiver_is_back() {
    let stack = Stack::start_with(&[("RETRY_SCHEDULE", "1s")]).await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["order.paid"]).await;
    receiver.default("down", Answer::Status(503));
    let wh = client.webhook(&receiver.url("down"), json!("*")).await;
    let by_webhook = format!("webhook_id={}", id(&wh));
    let all_failed =
        |n: usize| move |d: &[Value]| d.len() == n && d.iter().all(|x| x["status"] == "failed");
    client.publish("order.paid", json!({"n": 0})).await;
    client
        .wait_for_deliveries(&by_webhook, WAIT, all_failed(1))
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = shared::domain::format_time(chrono::Utc::now());
    tokio::time::sleep(Duration::from_millis(20)).await;
    for n in 1..=3 {
        client.publish("order.paid", json!({"n": n})).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client
        .wait_for_deliveries(&by_webhook, WAIT, all_failed(4))
        .await;
    let sent_while_down = receiver.requests("down").len();
    assert_eq!(sent_while_down, 8, "two attempts each");

    let path = format!("/v1/webhooks/{}/recover", id(&wh));
    client
        .post(&path, json!({}))
        .await
        .assert_error(400, "INVALID_REQUEST");
    client
        .post(&path, json!({"since": since, "until": since}))
        .await
        .assert_error(400, "INVALID_REQUEST");
    client
        .post(
            "/v1/webhooks/wh_01ARZ3NDEKTSV4RRFFQ69G5FAV/recover",
            json!({"since": since}),
        )
        .await
        .assert_error(404, "WEBHOOK_NOT_FOUND");

    receiver.default("down", Answer::Status(200));
    let accepted = client.post(&path, json!({"since": since})).await;
    let body = accepted.assert_status(202);
    assert_eq!(body["webhook_id"], wh["id"]);
    assert_eq!(body["since"], since.as_str());
    assert!(body["until"].as_str().unwrap() > since.as_str());

    let got = receiver.wait_for("down", sent_while_down + 3, WAIT).await;
    let order: Vec<i64> = got[sent_while_down..]
        .iter()
        .map(|r| r.json()["data"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(order, vec![1, 2, 3], "oldest first, one after another");
    let records = client
        .wait_for_deliveries(&by_webhook, WAIT, |d| {
            d.iter().filter(|x| x["status"] == "succeeded").count() == 3
        })
        .await;
    for d in &records {
        let expected = if d["status"] == "succeeded" { 3 } else { 2 };
        assert_eq!(d["attempts"], expected, "{d}");
    }
    let untouched: Vec<&Value> = records.iter().filter(|d| d["status"] == "failed").collect();
    assert_eq!(untouched.len(), 1, "the one before the window");

    // Only an active webhook is recovered.
    client
        .post_empty(&format!("/v1/webhooks/{}/pause", id(&wh)))
        .await
        .assert_status(200);
    client
        .post(&path, json!({"since": since}))
        .await
        .assert_error(409, "CONFLICT");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.requests("down").len(), sent_while_down + 3);
}

/// Schemas: an event type's schema is checked as JSON Schema draft 2020-12 when it is
/// created, and every event of the type is checked against it, on the API (422 naming the
/// first failing path) and on the ingest queue (to the dead-letter queue with the reason).
#[tokio::test]
async fn event_type_schemas_refuse_bad_schemas_and_events_that_do_not_match_on_both_paths() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    for (schema, says) in [
        (json!({"type": "money"}), "type"),
        (
            json!({"properties": {"amount": {"minimum": "zero"}}}),
            "minimum",
        ),
        (json!({"$ref": "file:///etc/passwd"}), "outside the schema"),
        (
            json!({"$schema": "http://json-schema.org/draft-07/schema#"}),
            "2020-12",
        ),
    ] {
        let reply = client
            .post(
                "/v1/event-types",
                json!({"name": "order.paid", "schema": schema}),
            )
            .await;
        reply.assert_error(422, "INVALID_SCHEMA");
        assert_eq!(reply.field(), Some("schema"));
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    let schema = json!({
        "type": "object",
        "required": ["amount", "lines"],
        "properties": {
            "amount": {"type": "integer", "minimum": 1},
            "lines": {"type": "array", "items": {"type": "object", "required": ["sku"]}}
        }
    });
    client
        .post(
            "/v1/event-types",
            json!({"name": "order.paid", "schema": schema}),
        )
        .await
        .assert_status(201);
    client.webhook(&receiver.url("orders"), json!("*")).await;

    let refused = client
        .post(
            "/v1/events",
            json!({"type": "order.paid", "data": {"amount": 5, "lines": [{"sku": "a"}, {}]}}),
        )
        .await;
    refused.assert_error(422, "SCHEMA_VALIDATION_FAILED");
    assert_eq!(refused.field(), Some("data.lines.1"));
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("data.lines.1") && message.contains("sku"),
        "{message}"
    );
    client
        .post(
            "/v1/events",
            json!({"type": "order.paid", "data": {"amount": 0, "lines": []}}),
        )
        .await
        .assert_error(422, "SCHEMA_VALIDATION_FAILED");
    client
        .publish("order.paid", json!({"amount": 5, "lines": [{"sku": "a"}]}))
        .await;
    let got = receiver.wait_for("orders", 1, WAIT).await;
    assert_eq!(got[0].json()["data"]["amount"], 5);

    // The ingest queue: the mismatch goes to the dead-letter queue with its reason.
    let message = |amount: i64| {
        json!({"tenant_id": client.tenant, "type": "order.paid",
               "data": {"amount": amount, "lines": []}})
        .to_string()
    };
    stack.send_to_ingest(&message(-3)).await;
    stack.send_to_ingest(&message(7)).await;
    let dead = stack.dead_letters(1, WAIT).await;
    assert_eq!(dead[0].0, message(-3));
    assert!(
        dead[0].1.contains("schema of order.paid") && dead[0].1.contains("data.amount"),
        "{}",
        dead[0].1
    );
    let got = receiver.wait_for("orders", 2, WAIT).await;
    assert_eq!(got[1].json()["data"]["amount"], 7);
    let events = client.get("/v1/events").await;
    assert_eq!(
        events.assert_status(200)["data"].as_array().unwrap().len(),
        2,
        "refused events are not stored"
    );
}
