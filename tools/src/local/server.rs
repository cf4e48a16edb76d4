//! The local API server, answering as API Gateway's HTTP API does for what template.yaml
//! declares: its routes (exact paths before greedy ones, then the `$default` route, else
//! the gateway's own 404), the authorizer's identity source (a request without it is
//! answered 401 by the gateway, the authorizer never called) and its cache (the answer
//! kept per identity for `ReauthorizeEvery`), the 10 MB request limit, and the 30 s
//! integration timeout. Each request becomes the API Gateway (payload 2.0) event Lambda
//! would receive, handed to the same handler the Lambda binary runs, as the function's own
//! principal and under the function's `Timeout`; the answer is measured as Lambda measures
//! it (the serialized invocation response, escapes included) against its 6 MB.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::functions::{Function, Functions};
use super::settings::LocalSettings;
use super::template::{AuthorizerSpec, DEFAULT_ROUTE, HttpRoute, Template, match_path};
use shared::api::{self, AssetRoute, PublicRoute, Route};
use shared::auth::AuthorizerContext;

/// Lambda's limit on a synchronous invocation's payload, request and response alike.
pub const MAX_LAMBDA_PAYLOAD: usize = 6 * 1024 * 1024;
/// HTTP API's limit on a request's body.
pub const MAX_GATEWAY_REQUEST: usize = 10 * 1024 * 1024;
/// HTTP API's longest wait for an integration.
pub const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What serves a template route: a handler behind the authorizer, or a public one.
#[derive(Clone, Copy)]
enum Door {
    Authorized(&'static Route),
    Public(&'static PublicRoute),
    Asset(&'static AssetRoute),
}

/// The authorizer's context for a route: what the route reads its caller from.
pub type Context = serde_json::Map<String, Value>;

/// The authorizer's answers, kept per identity source value as API Gateway keeps them.
struct AuthorizerCache {
    ttl: Duration,
    answers: Mutex<HashMap<String, (Instant, Context)>>,
}

/// A route a request took: the route, its door, its path parameters.
type Matched<'a> = (&'a HttpRoute, Door, Vec<(String, String)>);

impl AuthorizerCache {
    fn get(&self, identity: &str) -> Option<Context> {
        let answers = self.answers.lock();
        let (at, context) = answers.get(identity)?;
        (at.elapsed() < self.ttl).then(|| context.clone())
    }

    fn put(&self, identity: &str, context: &Context) {
        if self.ttl.is_zero() {
            return;
        }
        let mut answers = self.answers.lock();
        answers.retain(|_, (at, _)| at.elapsed() < self.ttl);
        answers.insert(identity.to_string(), (Instant::now(), context.clone()));
    }
}

/// Where the local stack serves a function's URL (in AWS, a host of its own):
/// `/_lambda-url/<binary>/...`.
pub const FUNCTION_URL_PREFIX: &str = "/_lambda-url/";

/// The routes of the template, each joined to its registered handler and its function.
pub struct LocalApi {
    functions: Functions,
    routes: Vec<(HttpRoute, Door)>,
    authorizer: Option<AuthorizerSpec>,
    cache: AuthorizerCache,
    /// The smoke receiver's log, behind its function URL (as its own principal).
    smoke: Option<shared::smoke::SmokeLog>,
}

/// An answer API Gateway gives itself, in its own shape (`{"message": ...}`).
fn gateway_answer(status: u16, message: &str) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("apigw-requestid", ulid::Ulid::new().to_string())
        .body(Full::new(Bytes::from(
            json!({ "message": message }).to_string(),
        )))
        .expect("a status and static headers are always valid")
}

impl LocalApi {
    /// Joins the template's routes to the handler registry and the functions; an error
    /// names any route whose function has no handler.
    pub fn new(
        functions: Functions,
        template: &Template,
        settings: &LocalSettings,
        smoke: Option<shared::smoke::SmokeLog>,
    ) -> Result<Self, String> {
        let mut routes = template
            .http_routes()?
            .into_iter()
            .map(|r| {
                let door = if r.public {
                    api::public_route(&r.function)
                        .map(Door::Public)
                        .or_else(|| api::asset_route(&r.function).map(Door::Asset))
                } else {
                    api::route(&r.function).map(Door::Authorized)
                };
                match door {
                    Some(door) => Ok((r, door)),
                    None => Err(format!(
                        "template.yaml routes {} {} to {}, which has no handler of its kind",
                        r.method, r.path, r.function
                    )),
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        // As HTTP API chooses: a full match, then a greedy path variable, then $default.
        routes.sort_by_key(|(r, _)| match r.path.as_str() {
            DEFAULT_ROUTE => 2,
            path if path.contains("+}") => 1,
            _ => 0,
        });
        let authorizer = template.authorizer()?;
        let ttl = settings
            .authorizer_cache_ttl
            .or(authorizer.as_ref().map(|a| a.cache_ttl))
            .unwrap_or_default();
        Ok(LocalApi {
            functions,
            routes,
            authorizer,
            cache: AuthorizerCache {
                ttl,
                answers: Mutex::default(),
            },
            smoke,
        })
    }

    pub fn functions(&self) -> &Functions {
        &self.functions
    }

    /// Serves connections from `listener` until `shutdown` completes.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let api = Arc::clone(&self);
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            let api = Arc::clone(&api);
                            async move { Ok::<_, Infallible>(api.answer(req).await) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        }
    }

    /// The route a request takes, with its path parameters.
    fn route_of(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        self.routes.iter().find_map(|(r, door)| {
            if r.path == DEFAULT_ROUTE {
                return Some((r, *door, Vec::new()));
            }
            (r.method == method || r.method == "ANY")
                .then(|| match_path(&r.path, path))
                .flatten()
                .map(|params| (r, *door, params))
        })
    }

    /// Answers a request, and describes it in one readable line (`make run` prints it).
    async fn answer(&self, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
        let started = std::time::Instant::now();
        let (method, path) = (req.method().to_string(), req.uri().path().to_string());
        let mut tenant = None;
        let response = self.handle(req, &mut tenant).await;
        shared::activity::request(
            &method,
            &path,
            response.status().as_u16(),
            tenant.as_deref(),
            started.elapsed().as_millis(),
        );
        response
    }

    /// Answers a request; `tenant` is set to the caller's when the authorizer found one.
    async fn handle(
        &self,
        req: hyper::Request<Incoming>,
        tenant: &mut Option<String>,
    ) -> hyper::Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_GATEWAY_REQUEST).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return gateway_answer(413, "Request Entity Too Large"),
        };
        if let Some(rest) = parts.uri.path().strip_prefix(FUNCTION_URL_PREFIX) {
            return self.function_url(&parts, &body, rest).await;
        }
        let Some((route, door, params)) = self.route_of(parts.method.as_str(), parts.uri.path())
        else {
            return gateway_answer(404, "Not Found");
        };
        let Ok(function) = self.functions.get(&route.function) else {
            return gateway_answer(500, "Internal Server Error");
        };
        let context = match door {
            Door::Authorized(_) => match self.authorize(&parts).await {
                Ok(context) => {
                    *tenant =
                        serde_json::from_value::<AuthorizerContext>(Value::Object(context.clone()))
                            .ok()
                            .and_then(|c| c.tenant_id);
                    context
                }
                Err(answer) => return answer,
            },
            Door::Public(_) | Door::Asset(_) => serde_json::Map::new(),
        };
        let request = GatewayRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body: &body,
        };
        let event = gateway_event(&request, route, params, context);
        let event_text = event.to_string();
        if event_text.len() > MAX_LAMBDA_PAYLOAD {
            // Lambda refuses an invocation larger than its payload limit.
            return gateway_answer(413, "Request Entity Too Large");
        }
        let request = match lambda_http::request::from_str(&event_text) {
            Ok(request) => request,
            Err(e) => {
                tracing::error!(error = %e, "building the API Gateway event");
                return gateway_answer(500, "Internal Server Error");
            }
        };
        let state = &function.state;
        let run = async {
            match door {
                Door::Authorized(handler) => api::dispatch(state, handler, request).await,
                Door::Public(handler) => api::dispatch_public(state, handler, request).await,
                Door::Asset(handler) => api::dispatch_asset(handler, &request),
            }
        };
        let response = match invoke(function, run).await {
            Ok(response) => response,
            Err(answer) => return answer,
        };
        let serialized = invocation_response_size(&response);
        if serialized > MAX_LAMBDA_PAYLOAD {
            // What Lambda does with a response past its limit: the invocation fails and API
            // Gateway answers 500.
            tracing::error!(
                size = serialized,
                route = %route.function,
                "the serialized response is larger than Lambda's 6 MB limit"
            );
            return gateway_answer(500, "Internal Server Error");
        }
        to_hyper(response)
    }

    /// A request to a function's URL: the smoke receiver's, the only one.
    async fn function_url(
        &self,
        parts: &http::request::Parts,
        body: &Bytes,
        rest: &str,
    ) -> hyper::Response<Full<Bytes>> {
        let (binary, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (Some(log), Ok(function)) = (&self.smoke, self.functions.get(binary)) else {
            return gateway_answer(404, "Not Found");
        };
        let path = format!("/{path}");
        let request = GatewayRequest {
            method: parts.method.as_str(),
            path: &path,
            query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body,
        };
        let route = HttpRoute {
            method: "ANY".into(),
            path: DEFAULT_ROUTE.into(),
            function: binary.to_string(),
            public: true,
        };
        let event = gateway_event(&request, &route, Vec::new(), Context::new());
        let Ok(request) = lambda_http::request::from_str(&event.to_string()) else {
            return gateway_answer(500, "Internal Server Error");
        };
        match invoke(function, shared::smoke::receive(log, request)).await {
            Ok(response) => to_hyper(response),
            Err(answer) => answer,
        }
    }

    /// The authorizer as API Gateway calls it: the gateway answers 401 itself when the
    /// identity source is missing or empty; a cached answer is reused for its identity.
    async fn authorize(
        &self,
        parts: &http::request::Parts,
    ) -> Result<Context, hyper::Response<Full<Bytes>>> {
        let Some(authorizer) = &self.authorizer else {
            return Ok(serde_json::Map::new());
        };
        let mut identity = Vec::new();
        for name in &authorizer.identity_headers {
            match parts.headers.get(name).and_then(|v| v.to_str().ok()) {
                Some(value) if !value.trim().is_empty() => identity.push(value.to_string()),
                _ => return Err(gateway_answer(401, "Unauthorized")),
            }
        }
        let identity = identity.join(",");
        if let Some(context) = self.cache.get(&identity) {
            return Ok(context);
        }
        let function = self
            .functions
            .get("authorizer")
            .map_err(|_| gateway_answer(500, "Internal Server Error"))?;
        let mut request = ApiGatewayV2CustomAuthorizerV2Request::default();
        request.headers = parts.headers.clone();
        request.route_arn = Some(format!(
            "arn:aws:execute-api:us-east-1:123456789012:local/$default/{}{}",
            parts.method,
            parts.uri.path()
        ));
        request.identity_source = Some(vec![identity.clone()]);
        let state = &function.state;
        let answer = invoke(function, async {
            shared::auth::handle_authorizer_request(&*state.store, &state.tokens, request).await
        })
        .await?;
        if !answer.is_authorized {
            return Err(gateway_answer(403, "Forbidden"));
        }
        let context = match answer.context {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        self.cache.put(&identity, &context);
        Ok(context)
    }
}

/// Runs one invocation of `function` as Lambda would: past the function's `Timeout` it
/// fails (API Gateway answers 500), and API Gateway waits at most 30 s (then 503).
async fn invoke<T>(
    function: &Function,
    run: impl Future<Output = T>,
) -> Result<T, hyper::Response<Full<Bytes>>> {
    within_limits(
        &function.spec.binary,
        function.spec.timeout,
        INTEGRATION_TIMEOUT,
        run,
    )
    .await
}

/// `run` under a function's `timeout` and the gateway's `integration` timeout: the first
/// to pass ends it, as a 500 (Lambda failed the invocation) or a 503 (the gateway gave up).
async fn within_limits<T>(
    binary: &str,
    timeout: Duration,
    integration: Duration,
    run: impl Future<Output = T>,
) -> Result<T, hyper::Response<Full<Bytes>>> {
    match tokio::time::timeout(timeout.min(integration), run).await {
        Ok(answer) => Ok(answer),
        Err(_) if timeout <= integration => {
            tracing::error!(
                function = binary,
                timeout_s = timeout.as_secs(),
                "the invocation timed out, as Lambda would end it"
            );
            Err(gateway_answer(500, "Internal Server Error"))
        }
        Err(_) => Err(gateway_answer(503, "Service Unavailable")),
    }
}

/// The length of the response as Lambda serializes it for API Gateway: a JSON object whose
/// `body` is the body as a JSON string, so each `"` and `\` in it counts twice.
pub fn invocation_response_size(response: &lambda_http::Response<lambda_http::Body>) -> usize {
    let (body, base64) = match response.body() {
        lambda_http::Body::Text(text) => (text.clone(), false),
        lambda_http::Body::Binary(data) => (STANDARD.encode(data), true),
        _ => (String::new(), false),
    };
    let headers: Context = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    json!({
        "statusCode": response.status().as_u16(),
        "headers": headers,
        "multiValueHeaders": {},
        "body": body,
        "isBase64Encoded": base64,
        "cookies": [],
    })
    .to_string()
    .len()
}

/// A request as the gateway received it.
pub struct GatewayRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// The event API Gateway's HTTP API sends a Lambda integration (payload format 2.0).
pub fn gateway_event(
    request: &GatewayRequest,
    route: &HttpRoute,
    path_params: Vec<(String, String)>,
    authorizer: Context,
) -> Value {
    let mut headers: Context = serde_json::Map::new();
    for (name, value) in request.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_string(), Value::String(value));
            }
        }
    }
    // As API Gateway does: the scheme the client used (plain HTTP here).
    headers.insert("x-forwarded-proto".into(), Value::String("http".into()));
    let raw_query = request.query;
    let mut query: Context = serde_json::Map::new();
    for (k, v) in url::form_urlencoded::parse(raw_query.as_bytes()) {
        match query.get_mut(k.as_ref()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                query.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
    }
    let (body, is_base64) = match std::str::from_utf8(request.body) {
        Ok(text) => (text.to_string(), false),
        Err(_) => (STANDARD.encode(request.body), true),
    };
    let route_key = if route.path == DEFAULT_ROUTE {
        DEFAULT_ROUTE.to_string()
    } else {
        format!("{} {}", route.method, route.path)
    };
    let now = chrono::Utc::now();
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.path,
        "rawQueryString": raw_query,
        "headers": headers,
        "queryStringParameters": if query.is_empty() { Value::Null } else { Value::Object(query) },
        "pathParameters": if path_params.is_empty() { Value::Null } else {
            Value::Object(path_params.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
        },
        "requestContext": {
            "accountId": "local",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "domainPrefix": "local",
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": request.headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or(""),
            },
            "requestId": ulid::Ulid::new().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
            "authorizer": { "lambda": authorizer },
        },
        "body": if body.is_empty() { Value::Null } else { Value::String(body) },
        "isBase64Encoded": is_base64,
    })
}

