//! The real binaries (SPEC §11): every binary in `functions/` answers a real invocation
//! through a local Lambda Runtime API, as its own principal on the emulator: each route
//! with an API Gateway v2 event carrying the authorizer's context, the authorizer with its
//! request, deliver with an SQS batch, the sweeper with a schedule event. So the doorways
//! (each binary's `main`, the route it names, its settings and clients), not only the
//! handlers, are tested.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tools::local::runtime::RuntimeApi;
use tools::local::server::{Context, GatewayRequest, gateway_event};
use tools::local::template::{HttpRoute, Template};

use crate::receiver::Receiver;
use crate::utils::{Stack, emulator_endpoint, service_log, workspace_binary};

/// What a binary's answer must say.
type Check = Box<dyn Fn(&Value) -> Result<(), String> + Send + Sync>;

/// What one binary is asked, and what its answer must say.
struct Case {
    binary: String,
    event: Value,
    check: Check,
}

/// A route's invocation: `method path` (matched against the template's route), the body,
/// and the status (and error code) the answer must carry.
fn route_case(
    routes: &[HttpRoute],
    context: &Context,
    request: (&str, &str, Option<Value>),
    status: u16,
    code: Option<&'static str>,
) -> Case {
    let (method, path, body) = request;
    let (content_type, body) = match body {
        Some(Value::String(form)) => ("application/x-www-form-urlencoded", form),
        Some(json) => ("application/json", json.to_string()),
        None => ("application/json", String::new()),
    };
    let (route, params) = routes
        .iter()
        .filter(|r| r.method == method)
        .find_map(|r| tools::local::template::match_path(&r.path, path).map(|p| (r, p)))
        .unwrap_or_else(|| panic!("no template route for {method} {path}"));
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", content_type.parse().unwrap());
    headers.insert("host", "api.example.test".parse().unwrap());
    let request = GatewayRequest {
        method,
        path,
        query: "",
        headers: &headers,
        body: body.as_bytes(),
    };
    let context = if route.public {
        Context::new()
    } else {
        context.clone()
    };
    Case {
        binary: route.function.clone(),
        event: gateway_event(&request, route, params, context),
        check: Box::new(move |answer| {
            let got = answer["statusCode"].as_u64();
            let body: Value = answer["body"]
                .as_str()
                .and_then(|b| serde_json::from_str(b).ok())
                .unwrap_or(Value::Null);
            if got != Some(u64::from(status)) {
                return Err(format!("status {got:?}, not {status}: {answer}"));
            }
            match code {
                Some(code) if body["error"]["code"] != code => Err(format!("not {code}: {answer}")),
                _ => Ok(()),
            }
        }),
    }
}

/// A binary of `functions/`, started against `api` as the function's own principal.
fn start(stack: &Stack, binary: &str, api: &RuntimeApi) -> Child {
    let config = &stack.state.config;
    let queues = config.queues.clone().unwrap();
    let credentials = stack
        .function(binary)
        .credentials
        .clone()
        .expect("the emulator enforces IAM: every function has its principal");
    let mut command = Command::new(workspace_binary(binary));
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_LAMBDA_RUNTIME_API", &api.address)
        .env(
            "AWS_LAMBDA_FUNCTION_NAME",
            format!("{}-{binary}", stack.table),
        )
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{binary}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", emulator_endpoint())
        .env("EMULATOR_ACCESS_KEY_ID", credentials.access_key_id())
        .env(
            "EMULATOR_SECRET_ACCESS_KEY",
            credentials.secret_access_key(),
        )
        .env("TABLE_NAME", &stack.table)
        .env("INGEST_QUEUE_URL", &queues.ingest)
        .env("INGEST_DLQ_URL", &queues.ingest_dlq)
        .env("DELIVERY_QUEUE_URL", &queues.delivery)
        .env("DELIVERY_DLQ_URL", queues.delivery_dlq.unwrap_or_default())
        .env("SECRETS_KEY_ID", config.secrets_key_id.clone().unwrap())
        .env("TOKEN_KEY_ID", config.token_key_id.clone().unwrap())
        .env("TOKEN_ISSUER", &config.token_issuer)
        .env("TOKEN_AUDIENCE", &config.token_audience)
        .env("ALLOW_INSECURE_TARGETS", "true")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(service_log());
    command.spawn().unwrap()
}

