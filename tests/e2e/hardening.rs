//! What no producer, receiver or tenant may do: forge the service's own tasks on the ingest
//! queue, name a tenant that is not one, or send data past the limit.

use std::time::Duration;

use serde_json::json;

use crate::receiver::Receiver;
use crate::utils::{Stack, all_with_status, id};

const WAIT: Duration = Duration::from_secs(20);

/// Anyone allowed to send to the ingest queue is a producer: internal tasks (cancel,
/// release, retry, a stored event's task) sent there go to the dead-letter queue with their
/// reason, as do tenant ids with key separators and data over 200 KiB. A paused webhook's
/// buffered deliveries stay buffered, and nothing forged is delivered.
#[tokio::test]
async fn the_ingest_queue_accepts_only_ingest_messages() {
    let stack = Stack::start_with(&[("RETRY_SCHEDULE", "1s")]).await;
    let receiver = Receiver::start().await;
    let victim = stack.tenant().await;
    victim.event_types(&["user.created"]).await;
    let held = victim.webhook(&receiver.url("held"), json!("*")).await;
    victim.webhook(&receiver.url("open"), json!("*")).await;
    victim
        .post_empty(&format!("/v1/webhooks/{}/pause", id(&held)))
        .await
        .assert_status(200);
    let first = victim.publish("user.created", json!({"n": 1})).await;
    victim.publish("user.created", json!({"n": 2})).await;
    let held_query = format!("webhook_id={}", id(&held));
    let buffered = victim
        .wait_for_deliveries(&held_query, WAIT, |d| all_with_status(d, 2, "buffered"))
        .await;
    receiver.wait_for("open", 2, WAIT).await;

    let tenant = victim.tenant.as_str();
    let forged = [
        json!({"kind": "cancel", "tenant_id": tenant, "webhook_id": id(&held)}),
        json!({"kind": "release", "tenant_id": tenant, "webhook_id": id(&held)}),
        json!({"kind": "recover", "tenant_id": tenant, "webhook_id": id(&held),
               "since": 0, "until": i64::MAX}),
        json!({"kind": "retry", "tenant_id": tenant, "delivery_id": id(&buffered[0]),
               "attempt": 1, "not_before": 0}),
        json!({"kind": "event", "tenant_id": tenant, "type": "user.created",
               "data": {"forged": true}, "event_id": id(&first)}),
        json!({"tenant_id": format!("{tenant}#EV"), "type": "user.created", "data": {}}),
        json!({"tenant_id": tenant, "type": "user.created",
               "data": {"x": "y".repeat(201 * 1024)}}),
    ];
    for message in &forged {
        stack.send_to_ingest(&message.to_string()).await;
    }
    let mut reasons: Vec<String> = stack
        .dead_letters(forged.len(), WAIT)
        .await
        .into_iter()
        .map(|(_, reason)| reason)
        .collect();
    reasons.sort();
    let tasks = reasons
        .iter()
        .filter(|r| r.contains("internal tasks are not accepted on the ingest queue"))
        .count();
    assert_eq!(tasks, 5, "{reasons:#?}");
    assert!(
        reasons.iter().any(|r| r.contains("tenant_id")),
        "{reasons:#?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("200 KiB")),
        "{reasons:#?}"
    );

    // The buffered deliveries are untouched, and nothing forged reached a receiver.
    let still = victim.deliveries(&held_query).await;
    assert!(all_with_status(&still, 2, "buffered"), "{still:#?}");
    assert!(receiver.requests("held").is_empty());
    let bodies: Vec<_> = receiver.requests("open").iter().map(|r| r.json()).collect();
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    assert!(bodies.iter().all(|b| b["data"].get("forged").is_none()));
    let events = victim.get("/v1/events").await;
    assert_eq!(
        events.assert_status(200)["data"].as_array().unwrap().len(),
        2
    );
}

