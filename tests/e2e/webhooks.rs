//! Webhooks: create with every field and rule, read, update, delete, credentials, pause,
//! unpause and the signing secret.

use serde_json::{Value, json};

use crate::utils::{Client, Stack, id, local_url};

async fn tenant_with_types(stack: &Stack) -> Client {
    let client = stack.tenant().await;
    client
        .event_types(&[
            "user.created",
            "user.deleted",
            "data.updated",
            "data.row.deleted",
        ])
        .await;
    client
}

#[tokio::test]
async fn create_returns_the_full_webhook_and_secret_once() {
    let stack = Stack::start().await;
    let client = tenant_with_types(&stack).await;
    let created = client
        .post(
            "/v1/webhooks",
            json!({
                "name": "Billing Events", "description": "billing",
                "url": local_url("hooks"), "events": ["user.created", "data.*"],
                "auth": {"username": "hello", "password": "pa55word"},
                "metadata": {"team": "crm"}
            }),
        )
        .await;
    let wh = created.assert_status(201).clone();
    assert!(wh["id"].as_str().unwrap().starts_with("wh_"));
    assert_eq!(wh["name"], "Billing Events");
    assert_eq!(wh["description"], "billing");
    assert_eq!(wh["url"], local_url("hooks"));
    assert_eq!(wh["events"], json!(["user.created", "data.*"]));
    assert_eq!(wh["status"], "active");
    assert_eq!(wh["auth"], json!({"type": "basic", "username": "hello"}));
    assert_eq!(wh["metadata"], json!({"team": "crm"}));
    assert_eq!(wh["last_triggered_at"], Value::Null);
    assert_eq!(wh["disabled_reason"], Value::Null);
    assert_eq!(wh["created_at"], wh["updated_at"]);
    let secret = wh["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(
        wh["secret_last_4"].as_str().unwrap(),
        &secret[secret.len() - 4..]
    );

    // Reads mask the secret and the password.
    let read = client.get(&format!("/v1/webhooks/{}", id(&wh))).await;
    let body = read.assert_status(200);
    assert!(body.get("secret").is_none());
    assert_eq!(body["secret_last_4"], wh["secret_last_4"]);
    assert_eq!(body["auth"], json!({"type": "basic", "username": "hello"}));
    let shown = client
        .get(&format!(
            "/v1/webhooks/{}?show_authentication=true",
            id(&wh)
        ))
        .await;
    assert_eq!(shown.assert_status(200)["auth"]["password"], "pa55word");
    let secret_route = client
        .get(&format!("/v1/webhooks/{}/secret", id(&wh)))
        .await;
    assert_eq!(secret_route.assert_status(200), &json!({"secret": secret}));
}

#[tokio::test]
async fn events_accept_a_single_string_and_wildcards() {
    let stack = Stack::start().await;
    let client = tenant_with_types(&stack).await;
    let one = client
        .webhook(&local_url("one"), json!("user.created"))
        .await;
    assert_eq!(one["events"], json!(["user.created"]));
    let all = client.webhook(&local_url("all"), json!("*")).await;
    assert_eq!(all["events"], json!(["*"]));
    // A prefix wildcard need not name a catalogue entry.
    let prefix = client
        .webhook(
            &local_url("p"),
            json!(["billing.*", "user.created", "user.created"]),
        )
        .await;
    assert_eq!(prefix["events"], json!(["billing.*", "user.created"]));
}

#[tokio::test]
async fn subscriptions_to_unknown_or_malformed_types_are_422() {
    let stack = Stack::start().await;
    let client = tenant_with_types(&stack).await;
    let unknown = client
        .post(
            "/v1/webhooks",
            json!({"url": local_url("u"), "events": ["user.created", "nope.one", "nope.two"]}),
        )
        .await;
    unknown.assert_error(422, "INVALID_SUBSCRIPTION");
    assert_eq!(unknown.field(), Some("events"));
    let message = unknown.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("nope.one") && message.contains("nope.two"),
        "{message}"
    );
    assert!(!message.contains("user.created"), "{message}");
    for events in [
        json!([]),
        json!(["a.**"]),
        json!(["*.a"]),
        json!(["bad name"]),
    ] {
        client
            .post(
                "/v1/webhooks",
                json!({"url": local_url("m"), "events": events}),
            )
            .await
            .assert_error(422, "INVALID_SUBSCRIPTION");
    }
    for events in [json!(5), json!([1]), json!({"a": 1})] {
        let reply = client
            .post(
                "/v1/webhooks",
                json!({"url": local_url("t"), "events": events}),
            )
            .await;
        reply.assert_error(400, "INVALID_REQUEST");
        assert_eq!(reply.field(), Some("events"));
    }
    assert_eq!(client.get("/v1/webhooks").await.body["data"], json!([]));
}