#[tokio::test]
async fn every_binary_answers_a_real_invocation_as_its_own_principal() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    client.webhook(&receiver.url("binary"), json!("*")).await;
    let tenant = client.tenant.clone();
    let key = client.key.clone().unwrap();
    let context: Context = json!({
        "tenant_id": tenant,
        "key_id": "key_01J00000000000000000000000",
        "scopes": "webhooks:read webhooks:write events:read events:write event-types:write",
    })
    .as_object()
    .unwrap()
    .clone();
    let routes = Template::built_in().unwrap().http_routes().unwrap();
    let wh = "wh_01J00000000000000000000000";
    let missing = [
        (
            "GET",
            format!("/v1/webhooks/{wh}"),
            None,
            "WEBHOOK_NOT_FOUND",
        ),
        (
            "PATCH",
            format!("/v1/webhooks/{wh}"),
            Some(json!({"name": "x"})),
            "WEBHOOK_NOT_FOUND",
        ),
        (
            "PUT",
            format!("/v1/webhooks/{wh}"),
            Some(json!({"name": "x"})),
            "WEBHOOK_NOT_FOUND",
        ),
        (
            "DELETE",
            format!("/v1/webhooks/{wh}"),
            None,
            "WEBHOOK_NOT_FOUND",
        ),
        (
            "PUT",
            format!("/v1/webhooks/{wh}/auth"),
            Some(json!({"username": "u", "password": "p"})),
            "WEBHOOK_NOT_FOUND",
        ),
        (
            "DELETE",
            format!("/v1/webhooks/{wh}/auth"),
            None,
            "WEBHOOK_NOT_FOUND",
        ),
        (
            "POST",
            format!("/v1/webhooks/{wh}/pause"),
            None,
            "WEBHOOK_NOT_FOUND",
        ),
        (
            "POST",
            format!("/v1/webhooks/{wh}/unpause"),
            None,
            "WEBHOOK_NOT_FOUND",
        ),
        (
            "GET",
            format!("/v1/webhooks/{wh}/secret"),
            None,
            "WEBHOOK_NOT_FOUND",
        ),
        (
            "POST",
            format!("/v1/webhooks/{wh}/secret/rotate"),
            None,
            "WEBHOOK_NOT_FOUND",
        ),
        (
            "POST",
            format!("/v1/webhooks/{wh}/test"),
            Some(json!({"event": "user.created"})),
            "WEBHOOK_NOT_FOUND",
        ),
        (
            "POST",
            format!("/v1/webhooks/{wh}/recover"),
            Some(json!({"since": "2026-01-01T00:00:00Z"})),
            "WEBHOOK_NOT_FOUND",
        ),
        (
            "DELETE",
            "/v1/event-types/no.such".to_string(),
            None,
            "EVENT_TYPE_NOT_FOUND",
        ),
        (
            "GET",
            "/v1/events/evt_01J00000000000000000000000".to_string(),
            None,
            "EVENT_NOT_FOUND",
        ),
        (
            "POST",
            "/v1/events/evt_01J00000000000000000000000/replay".to_string(),
            Some(json!({})),
            "EVENT_NOT_FOUND",
        ),
        (
            "GET",
            "/v1/deliveries/dlv_01J00000000000000000000000".to_string(),
            None,
            "DELIVERY_NOT_FOUND",
        ),
        (
            "POST",
            "/v1/deliveries/dlv_01J00000000000000000000000/retry".to_string(),
            None,
            "DELIVERY_NOT_FOUND",
        ),
        (
            "POST",
            "/v1/events".to_string(),
            Some(json!({"type": "no.such", "data": {}})),
            "UNKNOWN_EVENT_TYPE",
        ),
    ];
    let mut cases: Vec<Case> = missing
        .into_iter()
        .map(|(method, path, body, code)| {
            let status = if code == "UNKNOWN_EVENT_TYPE" {
                422
            } else {
                404
            };
            route_case(&routes, &context, (method, &path, body), status, Some(code))
        })
        .collect();
    for (method, path, body, status) in [
        ("GET", "/v1/me", None, 200),
        ("GET", "/v1/event-types", None, 200),
        (
            "POST",
            "/v1/event-types",
            Some(json!({"name": "bin.made"})),
            201,
        ),
        ("GET", "/v1/webhooks", None, 200),
        (
            "POST",
            "/v1/webhooks",
            Some(json!({"url": "http://127.0.0.1:9/bin", "events": "*"})),
            201,
        ),
        ("GET", "/v1/events", None, 200),
        ("GET", "/v1/deliveries", None, 200),
        ("POST", "/v1/portal-sessions", Some(json!({})), 201),
        ("GET", "/.well-known/jwks.json", None, 200),
        ("GET", "/portal", None, 200),
    ] {
        cases.push(route_case(
            &routes,
            &context,
            (method, path, body),
            status,
            None,
        ));
    }
    let mut token = route_case(
        &routes,
        &context,
        (
            "POST",
            "/v1/oauth/token",
            Some(Value::String("grant_type=client_credentials".into())),
        ),
        401,
        None,
    );
    token.check = Box::new(|answer| {
        (answer["statusCode"] == 401
            && answer["body"]
                .as_str()
                .unwrap_or("")
                .contains("invalid_client"))
        .then_some(())
        .ok_or_else(|| format!("not invalid_client: {answer}"))
    });
    cases.push(token);
    // The $default route.
    let default = routes.iter().find(|r| r.path == "$default").unwrap();
    let headers = http::HeaderMap::new();
    cases.push(Case {
        binary: default.function.clone(),
        event: gateway_event(
            &GatewayRequest {
                method: "GET",
                path: "/nothing",
                query: "",
                headers: &headers,
                body: b"",
            },
            default,
            Vec::new(),
            Context::new(),
        ),
        check: Box::new(|answer| {
            (answer["statusCode"] == 404
                && answer["body"].as_str().unwrap_or("").contains("NOT_FOUND"))
            .then_some(())
            .ok_or_else(|| format!("not the API's 404: {answer}"))
        }),
    });
    // The authorizer, with a real key.
    let expected_tenant = tenant.clone();
    cases.push(Case {
        binary: "authorizer".into(),
        event: json!({
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": "arn:aws:execute-api:us-east-1:123456789012:api/$default/GET/v1/me",
            "identitySource": [format!("Bearer {key}")],
            "routeKey": "GET /v1/me",
            "rawPath": "/v1/me",
            "rawQueryString": "",
            "headers": {"authorization": format!("Bearer {key}")},
            "requestContext": {
                "accountId": "123456789012", "apiId": "api", "domainName": "local",
                "domainPrefix": "local", "requestId": "r", "routeKey": "GET /v1/me",
                "stage": "$default", "time": "04/Dec/2026:00:00:00 +0000", "timeEpoch": 0,
                "http": {"method": "GET", "path": "/v1/me", "protocol": "HTTP/1.1",
                         "sourceIp": "127.0.0.1", "userAgent": "test"}
            }
        }),
        check: Box::new(move |answer| {
            (answer["isAuthorized"] == true && answer["context"]["tenant_id"] == expected_tenant)
                .then_some(())
                .ok_or_else(|| format!("the key's grant is missing: {answer}"))
        }),
    });
    // The deliver function, with an SQS batch from the ingest queue.
    let (_, queues) = stack.sqs().await;
    let ingest_arn = format!(
        "arn:aws:sqs:us-east-1:123456789012:{}",
        queues.ingest.rsplit('/').next().unwrap()
    );
    let body = json!({"tenant_id": tenant, "type": "user.created", "data": {"via": "binary"}});
    cases.push(Case {
        binary: "deliver".into(),
        event: json!({"Records": [{
            "messageId": "m-binary-1",
            "receiptHandle": "r-1",
            "body": body.to_string(),
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": shared::domain::now().timestamp_millis().to_string()},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": ingest_arn,
            "awsRegion": "us-east-1"
        }]}),
        check: Box::new(|answer| {
            (answer["batchItemFailures"] == json!([]))
                .then_some(())
                .ok_or_else(|| format!("a failed record: {answer}"))
        }),
    });
    // The smoke receiver, behind its function URL (payload 2.0, as HTTP API's).
    let headers = http::HeaderMap::new();
    let url_route = HttpRoute {
        method: "ANY".into(),
        path: "$default".into(),
        function: "smoke_receiver".into(),
        public: true,
    };
    cases.push(Case {
        binary: "smoke_receiver".into(),
        event: gateway_event(
            &GatewayRequest {
                method: "GET",
                path: "/binary-smoke-token-0001",
                query: "",
                headers: &headers,
                body: b"",
            },
            &url_route,
            Vec::new(),
            Context::new(),
        ),
        check: Box::new(|answer| {
            (answer["statusCode"] == 200
                && answer["body"]
                    .as_str()
                    .unwrap_or("")
                    .contains("\"received\":[]"))
            .then_some(())
            .ok_or_else(|| format!("not an empty list: {answer}"))
        }),
    });
    // The sweeper, with its schedule's event.
    cases.push(Case {
        binary: "sweeper".into(),
        event: json!({"version": "0", "id": "s-1", "detail-type": "Scheduled Event", "source": "aws.scheduler", "detail": {}}),
        check: Box::new(|answer| {
            (answer["events"] == 0 && answer["tasks"] == 0)
                .then_some(())
                .ok_or_else(|| format!("not a sweep's answer: {answer}"))
        }),
    });

    // Every binary of functions/ is invoked at least once.
    let mut invoked: Vec<String> = cases.iter().map(|c| c.binary.clone()).collect();
    invoked.sort();
    invoked.dedup();
    let mut binaries: Vec<String> = Template::built_in()
        .unwrap()
        .functions()
        .unwrap()
        .into_iter()
        .map(|f| f.binary)
        .collect();
    binaries.sort();
    assert_eq!(invoked, binaries, "every binary gets an invocation");

    // Two processes at a time (2 cores), each killed after its answer.
    let slots = Arc::new(Semaphore::new(2));
    let stack = &stack;
    let failures: Vec<String> = stream::iter(cases)
        .map(|case| {
            let slots = Arc::clone(&slots);
            async move {
                let _slot = slots.acquire().await.unwrap();
                let api = RuntimeApi::start().await.unwrap();
                let mut child = start(stack, &case.binary, &api);
                let answer = api.invoke(case.event, Duration::from_secs(30)).await;
                let _ = child.kill();
                let _ = child.wait();
                match answer {
                    Ok(answer) => (case.check)(&answer)
                        .err()
                        .map(|e| format!("{}: {e}", case.binary)),
                    Err(e) => Some(format!("{}: {e}", case.binary)),
                }
            }
        })
        .buffer_unordered(2)
        .filter_map(|failure| async move { failure })
        .collect()
        .await;
    assert!(failures.is_empty(), "{failures:#?}");
    // The deliver binary's delivery reached the receiver, signed.
    let got = receiver
        .wait_for("binary", 1, Duration::from_secs(10))
        .await;
    assert_eq!(got[0].json()["data"], json!({"via": "binary"}));
    assert!(got[0].headers.contains_key("webhook-signature"));
}
