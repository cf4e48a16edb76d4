//! Storage under pressure: concurrent creates against the uniqueness and limit conditions,
//! and DynamoDB throttling (answered by a fault-injecting proxy in front of the emulator).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::join_all;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::utils::{Stack, emulator_endpoint, local_url};

#[tokio::test]
async fn concurrent_creates_of_one_url_make_exactly_one_webhook() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    let attempts = (0..10).map(|_| {
        let client = client.clone();
        async move {
            client
                .post(
                    "/v1/webhooks",
                    json!({"url": local_url("race"), "events": "*"}),
                )
                .await
        }
    });
    let replies = join_all(attempts).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    let duplicate = replies
        .iter()
        .filter(|r| r.code() == "DUPLICATE_URL")
        .count();
    assert_eq!(
        (created, duplicate),
        (1, 9),
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    assert_eq!(
        client.get("/v1/webhooks").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn concurrent_creates_never_pass_the_per_tenant_limit() {
    let stack = Stack::start_with(&[("MAX_WEBHOOKS_PER_TENANT", "4")]).await;
    let client = stack.tenant().await;
    let attempts = (0..12).map(|i| {
        let client = client.clone();
        async move {
            client
                .post(
                    "/v1/webhooks",
                    json!({"url": local_url(&format!("n{i}")), "events": "*"}),
                )
                .await
        }
    });
    let replies = join_all(attempts).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    let refused = replies
        .iter()
        .filter(|r| r.code() == "TOO_MANY_WEBHOOKS_REGISTERED")
        .count();
    assert_eq!((created, refused), (4, 8));
    assert_eq!(
        client.get("/v1/webhooks").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

/// Which DynamoDB calls the proxy throttles.
#[derive(Default)]
struct Rule {
    /// Every call of these operations.
    operations: HashSet<String>,
    /// Besides, this share (percent) of all DynamoDB calls, picked pseudo-randomly.
    share_percent: u64,
    /// The generator's state (xorshift64; seeded so a failing run can be replayed).
    state: u64,
}

impl Rule {
    fn throttles(&mut self, target: &str) -> bool {
        let Some(operation) = target.strip_prefix("DynamoDB_20120810.") else {
            return false; // SQS and the rest pass untouched
        };
        if self.operations.contains(operation) {
            return true;
        }
        if self.share_percent == 0 {
            return false;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % 100 < self.share_percent
    }
}

/// A proxy to the emulator that answers chosen DynamoDB calls with
/// `ProvisionedThroughputExceededException`, as DynamoDB does under load.
pub struct ThrottlingProxy {
    pub endpoint: String,
    rule: Arc<Mutex<Rule>>,
    answered: Arc<Mutex<usize>>,
    /// Bytes of DynamoDB's answers passed on, by operation.
    read: Arc<Mutex<HashMap<String, usize>>>,
}

impl ThrottlingProxy {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let rule: Arc<Mutex<Rule>> = Arc::default();
        let answered: Arc<Mutex<usize>> = Arc::default();
        let read: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let upstream = emulator_endpoint();
        let http = shared::tls::http_client();
        let (t, a, r) = (Arc::clone(&rule), Arc::clone(&answered), Arc::clone(&read));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (t, a, r, upstream, http) = (
                    Arc::clone(&t),
                    Arc::clone(&a),
                    Arc::clone(&r),
                    upstream.clone(),
                    http.clone(),
                );
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (t, a, r, upstream, http) = (
                            Arc::clone(&t),
                            Arc::clone(&a),
                            Arc::clone(&r),
                            upstream.clone(),
                            http.clone(),
                        );
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let target = parts
                                .headers
                                .get("x-amz-target")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("");
                            if t.lock().unwrap().throttles(target) {
                                *a.lock().unwrap() += 1;
                                let throttle = json!({
                                    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                                    "message": "The level of configured provisioned throughput for the table was exceeded."
                                });
                                return Ok::<_, Infallible>(
                                    hyper::Response::builder()
                                        .status(400)
                                        .header("content-type", "application/x-amz-json-1.0")
                                        .body(Full::new(Bytes::from(throttle.to_string())))
                                        .unwrap(),
                                );
                            }
                            let mut forward = http
                                .request(parts.method.clone(), format!("{upstream}{}", parts.uri));
                            // Every header as it came, the host too: the request is
                            // signed for it.
                            for (name, value) in &parts.headers {
                                if name != "content-length" {
                                    forward = forward.header(name, value);
                                }
                            }
                            let reply = forward.body(body).send().await.unwrap();
                            let mut response =
                                hyper::Response::builder().status(reply.status().as_u16());
                            for (name, value) in reply.headers() {
                                if name != "content-length" && name != "transfer-encoding" {
                                    response = response.header(name, value);
                                }
                            }
                            let bytes = reply.bytes().await.unwrap();
                            if let Some(operation) = target.strip_prefix("DynamoDB_20120810.") {
                                *r.lock().unwrap().entry(operation.to_string()).or_default() +=
                                    bytes.len();
                            }
                            Ok(response.body(Full::new(bytes)).unwrap())
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ThrottlingProxy {
            endpoint,
            rule,
            answered,
            read,
        }
    }

    /// Bytes DynamoDB answered since the last call (every operation), and forgets them.
    pub fn take_bytes_read(&self) -> usize {
        std::mem::take(&mut *self.read.lock().unwrap())
            .values()
            .sum()
    }

    /// Throttles every call of these operations (and nothing else).
    pub fn throttle(&self, operations: &[&str]) {
        let mut rule = self.rule.lock().unwrap();
        *rule = Rule::default();
        rule.operations
            .extend(operations.iter().map(|s| s.to_string()));
    }

    /// Throttles `percent` of all DynamoDB calls, picked by a generator seeded with `seed`.
    pub fn throttle_share(&self, percent: u64, seed: u64) {
        let mut rule = self.rule.lock().unwrap();
        *rule = Rule {
            share_percent: percent,
            state: seed.max(1),
            ..Rule::default()
        };
    }

    pub fn throttled_answers(&self) -> usize {
        *self.answered.lock().unwrap()
    }
}

#[tokio::test]
async fn throttled_storage_is_503_with_retry_after_and_leaves_nothing_half_written() {
    let proxy = ThrottlingProxy::start().await;
    // No authorizer cache: the last request's key lookup is made while storage throttles.
    let stack = Stack::start_with(&[
        ("AWS_ENDPOINT_URL", proxy.endpoint.as_str()),
        ("AUTHORIZER_CACHE_TTL_SECONDS", "0"),
    ])
    .await;
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    let kept = client.webhook(&local_url("kept"), json!("*")).await;
    let kept_path = format!("/v1/webhooks/{}", kept["id"].as_str().unwrap());

    // Writes and queries throttled; the authorizer's and the routes' GetItem still pass.
    proxy.throttle(&[
        "Query",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "TransactWriteItems",
    ]);
    let replies = [
        client.get("/v1/webhooks").await,
        client.get("/v1/event-types").await,
        client
            .post(
                "/v1/webhooks",
                json!({"url": local_url("new"), "events": "*"}),
            )
            .await,
        client
            .post("/v1/event-types", json!({"name": "user.deleted"}))
            .await,
        client.patch(&kept_path, json!({"name": "renamed"})).await,
        client.delete(&kept_path).await,
        client.delete("/v1/event-types/user.created").await,
    ];
    for reply in &replies {
        reply.assert_error(503, "UNAVAILABLE");
        assert_eq!(reply.headers["retry-after"], "2");
        assert!(
            !reply.body.to_string().contains("Provisioned"),
            "no internals: {}",
            reply.body
        );
    }
    // The SDK retried each call before giving up.
    assert!(
        proxy.throttled_answers() >= 2 * replies.len(),
        "{}",
        proxy.throttled_answers()
    );

    // Even the authorizer's lookup: still a 503, never a 500.
    proxy.throttle(&["GetItem"]);
    let me = client.get("/v1/me").await;
    me.assert_error(503, "UNAVAILABLE");
    assert!(me.headers.contains_key("retry-after"));

    proxy.throttle(&[]);
    let listed = client.get("/v1/webhooks").await;
    let data = listed.assert_status(200)["data"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(data.len(), 1, "nothing half-written: {data:?}");
    assert_eq!(data[0]["name"], serde_json::Value::Null);
    let types = client.get("/v1/event-types").await;
    assert_eq!(
        types.assert_status(200)["data"].as_array().unwrap().len(),
        1
    );
    // The URL that failed to register is still free.
    client.webhook(&local_url("new"), json!("*")).await;
}
