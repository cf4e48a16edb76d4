//! Authentication, scopes and tenant isolation.

use serde_json::json;
use shared::domain::api_key::Scope;

use crate::utils::{Stack, local_url};

#[tokio::test]
async fn get_me_names_the_keys_tenant_and_scopes() {
    let stack = Stack::start().await;
    let client = stack
        .tenant_with(&[Scope::WebhooksRead, Scope::EventsWrite])
        .await;
    let me = client.get("/v1/me").await;
    let body = me.assert_status(200);
    assert_eq!(body["tenant_id"], client.tenant.as_str());
    assert!(body["key_id"].as_str().unwrap().starts_with("key_"));
    assert_eq!(body["scopes"], json!(["webhooks:read", "events:write"]));
}

#[tokio::test]
async fn missing_malformed_and_unknown_keys_are_401() {
    let stack = Stack::start().await;
    // An unknown key, or "Bearer " with none, reaches the authorizer and is refused in the
    // API's shape.
    for key in ["whk_not-a-real-key", ""] {
        let client = stack.client("nobody", Some(key.to_string()));
        client.get("/v1/me").await.assert_error(401, "UNAUTHORIZED");
        client
            .get("/v1/webhooks")
            .await
            .assert_error(401, "UNAUTHORIZED");
    }
    // No Authorization header at all, or an empty one: API Gateway answers itself, as HTTP
    // API does when a cached authorizer's identity source is missing (SPEC §3, §11).
    let nobody = stack.client("nobody", None);
    nobody
        .get("/v1/me")
        .await
        .assert_gateway(401, "Unauthorized");
    nobody
        .get("/v1/webhooks")
        .await
        .assert_gateway(401, "Unauthorized");
    let empty = shared::tls::http_client()
        .get(format!("{}/v1/me", stack.url))
        .header("authorization", "")
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status().as_u16(), 401);
    assert_eq!(
        empty.json::<serde_json::Value>().await.unwrap(),
        json!({"message": "Unauthorized"})
    );
    let basic = shared::tls::http_client()
        .get(format!("{}/v1/me", stack.url))
        .basic_auth("user", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status().as_u16(), 401);
}

#[tokio::test]
async fn each_route_demands_its_scope() {
    let stack = Stack::start().await;
    let admin = stack.tenant().await;
    admin.event_types(&["user.created"]).await;
    let wh = admin.webhook(&local_url("a"), json!("user.created")).await;
    let id = wh["id"].as_str().unwrap();
    let reader = stack.key_for(&admin.tenant, &[Scope::WebhooksRead]).await;
    let writer = stack.key_for(&admin.tenant, &[Scope::WebhooksWrite]).await;

    // Reads work with webhooks:read; writes do not.
    reader.get("/v1/webhooks").await.assert_status(200);
    reader
        .get(&format!("/v1/webhooks/{id}"))
        .await
        .assert_status(200);
    reader.get("/v1/event-types").await.assert_status(200);
    for reply in [
        reader
            .post(
                "/v1/webhooks",
                json!({"url": local_url("b"), "events": "*"}),
            )
            .await,
        reader
            .patch(&format!("/v1/webhooks/{id}"), json!({"name": "x"}))
            .await,
        reader.delete(&format!("/v1/webhooks/{id}")).await,
        reader.post_empty(&format!("/v1/webhooks/{id}/pause")).await,
        reader
            .post_empty(&format!("/v1/webhooks/{id}/unpause"))
            .await,
        reader
            .put(
                &format!("/v1/webhooks/{id}/auth"),
                json!({"username": "u", "password": "p"}),
            )
            .await,
        reader.delete(&format!("/v1/webhooks/{id}/auth")).await,
        reader.get(&format!("/v1/webhooks/{id}/secret")).await,
        reader
            .post_empty(&format!("/v1/webhooks/{id}/secret/rotate"))
            .await,
        reader.post("/v1/event-types", json!({"name": "a.b"})).await,
        reader.delete("/v1/event-types/user.created").await,
        // Recover sends deliveries: events:write.
        reader
            .post(
                &format!("/v1/webhooks/{id}/recover"),
                json!({"since": "2020-01-01T00:00:00Z"}),
            )
            .await,
        // Passwords need webhooks:write even on a read route.
        reader
            .get(&format!("/v1/webhooks/{id}?show_authentication=true"))
            .await,
        reader.get("/v1/webhooks?show_authentication=true").await,
    ] {
        reply.assert_error(403, "FORBIDDEN");
    }
    // webhooks:write alone does not read, nor manage the catalogue.
    writer
        .get("/v1/webhooks")
        .await
        .assert_error(403, "FORBIDDEN");
    writer
        .post("/v1/event-types", json!({"name": "a.b"}))
        .await
        .assert_error(403, "FORBIDDEN");
    writer
        .post(
            &format!("/v1/webhooks/{id}/recover"),
            json!({"since": "2020-01-01T00:00:00Z"}),
        )
        .await
        .assert_error(403, "FORBIDDEN");
    writer
        .get(&format!("/v1/webhooks/{id}/secret"))
        .await
        .assert_status(200);
    // Any valid key may ask who it is.
    writer.get("/v1/me").await.assert_status(200);
}