#[tokio::test]
async fn malformed_bodies_and_fields_are_400_naming_the_field() {
    let stack = Stack::start().await;
    let client = tenant_with_types(&stack).await;
    let cases = [
        (json!({"events": "*"}), "url"),
        (json!({"url": local_url("x")}), "events"),
        (json!({"url": 42, "events": "*"}), "url"),
        (
            json!({"url": local_url("x"), "events": "*", "name": 7}),
            "name",
        ),
        (
            json!({"url": local_url("x"), "events": "*", "status": "sleeping"}),
            "status",
        ),
        (
            json!({"url": local_url("x"), "events": "*", "auth": "u:p"}),
            "auth",
        ),
        (
            json!({"url": local_url("x"), "events": "*", "auth": {"username": "u"}}),
            "auth.password",
        ),
        (
            json!({"url": local_url("x"), "events": "*", "auth": {"username": "a:b", "password": "p"}}),
            "auth.username",
        ),
        (
            json!({"url": local_url("x"), "events": "*", "auth": {"username": "u", "password": "p", "x": 1}}),
            "auth.x",
        ),
        (
            json!({"url": local_url("x"), "events": "*", "metadata": {"n": 1}}),
            "metadata",
        ),
        (
            json!({"url": local_url("x"), "events": "*", "verify_tls": "yes"}),
            "verify_tls",
        ),
        (
            json!({"url": local_url("x"), "events": "*", "surprise": true}),
            "surprise",
        ),
        (
            json!({"url": local_url("x"), "events": "*", "name": "n".repeat(257)}),
            "name",
        ),
    ];
    for (body, field) in cases {
        let reply = client.post("/v1/webhooks", body.clone()).await;
        reply.assert_error(400, "INVALID_REQUEST");
        assert_eq!(reply.field(), Some(field), "{body}");
    }
    for raw in ["", "{", "[1,2]", "\"text\"", "null"] {
        client
            .send_raw(reqwest::Method::POST, "/v1/webhooks", Some(raw.to_string()))
            .await
            .assert_error(400, "INVALID_REQUEST");
    }
    // Nothing was stored by any of them.
    assert_eq!(client.get("/v1/webhooks").await.body["data"], json!([]));
}

#[tokio::test]
async fn bodies_over_200_kib_are_413() {
    let stack = Stack::start().await;
    let client = tenant_with_types(&stack).await;
    let big =
        json!({"url": local_url("big"), "events": "*", "description": "x".repeat(201 * 1024)});
    client
        .post("/v1/webhooks", big)
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
    let large = "y".repeat(1024 * 1024);
    client
        .send_raw(reqwest::Method::POST, "/v1/event-types", Some(large))
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
    // Past Lambda's 6 MB invocation payload, and past HTTP API's 10 MB, the gateway answers
    // itself: no function is invoked.
    for megabytes in [7, 11] {
        let huge = "y".repeat(megabytes * 1024 * 1024);
        client
            .send_raw(reqwest::Method::POST, "/v1/event-types", Some(huge))
            .await
            .assert_gateway(413, "Request Entity Too Large");
    }
}