/// Isolation is structural: every partition key of the table and of its indexes that holds
/// a tenant's records starts with that tenant (the API key items, found by a secret's hash
/// or by the admin's key id, are the one documented exception). A webhook id of another
/// tenant reaches nothing, not even a cursor.
#[tokio::test]
async fn every_partition_key_of_tenant_data_starts_with_the_tenant() {
    let stack = Stack::start_with(&[("RETRY_SCHEDULE", "1h")]).await;
    let receiver = Receiver::start().await;
    receiver.default("failing", crate::receiver::Answer::Status(500));
    let mut tenants = Vec::new();
    for _ in 0..2 {
        let client = stack.tenant().await;
        client.event_types(&["user.created"]).await;
        let paused = client.webhook(&receiver.url("paused"), json!("*")).await;
        client
            .post_empty(&format!("/v1/webhooks/{}/pause", id(&paused)))
            .await
            .assert_status(200);
        client.webhook(&receiver.url("failing"), json!("*")).await;
        client.webhook(&receiver.url("ok"), json!("*")).await;
        let published = json!({"type": "user.created", "data": {}, "id": "source-1"});
        client
            .post("/v1/events", published)
            .await
            .assert_status(202);
        client
            .wait_for_deliveries("", WAIT, |d| {
                d.len() == 3
                    && d.iter()
                        .all(|x| x["status"] != "pending" || x["attempts"] == 1)
            })
            .await;
        tenants.push((client, paused));
    }
    let text =
        |item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
         name: &str| { item.get(name).and_then(|v| v.as_s().ok()).cloned() };
    let items = stack.dump_table().await;
    assert!(items.len() > 20, "{} items", items.len());
    for item in &items {
        let pk = text(item, "PK").unwrap();
        if pk.starts_with("KEY#") || pk.starts_with("KEYID#") {
            assert!(item.contains_key("key_id"), "{item:?}");
            continue;
        }
        // A tenant's API rate-limit state: its theoretical arrival time and nothing else.
        if let Some(tenant) = pk.strip_prefix("RL#") {
            assert!(tenants.iter().any(|(c, _)| c.tenant == tenant), "{pk}");
            let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
            names.sort();
            assert_eq!(names, ["PK", "SK", "expires_at", "tat"], "{item:?}");
            continue;
        }
        let owner = tenants
            .iter()
            .map(|(c, _)| c.tenant.as_str())
            .find(|t| pk == format!("T#{t}") || pk.starts_with(&format!("T#{t}#")))
            .unwrap_or_else(|| panic!("a partition key not under a tenant: {pk}"));
        if let Some(tenant) = text(item, "tenant_id") {
            assert_eq!(tenant, owner, "{item:?}");
        }
        for index_key in ["GSI1PK", "GSI2PK"] {
            if let Some(key) = text(item, index_key) {
                assert!(
                    key.starts_with(&format!("T#{owner}#")),
                    "{index_key} {key} of an item of {owner}"
                );
            }
        }
    }
    // Another tenant's webhook id names nothing: no record, no cursor.
    let (attacker, _) = &tenants[1];
    let (_, victims_webhook) = &tenants[0];
    let reply = attacker
        .get(&format!(
            "/v1/deliveries?webhook_id={}",
            id(victims_webhook)
        ))
        .await;
    let body = reply.assert_status(200);
    assert_eq!(body["data"], json!([]));
    assert_eq!(body["pagination"]["end_cursor"], serde_json::Value::Null);
}

