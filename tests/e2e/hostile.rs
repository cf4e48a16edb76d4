//! Hostile tenants and receivers, round two (SPEC §6): what a security review found one
//! tenant, receiver or setting could do to everyone else, each closed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::receiver::Receiver;
use crate::storage_faults::ThrottlingProxy;
use crate::utils::{Running, Stack, emulator_endpoint, id, service_log, workspace_binary};

/// `levels` of `anyOf` over distinct `$defs`, each naming the next twice (2.8 KB at 40).
fn exponential_schema(levels: usize) -> Value {
    let mut defs = serde_json::Map::new();
    for i in 0..levels {
        let next = format!("#/$defs/d{}", i + 1);
        let def = if i + 1 == levels {
            json!({"type": "object"})
        } else {
            json!({"anyOf": [{"$ref": next}, {"$ref": next}]})
        };
        defs.insert(format!("d{i}"), def);
    }
    json!({"$ref": "#/$defs/d0", "$defs": defs})
}

#[tokio::test]
async fn a_schema_whose_validation_cost_explodes_is_refused_at_once() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    let started = Instant::now();
    let refused = client
        .post(
            "/v1/event-types",
            json!({"name": "bomb.anyof", "schema": exponential_schema(40)}),
        )
        .await;
    refused.assert_error(422, "INVALID_SCHEMA");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("multiply")
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The other tenants are not held up: the stack still answers at once.
    let other = stack.tenant().await;
    other.get("/v1/me").await.assert_status(200);
}

#[tokio::test]
async fn data_that_takes_too_long_to_check_is_refused_within_the_budget() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    // Bounded (1,001 evaluations an item), but 35,000 items fail every one of 1,000
    // patterns: far past the check's budget.
    let branches: Vec<Value> = (0..1000)
        .map(|n| json!({"type": "string", "pattern": format!("^x{{{}}}$", n + 1)}))
        .collect();
    let schema = json!({"type": "object", "properties": {"list": {"items": {"anyOf": branches}}}});
    client
        .post(
            "/v1/event-types",
            json!({"name": "slow.check", "schema": schema}),
        )
        .await
        .assert_status(201);
    let list = vec!["ab"; 35_000];
    let started = Instant::now();
    let refused = client
        .post(
            "/v1/events",
            json!({"type": "slow.check", "data": {"list": list}}),
        )
        .await;
    refused.assert_error(422, "SCHEMA_VALIDATION_FAILED");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("budget"),
        "{}",
        refused.body
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_schema_failure_names_the_path_and_the_rule_never_the_data() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    let schema = json!({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[0-9]+$"}}});
    client
        .post(
            "/v1/event-types",
            json!({"name": "coded.thing", "schema": schema}),
        )
        .await
        .assert_status(201);
    let secret = "TOPSECRET-4711";
    let refused = client
        .post(
            "/v1/events",
            json!({"type": "coded.thing", "data": {"code": secret}}),
        )
        .await;
    refused.assert_error(422, "SCHEMA_VALIDATION_FAILED");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("data.code") && message.contains("pattern"),
        "{message}"
    );
    assert!(!message.contains(secret), "{message}");
    // From the ingest queue: the dead letter's reason says as much, and no more.
    stack
        .send_to_ingest(
            &json!({"tenant_id": client.tenant, "type": "coded.thing", "data": {"code": secret}})
                .to_string(),
        )
        .await;
    let letters = stack.dead_letters(1, Duration::from_secs(20)).await;
    let reason = &letters[0].1;
    assert!(
        reason.contains("data.code") && !reason.contains(secret),
        "{reason}"
    );
}

#[tokio::test]
async fn answers_that_carry_a_secret_are_never_cached() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    let created = client
        .post(
            "/v1/webhooks",
            json!({"url": crate::utils::local_url("nc"), "events": "*",
                   "auth": {"username": "u", "password": "pw-no-store-1"}}),
        )
        .await;
    let path = format!("/v1/webhooks/{}", id(created.assert_status(201)));
    let no_store = |reply: &crate::utils::Reply| {
        reply
            .headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            == Some("no-store")
    };
    assert!(no_store(&created), "create");
    for path in [
        format!("{path}/secret"),
        format!("{path}?show_authentication=true"),
        "/v1/webhooks?show_authentication=true".to_string(),
    ] {
        let reply = client.get(&path).await;
        reply.assert_status(200);
        assert!(no_store(&reply), "{path}");
    }
    let rotated = client.post_empty(&format!("{path}/secret/rotate")).await;
    rotated.assert_status(200);
    assert!(no_store(&rotated), "rotate");
    // An answer with no credential in it may be cached.
    assert!(!no_store(&client.get(&path).await), "a plain read");
}

