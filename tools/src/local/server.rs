//! The local API server: routes from template.yaml, the authorizer in front, and each
//! request turned into the API Gateway (HTTP API, payload 2.0) event Lambda would receive,
//! then handed to the same handler the Lambda binary runs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::template::{HttpRoute, Template, match_path};
use shared::api::error::{ApiError, ErrorCode};
use shared::api::{self, AssetRoute, PublicRoute, Route, error_response};
use shared::state::AppState;

/// Lambda's limit on a synchronous invocation's payload, request and response alike.
const MAX_LAMBDA_PAYLOAD: usize = 6 * 1024 * 1024;

/// What serves a template route: a handler behind the authorizer, or a public one.
#[derive(Clone, Copy)]
enum Door {
    Authorized(&'static Route),
    Public(&'static PublicRoute),
    Asset(&'static AssetRoute),
}

/// The routes of the template, each joined to its registered handler.
pub struct LocalApi {
    state: Arc<AppState>,
    routes: Vec<(HttpRoute, Door)>,
}

impl LocalApi {
    /// Joins the template's routes to the handler registry; an error names any route whose
    /// function has no handler.
    pub fn new(state: Arc<AppState>, template: &Template) -> Result<Self, String> {
        let routes = template
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
        Ok(LocalApi { state, routes })
    }

    pub fn state(&self) -> &AppState {
        &self.state
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
                            async move { Ok::<_, Infallible>(api.handle(req).await) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        }
    }

    async fn handle(&self, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_LAMBDA_PAYLOAD).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return to_hyper(error_response(&ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "the request body is larger than 200 KiB",
                )));
            }
        };
        let path = parts.uri.path();
        let found = self.routes.iter().find_map(|(r, door)| {
            (r.method == parts.method.as_str())
                .then(|| match_path(&r.path, path))
                .flatten()
                .map(|params| (r, *door, params))
        });
        let Some((route, door, params)) = found else {
            return to_hyper(error_response(&ApiError::new(
                ErrorCode::NotFound,
                "no such route",
            )));
        };
        let authorization = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        // The authorizer as Lambda runs it, in front of every route but the public ones: a
        // storage or key failure defers the check to the route.
        let context = match door {
            Door::Authorized(_) => {
                shared::auth::authorizer_context(
                    &*self.state.store,
                    &self.state.tokens,
                    authorization,
                )
                .await
            }
            Door::Public(_) | Door::Asset(_) => HashMap::new(),
        };
        let event = gateway_event(&parts, &body, route, params, context);
        let request = match lambda_http::request::from_str(&event.to_string()) {
            Ok(request) => request,
            Err(e) => {
                tracing::error!(error = %e, "building the API Gateway event");
                return to_hyper(error_response(&ApiError::internal()));
            }
        };
        let response = match door {
            Door::Authorized(handler) => api::dispatch(&self.state, handler, request).await,
            Door::Public(handler) => api::dispatch_public(&self.state, handler, request).await,
            Door::Asset(handler) => api::dispatch_asset(handler, &request),
        };
        let size = match response.body() {
            lambda_http::Body::Text(text) => text.len(),
            lambda_http::Body::Binary(data) => data.len(),
            _ => 0,
        };
        if size > MAX_LAMBDA_PAYLOAD {
            // What Lambda does with a response past its limit: the invocation fails and API
            // Gateway answers 500.
            tracing::error!(size, route = %route.function, "response larger than Lambda's 6 MB limit");
            return to_hyper(error_response(&ApiError::internal()));
        }
        to_hyper(response)
    }
}

/// The event API Gateway's HTTP API sends a Lambda integration (payload format 2.0).
fn gateway_event(
    parts: &http::request::Parts,
    body: &Bytes,
    route: &HttpRoute,
    path_params: Vec<(String, String)>,
    authorizer: HashMap<String, Value>,
) -> Value {
    let mut headers: serde_json::Map<String, Value> = serde_json::Map::new();
    for (name, value) in &parts.headers {
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
    let raw_query = parts.uri.query().unwrap_or("");
    let mut query: serde_json::Map<String, Value> = serde_json::Map::new();
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
    let (body, is_base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_string(), false),
        Err(_) => (STANDARD.encode(body), true),
    };
    let route_key = format!("{} {}", route.method, route.path);
    let now = chrono::Utc::now();
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": parts.uri.path(),
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
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": parts.headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or(""),
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