/// Per-tenant limits are bounded by bytes and answer 422 `LIMIT_EXCEEDED` naming the limit:
/// the catalogue's size, a schema's bytes, a webhook's metadata bytes (here 40 keys of 500
/// four-byte characters: within every per-key rule, 80 KB in all).
#[tokio::test]
async fn tenant_limits_are_422_limit_exceeded_naming_the_limit() {
    let stack = Stack::start_with(&[("MAX_EVENT_TYPES_PER_TENANT", "3")]).await;
    let client = stack.tenant().await;
    client.event_types(&["a.one", "a.two", "a.three"]).await;
    let fourth = client
        .post(
            "/v1/event-types",
            json!({"name": "a.four", "description": "x"}),
        )
        .await;
    fourth.assert_error(422, "LIMIT_EXCEEDED");
    assert!(
        fourth.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 3 event types")
    );
    client
        .delete("/v1/event-types/a.three")
        .await
        .assert_status(200);
    let huge = json!({"name": "a.big", "schema": {"description": "x".repeat(64 * 1024)}});
    let reply = client.post("/v1/event-types", huge).await;
    reply.assert_error(422, "LIMIT_EXCEEDED");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("64 KiB")
    );
    client
        .post(
            "/v1/event-types",
            json!({"name": "a.four", "schema": {"type": "object"}}),
        )
        .await
        .assert_status(201);

    let wide: serde_json::Map<String, serde_json::Value> = (0..40)
        .map(|i| (format!("k{i}"), json!("\u{1F600}".repeat(500))))
        .collect();
    let reply = client
        .post(
            "/v1/webhooks",
            json!({"url": crate::utils::local_url("m"), "events": "*", "metadata": wide}),
        )
        .await;
    reply.assert_error(422, "LIMIT_EXCEEDED");
    assert_eq!(reply.field(), Some("metadata"));
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("16 KiB")
    );
}

/// A list answer stays under Lambda's 6 MB response limit: 100 events of 60 KB make
/// pages of fewer than `limit` items, and the cursors walk all of them, newest first.
#[tokio::test]
async fn a_page_of_large_events_stays_under_six_megabytes() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    client.event_types(&["big.one"]).await;
    let blob = "x".repeat(60 * 1024);
    let mut published = Vec::new();
    for n in 0..100 {
        let event = client
            .publish("big.one", json!({"n": n, "blob": blob}))
            .await;
        published.push(id(&event));
    }
    let mut seen = Vec::new();
    let mut path = "/v1/events?limit=100".to_string();
    loop {
        let reply = client.get(&path).await;
        let body = reply.assert_status(200);
        let data = body["data"].as_array().unwrap();
        assert!(!data.is_empty() && data.len() < 100, "{} items", data.len());
        seen.extend(data.iter().map(id));
        if body["pagination"]["has_next_page"] != true {
            break;
        }
        let cursor = body["pagination"]["end_cursor"].as_str().unwrap();
        path = format!("/v1/events?limit=100&after={cursor}");
    }
    published.reverse();
    assert_eq!(seen, published, "every event once, newest first");
}