#[tokio::test]
async fn ipv6_forms_that_embed_a_private_ipv4_address_are_refused_and_names_are_not_resolved() {
    let stack = Stack::start_with(&[("ALLOW_INSECURE_TARGETS", "false")]).await;
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    for url in [
        "https://[64:ff9b:1::a00:1]/x",   // NAT64 local-use: 10.0.0.1
        "https://[64:ff9b::a9fe:a9fe]/x", // NAT64: 169.254.169.254
        "https://[::ffff:0:a00:1]/x",     // SIIT: 10.0.0.1
        "https://[2002:a00:1::1]/x",      // 6to4: 10.0.0.1
        "https://[2001:0:a00:1::1]/x",    // Teredo, server 10.0.0.1
    ] {
        let refused = client
            .post("/v1/webhooks", json!({"url": url, "events": "*"}))
            .await;
        refused.assert_error(422, "INVALID_URL");
    }
    // A name is never resolved at registration, so whatever it resolves to (a private
    // address, or nothing) the answer is the same: accepted, and checked at delivery.
    client
        .post(
            "/v1/webhooks",
            json!({"url": "https://no-such-host.invalid/x", "events": "*"}),
        )
        .await
        .assert_status(201);
}

#[tokio::test]
async fn one_tenant_over_its_rate_limit_gets_429_and_another_is_unaffected() {
    let stack = Stack::start_with(&[("TENANT_RATE_LIMIT", "5")]).await;
    let noisy = stack.tenant().await;
    let calm = stack.tenant().await;
    // Bursts of 10 at most, then 5 a second: 30 at once leave most refused.
    let replies = futures::future::join_all((0..30).map(|_| noisy.get("/v1/me"))).await;
    let limited: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    let admitted = replies.iter().filter(|r| r.status == 200).count();
    assert!((10..=15).contains(&admitted), "{admitted} admitted");
    assert!(!limited.is_empty());
    for reply in &limited {
        reply.assert_error(429, "RATE_LIMITED");
        let wait: u64 = reply.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&wait), "Retry-After {wait}");
    }
    calm.get("/v1/me").await.assert_status(200);
    calm.get("/v1/webhooks").await.assert_status(200);
    // A second later, the noisy tenant is admitted again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    noisy.get("/v1/me").await.assert_status(200);
}

#[tokio::test]
async fn creating_a_webhook_reads_no_schema_and_a_catalogue_page_only_its_own() {
    let proxy = ThrottlingProxy::start().await;
    let stack = Stack::start_with(&[("AWS_ENDPOINT_URL", proxy.endpoint.as_str())]).await;
    let client = stack.tenant().await;
    // Twenty types with schemas of about 50 KB each: a megabyte of schemas.
    let filler: serde_json::Map<String, Value> = (0..1200)
        .map(|n| {
            (
                format!("field_{n:05}_padding_padding"),
                json!({"type": "string"}),
            )
        })
        .collect();
    for n in 0..20 {
        let schema = json!({"type": "object", "properties": filler});
        client
            .post(
                "/v1/event-types",
                json!({"name": format!("big.t{n}"), "schema": schema}),
            )
            .await
            .assert_status(201);
    }
    proxy.take_bytes_read();
    client
        .post(
            "/v1/webhooks",
            json!({"url": crate::utils::local_url("reads"), "events": ["big.t3"]}),
        )
        .await
        .assert_status(201);
    let created = proxy.take_bytes_read();
    assert!(created < 100_000, "creating a webhook read {created} bytes");
    let page = client.get("/v1/event-types?limit=2").await;
    assert_eq!(page.assert_status(200)["data"].as_array().unwrap().len(), 2);
    let listed = proxy.take_bytes_read();
    assert!(listed < 250_000, "a page of two read {listed} bytes");
}

/// A proxy from the environment is never used for deliveries: the guarded resolver, not
/// a proxy, decides where a request goes.
#[tokio::test]
async fn deliveries_never_go_through_a_proxy_from_the_environment() {
    // A trap where any proxied request would land.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_url = format!("http://{}", trap.local_addr().unwrap());
    let stack = Stack::start_with(&[("LOCAL_POLLERS", "0")]).await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    client.webhook(&receiver.url("direct"), json!("*")).await;
    // The deliver function in a process of its own, with every proxy variable set.
    let child = Command::new(workspace_binary("webhooks-local"))
        .env("AWS_ENDPOINT_URL", emulator_endpoint())
        .env("TABLE_NAME", &stack.table)
        .env("PORT", "0")
        .env("LOCAL_SWEEP_INTERVAL", "0s")
        .env_remove("DEV_API_KEY")
        .env("HTTP_PROXY", &trap_url)
        .env("HTTPS_PROXY", &trap_url)
        .env("ALL_PROXY", &trap_url)
        .env("http_proxy", &trap_url)
        .env("https_proxy", &trap_url)
        .env("all_proxy", &trap_url)
        .stdout(Stdio::null())
        .stderr(service_log())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _deliverer = Running(child);
    client.publish("user.created", json!({"n": 1})).await;
    let got = receiver
        .wait_for("direct", 1, Duration::from_secs(30))
        .await;
    assert_eq!(got[0].json()["data"], json!({"n": 1}));
    assert!(trap.accept().is_err(), "nothing reached the proxy");
}