#[tokio::test]
async fn urls_must_be_https_and_public_unless_insecure_targets_are_allowed() {
    let stack = Stack::start_with(&[("ALLOW_INSECURE_TARGETS", "false")]).await;
    let client = tenant_with_types(&stack).await;
    let http = client
        .post(
            "/v1/webhooks",
            json!({"url": "http://93.184.216.34/hooks", "events": "*"}),
        )
        .await;
    http.assert_error(422, "INVALID_URL_IS_NOT_USING_HTTPS");
    assert_eq!(http.field(), Some("url"));
    for url in [
        "https://127.0.0.1/x",
        "https://localhost/x",
        "https://10.0.0.8/x",
        "https://192.168.1.1/x",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.1.1/x",
        "https://[::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://2130706433/x",
        "https://0x7f000001/x",
        "https://224.0.0.1/x",
    ] {
        client
            .post("/v1/webhooks", json!({"url": url, "events": "*"}))
            .await
            .assert_error(422, "INVALID_URL");
    }
    for url in [
        "not a url",
        "ftp://example.com/",
        "https://user:pw@93.184.216.34/",
        "/relative",
    ] {
        client
            .post("/v1/webhooks", json!({"url": url, "events": "*"}))
            .await
            .assert_error(422, "INVALID_URL");
    }
    let long = format!("https://93.184.216.34/{}", "a".repeat(2048));
    client
        .post("/v1/webhooks", json!({"url": long, "events": "*"}))
        .await
        .assert_error(422, "INVALID_URL");
    // A public literal address is accepted without any lookup.
    client
        .webhook("https://93.184.216.34/hooks", json!("*"))
        .await;
}

#[tokio::test]
async fn secrets_given_by_the_client_are_checked_and_kept() {
    let stack = Stack::start().await;
    let client = tenant_with_types(&stack).await;
    for secret in [
        "nope",
        "whsec_short",
        "whsec_!!!!",
        "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    ] {
        let reply = client
            .post(
                "/v1/webhooks",
                json!({"url": local_url("s"), "events": "*", "secret": secret}),
            )
            .await;
        reply.assert_error(422, "INVALID_SECRET");
        assert_eq!(reply.field(), Some("secret"));
    }
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let wh = client
        .post(
            "/v1/webhooks",
            json!({"url": local_url("s"), "events": "*", "secret": secret}),
        )
        .await;
    assert_eq!(wh.assert_status(201)["secret"], secret);
    assert_eq!(wh.body["secret_last_4"], "b7oD");
}

#[tokio::test]
async fn duplicate_urls_are_409_within_a_tenant() {
    let stack = Stack::start().await;
    let client = tenant_with_types(&stack).await;
    let first = client.webhook(&local_url("dup"), json!("*")).await;
    let again = client
        .post(
            "/v1/webhooks",
            json!({"url": local_url("dup"), "events": "*"}),
        )
        .await;
    again.assert_error(409, "DUPLICATE_URL");
    assert_eq!(again.field(), Some("url"));
    // Deleting frees the URL again.
    client
        .delete(&format!("/v1/webhooks/{}", id(&first)))
        .await
        .assert_status(200);
    client.webhook(&local_url("dup"), json!("*")).await;
}

#[tokio::test]
async fn the_per_tenant_limit_holds_and_deletes_free_room() {
    let stack = Stack::start_with(&[("MAX_WEBHOOKS_PER_TENANT", "2")]).await;
    let client = tenant_with_types(&stack).await;
    let first = client.webhook(&local_url("1"), json!("*")).await;
    client.webhook(&local_url("2"), json!("*")).await;
    let third = client
        .post(
            "/v1/webhooks",
            json!({"url": local_url("3"), "events": "*"}),
        )
        .await;
    third.assert_error(422, "TOO_MANY_WEBHOOKS_REGISTERED");
    client
        .delete(&format!("/v1/webhooks/{}", id(&first)))
        .await
        .assert_status(200);
    client.webhook(&local_url("3"), json!("*")).await;
    // Another tenant has its own room.
    let other = tenant_with_types(&stack).await;
    other.webhook(&local_url("1"), json!("*")).await;
}