#[tokio::test]
async fn another_tenants_webhooks_are_404_on_every_route() {
    let stack = Stack::start().await;
    let owner = stack.tenant().await;
    owner.event_types(&["user.created"]).await;
    let wh = owner
        .webhook(&local_url("mine"), json!(["user.created"]))
        .await;
    let id = wh["id"].as_str().unwrap();
    let intruder = stack.tenant().await;
    intruder.event_types(&["user.created"]).await;

    for reply in [
        intruder.get(&format!("/v1/webhooks/{id}")).await,
        intruder
            .patch(&format!("/v1/webhooks/{id}"), json!({"name": "stolen"}))
            .await,
        intruder
            .put(
                &format!("/v1/webhooks/{id}"),
                json!({"events": ["user.created"]}),
            )
            .await,
        intruder.delete(&format!("/v1/webhooks/{id}")).await,
        intruder
            .put(
                &format!("/v1/webhooks/{id}/auth"),
                json!({"username": "u", "password": "p"}),
            )
            .await,
        intruder.delete(&format!("/v1/webhooks/{id}/auth")).await,
        intruder
            .post_empty(&format!("/v1/webhooks/{id}/pause"))
            .await,
        intruder
            .post_empty(&format!("/v1/webhooks/{id}/unpause"))
            .await,
        intruder.get(&format!("/v1/webhooks/{id}/secret")).await,
        intruder
            .post_empty(&format!("/v1/webhooks/{id}/secret/rotate"))
            .await,
        intruder
            .post(
                &format!("/v1/webhooks/{id}/recover"),
                json!({"since": "2020-01-01T00:00:00Z"}),
            )
            .await,
    ] {
        reply.assert_error(404, "WEBHOOK_NOT_FOUND");
    }
    // Replay: not the owner's event, nor the intruder's own event to the owner's webhook.
    let event = owner.publish("user.created", json!({})).await;
    intruder
        .post(
            &format!("/v1/events/{}/replay", event["id"].as_str().unwrap()),
            json!({}),
        )
        .await
        .assert_error(404, "EVENT_NOT_FOUND");
    let theirs = intruder.publish("user.created", json!({})).await;
    intruder
        .post(
            &format!("/v1/events/{}/replay", theirs["id"].as_str().unwrap()),
            json!({"webhook_id": id}),
        )
        .await
        .assert_error(404, "WEBHOOK_NOT_FOUND");
    let listed = intruder.get("/v1/webhooks").await;
    assert_eq!(listed.assert_status(200)["data"], json!([]));
    intruder
        .delete("/v1/event-types/user.created")
        .await
        .assert_status(200);
    // The owner's webhook and catalogue are untouched.
    let after = owner.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(after.assert_status(200)["name"], json!(null));
    assert_eq!(after.body["status"], "active");
    let types = owner.get("/v1/event-types").await;
    assert_eq!(types.assert_status(200)["data"][0]["name"], "user.created");
    // The same URL is free for another tenant.
    intruder.webhook(&local_url("mine"), json!("*")).await;
}

#[tokio::test]
async fn unknown_routes_are_404_in_the_error_shape() {
    // The template's $default route (the not_found function, outside the authorizer)
    // answers whatever no route matches, so API Gateway never answers its own
    // {"message":"Not Found"}: with a key, without one, a wrong method on a known path.
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    client
        .get("/v1/nothing-here")
        .await
        .assert_error(404, "NOT_FOUND");
    client
        .send(reqwest::Method::PATCH, "/v1/me", Some(json!({})))
        .await
        .assert_error(404, "NOT_FOUND");
    let anonymous = stack.client("nobody", None);
    anonymous
        .get("/v2/anything")
        .await
        .assert_error(404, "NOT_FOUND");
    anonymous
        .delete("/v1/events")
        .await
        .assert_error(404, "NOT_FOUND");
}
