//! The event-type catalogue.

use serde_json::json;

use crate::utils::{Stack, local_url};

#[tokio::test]
async fn create_list_and_delete_event_types() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    let created = client
        .post(
            "/v1/event-types",
            json!({"name": "user.created", "description": "A user signed up",
                   "schema": {"type": "object", "properties": {"email": {"type": "string"}}}}),
        )
        .await;
    let body = created.assert_status(201);
    assert_eq!(body["name"], "user.created");
    assert_eq!(body["description"], "A user signed up");
    assert_eq!(body["schema"]["type"], "object");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    client
        .post("/v1/event-types", json!({"name": "user.deleted"}))
        .await
        .assert_status(201);

    let listed = client.get("/v1/event-types").await;
    let names: Vec<&str> = listed.assert_status(200)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["user.deleted", "user.created"], "newest first");
    assert_eq!(listed.body["data"][0]["description"], "");
    assert!(listed.body["data"][0].get("schema").is_none());

    let deleted = client.delete("/v1/event-types/user.deleted").await;
    assert_eq!(
        deleted.assert_status(200),
        &json!({"name": "user.deleted", "deleted": true})
    );
    client
        .delete("/v1/event-types/user.deleted")
        .await
        .assert_error(404, "EVENT_TYPE_NOT_FOUND");
}

#[tokio::test]
async fn bad_names_duplicates_and_bad_bodies_are_refused() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    client.event_types(&["invoice.paid"]).await;
    client
        .post("/v1/event-types", json!({"name": "invoice.paid"}))
        .await
        .assert_error(409, "CONFLICT");
    for name in ["", "a..b", "with space", "a.*", "*", &"x".repeat(129)] {
        let reply = client.post("/v1/event-types", json!({"name": name})).await;
        reply.assert_error(400, "INVALID_REQUEST");
        assert_eq!(reply.field(), Some("name"), "{name}");
    }
    let reply = client
        .post("/v1/event-types", json!({"description": "no name"}))
        .await;
    reply.assert_error(400, "INVALID_REQUEST");
    assert_eq!(reply.field(), Some("name"));
    let reply = client
        .post("/v1/event-types", json!({"name": "a", "schema": "nope"}))
        .await;
    reply.assert_error(422, "INVALID_SCHEMA");
    assert_eq!(reply.field(), Some("schema"));
    let reply = client
        .post("/v1/event-types", json!({"name": "a", "colour": "red"}))
        .await;
    assert_eq!((reply.status, reply.field()), (400, Some("colour")));
    client
        .send_raw(
            reqwest::Method::POST,
            "/v1/event-types",
            Some("{not json".into()),
        )
        .await
        .assert_error(400, "INVALID_REQUEST");
    // Nothing half-written: the catalogue still holds only the first type.
    let listed = client.get("/v1/event-types").await;
    assert_eq!(
        listed.assert_status(200)["data"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn deleting_a_type_keeps_existing_subscriptions_and_refuses_new_ones() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    client.event_types(&["order.placed"]).await;
    let wh = client
        .webhook(&local_url("orders"), json!(["order.placed"]))
        .await;
    client
        .delete("/v1/event-types/order.placed")
        .await
        .assert_status(200);

    let kept = client
        .get(&format!("/v1/webhooks/{}", wh["id"].as_str().unwrap()))
        .await;
    assert_eq!(kept.assert_status(200)["events"], json!(["order.placed"]));
    let refused = client
        .post(
            "/v1/webhooks",
            json!({"url": local_url("new"), "events": ["order.placed"]}),
        )
        .await;
    refused.assert_error(422, "INVALID_SUBSCRIPTION");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("order.placed")
    );
}