#[tokio::test]
async fn patch_and_put_change_only_what_they_name() {
    let stack = Stack::start().await;
    let client = tenant_with_types(&stack).await;
    let wh = client
        .post(
            "/v1/webhooks",
            json!({"url": local_url("u1"), "events": "*", "name": "n", "description": "d", "metadata": {"a": "1"}}),
        )
        .await
        .assert_status(201)
        .clone();
    let path = format!("/v1/webhooks/{}", id(&wh));

    let patched = client
        .patch(
            &path,
            json!({"name": "renamed", "events": ["user.created"], "description": null}),
        )
        .await;
    let body = patched.assert_status(200).clone();
    assert_eq!(body["name"], "renamed");
    assert_eq!(body["events"], json!(["user.created"]));
    assert_eq!(body["description"], Value::Null);
    assert_eq!(body["url"], local_url("u1"));
    assert_eq!(body["metadata"], json!({"a": "1"}));
    assert_eq!(body["created_at"], wh["created_at"]);
    assert_ne!(body["updated_at"], wh["updated_at"]);
    assert!(body.get("secret").is_none());

    let put = client
        .put(
            &path,
            json!({"url": local_url("u2"), "status": "paused", "metadata": {"b": "2"}}),
        )
        .await;
    let body = put.assert_status(200).clone();
    assert_eq!(body["url"], local_url("u2"));
    assert_eq!(body["status"], "paused");
    assert_eq!(body["metadata"], json!({"b": "2"}));
    assert_eq!(body["name"], "renamed");

    // The old URL is free, the new one taken.
    client.webhook(&local_url("u1"), json!("*")).await;
    client
        .patch(&path, json!({"url": local_url("u1")}))
        .await
        .assert_error(409, "DUPLICATE_URL");
    // Same validation as create, and nothing changes on a refusal.
    client
        .patch(&path, json!({"events": ["nope.nope"]}))
        .await
        .assert_error(422, "INVALID_SUBSCRIPTION");
    client
        .patch(&path, json!({"url": "ftp://x"}))
        .await
        .assert_error(422, "INVALID_URL");
    client
        .patch(&path, json!({"secret": "whsec_x"}))
        .await
        .assert_error(400, "INVALID_REQUEST");
    client
        .patch(&path, json!({"status": "asleep"}))
        .await
        .assert_error(400, "INVALID_REQUEST");
    let read = client.get(&path).await;
    assert_eq!(read.assert_status(200)["url"], local_url("u2"));
    assert_eq!(read.body["events"], json!(["user.created"]));
    // An empty patch changes nothing.
    let same = client.patch(&path, json!({})).await;
    assert_eq!(
        same.assert_status(200)["updated_at"],
        read.body["updated_at"]
    );
}

#[tokio::test]
async fn delete_answers_the_id_and_then_404() {
    let stack = Stack::start().await;
    let client = tenant_with_types(&stack).await;
    let wh = client.webhook(&local_url("gone"), json!("*")).await;
    let path = format!("/v1/webhooks/{}", id(&wh));
    let deleted = client.delete(&path).await;
    assert_eq!(
        deleted.assert_status(200),
        &json!({"id": id(&wh), "deleted": true})
    );
    client
        .get(&path)
        .await
        .assert_error(404, "WEBHOOK_NOT_FOUND");
    client
        .delete(&path)
        .await
        .assert_error(404, "WEBHOOK_NOT_FOUND");
    client
        .get("/v1/webhooks/not-an-id")
        .await
        .assert_error(404, "WEBHOOK_NOT_FOUND");
    client
        .get("/v1/webhooks/wh_01ARZ3NDEKTSV4RRFFQ69G5FAV")
        .await
        .assert_error(404, "WEBHOOK_NOT_FOUND");
}

#[tokio::test]
async fn basic_auth_can_be_set_shown_and_removed() {
    let stack = Stack::start().await;
    let client = tenant_with_types(&stack).await;
    let wh = client.webhook(&local_url("auth"), json!("*")).await;
    assert_eq!(wh["auth"], Value::Null);
    let path = format!("/v1/webhooks/{}", id(&wh));
    let set = client
        .put(
            &format!("{path}/auth"),
            json!({"username": "svc", "password": "hunter2"}),
        )
        .await;
    assert_eq!(
        set.assert_status(200)["auth"],
        json!({"type": "basic", "username": "svc"})
    );
    assert!(!set.body.to_string().contains("hunter2"));
    let shown = client
        .get(&format!("{path}?show_authentication=true"))
        .await;
    assert_eq!(
        shown.assert_status(200)["auth"],
        json!({"type": "basic", "username": "svc", "password": "hunter2"})
    );
    let listed = client.get("/v1/webhooks?show_authentication=true").await;
    assert_eq!(
        listed.assert_status(200)["data"][0]["auth"]["password"],
        "hunter2"
    );
    client
        .put(&format!("{path}/auth"), json!({"username": "svc"}))
        .await
        .assert_error(400, "INVALID_REQUEST");
    let removed = client.delete(&format!("{path}/auth")).await;
    assert_eq!(removed.assert_status(200)["auth"], Value::Null);
    assert_eq!(client.get(&path).await.body["auth"], Value::Null);
}

