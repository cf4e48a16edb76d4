//! Tenant controls on a webhook (SPEC §3): content filters.

use std::time::Duration;

use serde_json::{Value, json};

use crate::receiver::Receiver;
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