fn to_hyper(response: lambda_http::Response<lambda_http::Body>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        lambda_http::Body::Empty => Bytes::new(),
        lambda_http::Body::Text(text) => Bytes::from(text),
        lambda_http::Body::Binary(data) => Bytes::from(data),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn status_of(timeout_ms: u64, integration_ms: u64, runs_ms: u64) -> u16 {
        let run = tokio::time::sleep(Duration::from_millis(runs_ms));
        match within_limits(
            "f",
            Duration::from_millis(timeout_ms),
            Duration::from_millis(integration_ms),
            run,
        )
        .await
        {
            Ok(()) => 200,
            Err(answer) => answer.status().as_u16(),
        }
    }

    #[tokio::test]
    async fn a_function_past_its_timeout_is_500_and_past_the_gateways_503() {
        assert_eq!(status_of(100, 300, 10).await, 200);
        // Lambda ends the invocation first: API Gateway answers 500.
        assert_eq!(status_of(50, 300, 200).await, 500);
        // A function allowed longer than the integration: the gateway gives up with 503.
        assert_eq!(status_of(500, 50, 200).await, 503);
    }

    #[test]
    fn a_response_is_measured_with_its_body_escaped_as_lambda_sends_it() {
        let body = "\"\"\"\"".repeat(100);
        let response = lambda_http::Response::builder()
            .status(200)
            .body(lambda_http::Body::Text(body.clone()))
            .unwrap();
        let size = invocation_response_size(&response);
        assert!(size >= 2 * body.len(), "{size}");
    }
}