#[tokio::test]
async fn pause_and_unpause_change_the_status() {
    let stack = Stack::start().await;
    let client = tenant_with_types(&stack).await;
    let wh = client.webhook(&local_url("p"), json!("*")).await;
    let path = format!("/v1/webhooks/{}", id(&wh));
    let paused = client.post_empty(&format!("{path}/pause")).await;
    assert_eq!(paused.assert_status(200)["status"], "paused");
    assert_eq!(client.get(&path).await.body["status"], "paused");
    // Pausing twice is harmless.
    client
        .post_empty(&format!("{path}/pause"))
        .await
        .assert_status(200);
    let unpaused = client.post_empty(&format!("{path}/unpause")).await;
    let body = unpaused.assert_status(200);
    assert_eq!(body["status"], "active");
    assert_eq!(body["released"], 0);
    assert_eq!(body["id"], wh["id"]);
}

#[tokio::test]
async fn rotation_returns_the_new_secret_and_when_the_old_one_expires() {
    let stack = Stack::start().await;
    let client = tenant_with_types(&stack).await;
    let wh = client.webhook(&local_url("r"), json!("*")).await;
    let path = format!("/v1/webhooks/{}", id(&wh));
    let rotated = client.post_empty(&format!("{path}/secret/rotate")).await;
    let body = rotated.assert_status(200).clone();
    let new_secret = body["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_"));
    assert_ne!(new_secret, wh["secret"].as_str().unwrap());
    let expires = chrono_like_seconds(body["previous_expires_at"].as_str().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (expires - now - 24 * 3600).abs() < 120,
        "expires {expires}, now {now}"
    );
    let read = client.get(&format!("{path}/secret")).await;
    assert_eq!(read.assert_status(200)["secret"], new_secret);
    let last_4 = client.get(&path).await.body["secret_last_4"].clone();
    assert_eq!(
        last_4.as_str().unwrap(),
        &new_secret[new_secret.len() - 4..]
    );

    let chosen = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let rotated = client
        .post(&format!("{path}/secret/rotate"), json!({"secret": chosen}))
        .await;
    assert_eq!(rotated.assert_status(200)["secret"], chosen);
    client
        .post(
            &format!("{path}/secret/rotate"),
            json!({"secret": "whsec_tooshort"}),
        )
        .await
        .assert_error(422, "INVALID_SECRET");
    assert_eq!(
        client.get(&format!("{path}/secret")).await.body["secret"],
        chosen
    );
}

/// Seconds since the epoch of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SS(.fff)Z`.
fn chrono_like_seconds(text: &str) -> i64 {
    let (date, time) = text.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let t: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    days * 86400 + (t[0] * 3600.0 + t[1] * 60.0 + t[2]) as i64
}

#[tokio::test]
async fn verify_tls_refuses_an_endpoint_without_valid_tls() {
    let stack = Stack::start().await;
    let client = tenant_with_types(&stack).await;
    // A plain-TCP listener on loopback: no TLS handshake can succeed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let reply = client
        .post(
            "/v1/webhooks",
            json!({"url": format!("https://127.0.0.1:{port}/hook"), "events": "*", "verify_tls": true}),
        )
        .await;
    reply.assert_error(422, "TLS_VALIDATION_FAILED");
    assert_eq!(client.get("/v1/webhooks").await.body["data"], json!([]));
    // Without verify_tls the same URL registers (delivery reports TLS failures later).
    client
        .post(
            "/v1/webhooks",
            json!({"url": format!("https://127.0.0.1:{port}/hook"), "events": "*", "verify_tls": false}),
        )
        .await
        .assert_status(201);
}