/// An unpause does bounded work: it queues the release and answers the exact backlog from
/// the webhook's buffered count, never by reading the backlog (every Query and Scan is
/// throttled while it runs). The release then sends the buffered deliveries one after
/// another, oldest first, so the receiver sees them in the order they happened.
#[tokio::test]
async fn unpause_counts_without_reading_the_backlog_and_releases_in_order() {
    let proxy = crate::storage_faults::ThrottlingProxy::start().await;
    let stack = Stack::start_with(&[
        ("AWS_ENDPOINT_URL", proxy.endpoint.as_str()),
        ("RETRY_SCHEDULE", "1s"),
    ])
    .await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    let wh = client.webhook(&receiver.url("ordered"), json!("*")).await;
    let path = format!("/v1/webhooks/{}", id(&wh));
    client
        .post_empty(&format!("{path}/pause"))
        .await
        .assert_status(200);
    for n in 0..6 {
        client.publish("user.created", json!({"n": n})).await;
    }
    client
        .wait_for_deliveries("", WAIT, |d| all_with_status(d, 6, "buffered"))
        .await;

    proxy.throttle(&["Query", "Scan"]);
    let reply = client.post_empty(&format!("{path}/unpause")).await;
    proxy.throttle(&[]);
    let body = reply.assert_status(200);
    assert_eq!(body["released"], 6);
    assert_eq!(body["status"], "active");

    let got = receiver.wait_for("ordered", 6, WAIT).await;
    let order: Vec<i64> = got
        .iter()
        .map(|r| r.json()["data"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(order, vec![0, 1, 2, 3, 4, 5], "in the order they happened");
    client
        .wait_for_deliveries("", WAIT, |d| all_with_status(d, 6, "succeeded"))
        .await;
    let again = client.post_empty(&format!("{path}/unpause")).await;
    assert_eq!(again.assert_status(200)["released"], 0);
}

/// The authorizer fails soft: while the key's item cannot be read, the route answers 503
/// `UNAVAILABLE` with `Retry-After` (never a bare 500, never a denial); once storage
/// recovers, the same key works at once.
#[tokio::test]
async fn an_authorizer_that_cannot_read_storage_makes_the_route_answer_503() {
    let proxy = crate::storage_faults::ThrottlingProxy::start().await;
    // No authorizer cache: every request asks the authorizer, as one whose answer expired.
    let stack = Stack::start_with(&[
        ("AWS_ENDPOINT_URL", proxy.endpoint.as_str()),
        ("AUTHORIZER_CACHE_TTL_SECONDS", "0"),
    ])
    .await;
    let client = stack.tenant().await;
    client.get("/v1/me").await.assert_status(200);
    proxy.throttle(&["GetItem"]);
    let down = client.get("/v1/me").await;
    proxy.throttle(&[]);
    down.assert_error(503, "UNAVAILABLE");
    assert!(down.headers.contains_key("retry-after"), "{down:?}");
    assert_eq!(
        client.get("/v1/me").await.assert_status(200)["tenant_id"],
        client.tenant
    );
}

/// No oracle: outside local mode, a test delivery to a name that now resolves to a private
/// address (a rebinding, here written straight into the table) says only that the host
/// does not resolve to a public address: neither the name nor the address it found.
#[tokio::test]
async fn test_deliveries_outside_local_mode_reveal_no_internal_name_or_address() {
    let stack = Stack::start_with(&[("ALLOW_INSECURE_TARGETS", "false")]).await;
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    let created = client
        .webhook("https://93.184.216.34/hooks", json!("*"))
        .await;
    let store = &stack.state.store;
    let before = store
        .get_webhook(&client.tenant, &id(&created))
        .await
        .unwrap()
        .unwrap();
    let mut rebound = before.clone();
    rebound.url = "https://localhost:9/hooks".into();
    rebound.version += 1;
    store.replace_webhook(&before, &rebound).await.unwrap();

    let reply = client
        .post(
            &format!("/v1/webhooks/{}/test", id(&created)),
            json!({"event": "user.created"}),
        )
        .await;
    let body = reply.assert_status(200);
    assert_eq!(body["success"], false);
    let text = body.to_string();
    assert!(
        text.contains("the host does not resolve to a public address"),
        "{text}"
    );
    for leak in ["localhost", "127.0.0.1", "forbidden", "::1"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

/// No secret sits in clear in the table: after creating webhooks with a given secret and
/// Basic credentials, rotating the secret, changing the password and updating other
/// fields, a dump of the whole table holds none of the secrets or passwords, while the
/// API still shows each where it should and deliveries still verify.
#[tokio::test]
async fn a_dump_of_the_table_holds_no_secret_or_password() {
    let stack = Stack::start_with(&[("RETRY_SCHEDULE", "1s")]).await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    let mut secrets: Vec<String> = Vec::new();
    let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let created = client
        .post(
            "/v1/webhooks",
            json!({"url": receiver.url("sealed"), "events": "*", "secret": given,
                   "auth": {"username": "hook-user", "password": "first-password-1"}}),
        )
        .await
        .assert_status(201)
        .clone();
    secrets.extend([given.to_string(), "first-password-1".to_string()]);
    let path = format!("/v1/webhooks/{}", id(&created));
    let generated = client.webhook(&receiver.url("generated"), json!("*")).await;
    secrets.push(generated["secret"].as_str().unwrap().to_string());
    client
        .patch(
            &format!("/v1/webhooks/{}", id(&generated)),
            json!({"headers": {"Authorization": "Bearer dump-h3ader-t0ken", "X-Team": "crm"}}),
        )
        .await
        .assert_status(200);
    secrets.push("Bearer dump-h3ader-t0ken".into());
    let rotated = client
        .post_empty(&format!("{path}/secret/rotate"))
        .await
        .assert_status(200)
        .clone();
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    secrets.push(new_secret.clone());
    client
        .put(
            &format!("{path}/auth"),
            json!({"username": "hook-user", "password": "second-password-2"}),
        )
        .await
        .assert_status(200);
    secrets.push("second-password-2".into());
    client
        .patch(
            &path,
            json!({"metadata": {"team": "crm"}, "name": "sealed"}),
        )
        .await
        .assert_status(200);

    let dump = format!("{:?}", stack.dump_table().await);
    for secret in &secrets {
        assert!(!dump.contains(secret.as_str()), "{secret} is in the table");
        // Nor its base64 key bytes (the part after whsec_).
        if let Some(key) = secret.strip_prefix("whsec_") {
            assert!(!dump.contains(key), "the key of {secret} is in the table");
        }
    }
    assert!(dump.contains("v1."), "sealed values are stored");

    // The API still shows each where it should, and a delivery verifies under both secrets.
    let shown = client
        .get(&format!("{path}?show_authentication=true"))
        .await;
    assert_eq!(
        shown.assert_status(200)["auth"]["password"],
        "second-password-2"
    );
    assert!(
        client.get(&path).await.body["auth"]
            .get("password")
            .is_none()
    );
    let secret = client.get(&format!("{path}/secret")).await;
    assert_eq!(secret.assert_status(200)["secret"], new_secret.as_str());
    client.publish("user.created", json!({})).await;
    let got = receiver.wait_for("sealed", 1, WAIT).await;
    for key in [given, new_secret.as_str()] {
        standardwebhooks::Webhook::new(key)
            .unwrap()
            .verify(&got[0].body, &got[0].headers)
            .unwrap();
    }
    let basic = got[0].header("authorization");
    assert!(basic.starts_with("Basic "), "{basic}");
}

/// Nothing is stranded in a dead-letter queue: an event whose fan-out keeps failing (every
/// record write throttled) exhausts its message's receives and lands in the dead-letter
/// queue; once storage recovers, the sweeper (the function the schedule runs, called here
/// when the test wants it) brings it back, and it comes through: one event, one record,
/// succeeded.
#[tokio::test]
async fn the_sweeper_brings_an_event_back_from_the_dead_letter_queue() {
    let proxy = crate::storage_faults::ThrottlingProxy::start().await;
    let stack = Stack::start_with(&[
        ("AWS_ENDPOINT_URL", proxy.endpoint.as_str()),
        ("LOCAL_VISIBILITY_TIMEOUT", "1"),
        ("SWEEP_MARGIN", "1s"),
        ("RETRY_SCHEDULE", "1s"),
    ])
    .await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["order.paid"]).await;
    client.webhook(&receiver.url("stranded"), json!("*")).await;
    proxy.throttle(&["BatchWriteItem"]);
    // No source id: the event's id is made from the message, which the dead-letter queue
    // keeps, so the event brought back is the one its first receipts stored.
    let message = json!({"tenant_id": client.tenant, "type": "order.paid", "data": {"n": 7}});
    stack.send_to_ingest(&message.to_string()).await;
    // Five receives later the emulator moves it to the dead-letter queue.
    let dead = stack.dead_letters(1, Duration::from_secs(60)).await;
    assert!(dead[0].0.contains("order.paid"), "{dead:?}");
    assert!(
        client.deliveries("").await.is_empty(),
        "no record was written"
    );
    let stored = client.get("/v1/events").await;
    assert_eq!(
        stored.assert_status(200)["data"].as_array().unwrap().len(),
        1
    );
    proxy.throttle(&[]);
    let swept = shared::delivery::sweep::sweep(stack.function("sweeper"))
        .await
        .unwrap();
    assert_eq!((swept.events, swept.tasks, swept.left), (1, 0, 0));
    let done = client
        .wait_for_deliveries("", Duration::from_secs(30), |d| {
            all_with_status(d, 1, "succeeded")
        })
        .await;
    assert_eq!(done[0]["event_type"], "order.paid");
    let events = client.get("/v1/events").await;
    let events = events.assert_status(200)["data"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(events.len(), 1, "one event, not a second");
    assert_eq!(events[0]["id"], done[0]["event_id"]);
    assert!(
        receiver
            .requests("stranded")
            .iter()
            .all(|r| r.json()["data"]["n"] == 7)
    );
}
