//! The API layer: the route registry (function name to handler and scope), the dispatch
//! every Lambda binary and the local server share, and the JSON responses.

pub mod error;
pub mod handlers;
pub mod limits;
pub mod pagination;
pub mod request;

use std::future::Future;
use std::pin::Pin;

use lambda_http::{Body, Request, Response};
use serde_json::Value;
use tracing::Instrument;

use crate::api::error::{ApiError, ApiResult};
use crate::domain::api_key::Scope;
use crate::queue::TaskQueue;
use crate::state::AppState;
use request::{AuthContext, Call};

/// A successful answer: a status and a JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// `Cache-Control: no-store`: the body carries a credential.
    pub no_store: bool,
}

impl Reply {
    fn new(status: u16, body: Value) -> Self {
        Reply {
            status,
            body,
            no_store: false,
        }
    }

    pub fn ok(body: Value) -> Self {
        Reply::new(200, body)
    }

    pub fn created(body: Value) -> Self {
        Reply::new(201, body)
    }

    pub fn accepted(body: Value) -> Self {
        Reply::new(202, body)
    }

    /// The same answer, never to be stored by a cache.
    pub fn no_store(self) -> Self {
        Reply {
            no_store: true,
            ..self
        }
    }
}

pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = ApiResult<Reply>> + Send + 'a>>;
pub type Handler = for<'a> fn(&'a AppState, Call) -> HandlerFuture<'a>;

/// One API route: the Lambda function (and binary) that serves it, the scope it needs and
/// its handler. The HTTP method and path come from template.yaml.
pub struct Route {
    pub function: &'static str,
    pub scope: Option<Scope>,
    pub handler: Handler,
}

macro_rules! route {
    ($function:literal, $scope:expr, $handler:path) => {
        Route {
            function: $function,
            scope: $scope,
            handler: |state, call| Box::pin($handler(state, call)),
        }
    };
}

/// The routes, one static each: a function's binary names its own route
/// (`serve_route(&routes::GET_ME)`), so it links that handler and no other (what one
/// handler alone needs, such as the JSON Schema validator, stays out of the rest).
pub mod routes {
    use super::Route;
    use super::handlers::{
        deliveries, event_types, events, me, portal_sessions, recover, replay, webhooks,
    };
    use crate::domain::api_key::Scope::*;

    pub static GET_ME: Route = route!("get_me", None, me::get_me);
    pub static LIST_EVENT_TYPES: Route = route!(
        "list_event_types",
        Some(WebhooksRead),
        event_types::list_event_types
    );
    pub static CREATE_EVENT_TYPE: Route = route!(
        "create_event_type",
        Some(EventTypesWrite),
        event_types::create_event_type
    );
    pub static DELETE_EVENT_TYPE: Route = route!(
        "delete_event_type",
        Some(EventTypesWrite),
        event_types::delete_event_type
    );
    pub static LIST_WEBHOOKS: Route =
        route!("list_webhooks", Some(WebhooksRead), webhooks::list_webhooks);
    pub static CREATE_WEBHOOK: Route = route!(
        "create_webhook",
        Some(WebhooksWrite),
        webhooks::create_webhook
    );
    pub static GET_WEBHOOK: Route =
        route!("get_webhook", Some(WebhooksRead), webhooks::get_webhook);
    pub static UPDATE_WEBHOOK: Route = route!(
        "update_webhook",
        Some(WebhooksWrite),
        webhooks::update_webhook
    );
    pub static DELETE_WEBHOOK: Route = route!(
        "delete_webhook",
        Some(WebhooksWrite),
        webhooks::delete_webhook
    );
    pub static PUT_WEBHOOK_AUTH: Route = route!(
        "put_webhook_auth",
        Some(WebhooksWrite),
        webhooks::put_webhook_auth
    );
    pub static DELETE_WEBHOOK_AUTH: Route = route!(
        "delete_webhook_auth",
        Some(WebhooksWrite),
        webhooks::delete_webhook_auth
    );
    pub static PAUSE_WEBHOOK: Route = route!(
        "pause_webhook",
        Some(WebhooksWrite),
        webhooks::pause_webhook
    );
    pub static UNPAUSE_WEBHOOK: Route = route!(
        "unpause_webhook",
        Some(WebhooksWrite),
        webhooks::unpause_webhook
    );
    pub static GET_WEBHOOK_SECRET: Route = route!(
        "get_webhook_secret",
        Some(WebhooksWrite),
        webhooks::get_webhook_secret
    );
    pub static ROTATE_WEBHOOK_SECRET: Route = route!(
        "rotate_webhook_secret",
        Some(WebhooksWrite),
        webhooks::rotate_webhook_secret
    );
    pub static RECOVER_WEBHOOK: Route = route!(
        "recover_webhook",
        Some(EventsWrite),
        recover::recover_webhook
    );
    pub static TEST_WEBHOOK: Route = route!(
        "test_webhook",
        Some(WebhooksWrite),
        deliveries::test_webhook
    );
    pub static PUBLISH_EVENT: Route =
        route!("publish_event", Some(EventsWrite), events::publish_event);
    pub static LIST_EVENTS: Route = route!("list_events", Some(EventsRead), events::list_events);
    pub static GET_EVENT: Route = route!("get_event", Some(EventsRead), events::get_event);
    pub static REPLAY_EVENT: Route =
        route!("replay_event", Some(EventsWrite), replay::replay_event);
    pub static LIST_DELIVERIES: Route = route!(
        "list_deliveries",
        Some(EventsRead),
        deliveries::list_deliveries
    );
    pub static GET_DELIVERY: Route =
        route!("get_delivery", Some(EventsRead), deliveries::get_delivery);
    pub static RETRY_DELIVERY: Route = route!(
        "retry_delivery",
        Some(EventsWrite),
        deliveries::retry_delivery
    );
    pub static CREATE_PORTAL_SESSION: Route = route!(
        "create_portal_session",
        Some(WebhooksWrite),
        portal_sessions::create_portal_session
    );
}

/// Every API route. A test checks this list, template.yaml and `functions/` agree.
pub static ROUTES: &[&Route] = &[
    &routes::GET_ME,
    &routes::LIST_EVENT_TYPES,
    &routes::CREATE_EVENT_TYPE,
    &routes::DELETE_EVENT_TYPE,
    &routes::LIST_WEBHOOKS,
    &routes::CREATE_WEBHOOK,
    &routes::GET_WEBHOOK,
    &routes::UPDATE_WEBHOOK,
    &routes::DELETE_WEBHOOK,
    &routes::PUT_WEBHOOK_AUTH,
    &routes::DELETE_WEBHOOK_AUTH,
    &routes::PAUSE_WEBHOOK,
    &routes::UNPAUSE_WEBHOOK,
    &routes::GET_WEBHOOK_SECRET,
    &routes::ROTATE_WEBHOOK_SECRET,
    &routes::RECOVER_WEBHOOK,
    &routes::TEST_WEBHOOK,
    &routes::PUBLISH_EVENT,
    &routes::LIST_EVENTS,
    &routes::GET_EVENT,
    &routes::REPLAY_EVENT,
    &routes::LIST_DELIVERIES,
    &routes::GET_DELIVERY,
    &routes::RETRY_DELIVERY,
    &routes::CREATE_PORTAL_SESSION,
];

pub type PublicFuture<'a> = Pin<Box<dyn Future<Output = Response<Body>> + Send + 'a>>;
pub type PublicHandler = for<'a> fn(&'a AppState, Request) -> PublicFuture<'a>;

/// A route outside the authorizer (`Auth: Authorizer: NONE` in template.yaml): its handler
/// reads the whole request and answers in its own shape (the OAuth2 token endpoint answers
/// RFC 6749's errors, not the API's).
pub struct PublicRoute {
    pub function: &'static str,
    pub handler: PublicHandler,
}

/// The public routes, one static each, as [`routes`].
pub mod public_routes {
    use super::PublicRoute;
    use super::handlers::oauth;

    pub static ISSUE_TOKEN: PublicRoute = PublicRoute {
        function: "issue_token",
        handler: |state, req| Box::pin(oauth::issue_token(state, req)),
    };
    pub static GET_JWKS: PublicRoute = PublicRoute {
        function: "get_jwks",
        handler: |state, req| Box::pin(oauth::get_jwks(state, req)),
    };
}

/// Every public route. The same test as for [`ROUTES`] checks these.
pub static PUBLIC_ROUTES: &[&PublicRoute] =
    &[&public_routes::ISSUE_TOKEN, &public_routes::GET_JWKS];

/// The public route served by a function, by name.
pub fn public_route(function: &str) -> Option<&'static PublicRoute> {
    PUBLIC_ROUTES
        .iter()
        .copied()
        .find(|r| r.function == function)
}

/// Serves one request on a public route, its log lines in a span naming the route.
pub async fn dispatch_public(
    state: &AppState,
    route: &PublicRoute,
    req: Request,
) -> Response<Body> {
    let span = tracing::info_span!("request", route = route.function);
    (route.handler)(state, req).instrument(span).await
}

/// A route that needs no state at all (the portal's page and script, the `$default`
/// route's 404): its binary links neither storage nor KMS.
pub struct AssetRoute {
    pub function: &'static str,
    pub handler: fn(&Request) -> Response<Body>,
}

/// The asset routes, one static each, as [`routes`].
pub mod asset_routes {
    use super::AssetRoute;

    pub static PORTAL: AssetRoute = AssetRoute {
        function: "portal",
        handler: crate::portal_files::serve,
    };

    /// The `$default` route: whatever no other route matches is a 404 in the API's error
    /// shape (instead of API Gateway's own `{"message":"Not Found"}`).
    pub static NOT_FOUND: AssetRoute = AssetRoute {
        function: "not_found",
        handler: |_| super::not_found(),
    };
}

/// Every asset route. The same test as for [`ROUTES`] checks these.
pub static ASSET_ROUTES: &[&AssetRoute] = &[&asset_routes::PORTAL, &asset_routes::NOT_FOUND];

/// The answer to a request no route matches.
pub fn not_found() -> Response<Body> {
    error_response(&ApiError::new(
        crate::api::error::ErrorCode::NotFound,
        "no such route",
    ))
}

/// The asset route served by a function, by name.
pub fn asset_route(function: &str) -> Option<&'static AssetRoute> {
    ASSET_ROUTES
        .iter()
        .copied()
        .find(|r| r.function == function)
}

/// Serves one request on an asset route, its log lines in a span naming the route.
pub fn dispatch_asset(route: &AssetRoute, req: &Request) -> Response<Body> {
    let _span = tracing::info_span!("request", route = route.function).entered();
    (route.handler)(req)
}

/// Routes whose function holds no storage permission at all (permissions.yaml): when the
/// authorizer deferred the key's check, they cannot make it and answer 503.
pub const WITHOUT_STORAGE: &[&str] = &["get_me"];

/// The route served by a function, by name.
pub fn route(function: &str) -> Option<&'static Route> {
    ROUTES.iter().copied().find(|r| r.function == function)
}

/// Serves one request on `route`: authentication (401), scope (403), the handler, and the
/// error shape. Never panics on input and never shows an internal error to the client.
/// Every log line of the request is written in a span naming its route and tenant.
pub async fn dispatch(state: &AppState, route: &Route, req: Request) -> Response<Body> {
    let span = tracing::info_span!(
        "request",
        route = route.function,
        tenant_id = tracing::field::Empty
    );
    let work = async {
        let result = async {
            let auth = if AuthContext::deferred(&req) && WITHOUT_STORAGE.contains(&route.function) {
                // Storage is down and this route may not read it: the caller retries.
                return Err(ApiError::unavailable());
            } else if AuthContext::deferred(&req) {
                // The authorizer could not read storage: check the key here, and answer
                // 503 with Retry-After (never a denial) while storage is still down.
                let header = request::authorization(&req);
                let context = crate::auth::authorize(&*state.store, &state.tokens, header).await?;
                AuthContext::from_context(&context)
                    .map_err(|_| ApiError::unauthorized_for(header))?
            } else {
                AuthContext::from_request(&req)?
            };
            tracing::Span::current().record("tenant_id", auth.tenant_id.as_str());
            limits::admit(state, &auth.tenant_id).await?;
            if let Some(scope) = route.scope {
                auth.require(scope)?;
            }
            (route.handler)(state, Call { auth, req }).await
        }
        .await;
        match result {
            Ok(reply) => {
                let mut response = json_response(reply.status, &reply.body, None);
                if reply.no_store {
                    response.headers_mut().insert(
                        "cache-control",
                        lambda_http::http::HeaderValue::from_static("no-store"),
                    );
                }
                response
            }
            Err(error) => error_response(&error),
        }
    };
    work.instrument(span).await
}

/// The queues, or a 500 where a deployment forgot them (logged by `AppState::queues`).
pub fn queues(state: &AppState) -> ApiResult<&dyn TaskQueue> {
    state.queues().ok_or_else(ApiError::internal)
}

/// The response for an error, with `Retry-After` where the code carries it.
pub fn error_response(error: &ApiError) -> Response<Body> {
    if error.status() >= 500 {
        tracing::warn!(code = error.code.as_str(), "request failed");
    }
    json_response(error.status(), &error.body(), error.retry_after())
}

pub fn json_response(status: u16, body: &Value, retry_after: Option<u64>) -> Response<Body> {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(seconds) = retry_after {
        builder = builder.header("retry-after", seconds.to_string());
    }
    builder
        .body(Body::Text(body.to_string()))
        .expect("a status and static headers are always valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Mode};
    use serde_json::json;

    /// A state whose storage is never reached by these tests (nothing listens there).
    async fn state() -> AppState {
        let config = Config::from_vars(Mode::Local, |k| {
            (k == "AWS_ENDPOINT_URL").then(|| "http://127.0.0.1:9".to_string())
        })
        .unwrap();
        AppState::new(config).await
    }

    /// The API Gateway event a route receives, with the authorizer's context.
    fn request(method: &str, path: &str, context: Value, body: Option<&str>) -> Request {
        let event = json!({
            "version": "2.0",
            "routeKey": format!("{method} {path}"),
            "rawPath": path,
            "rawQueryString": "",
            "headers": {"content-type": "application/json"},
            "requestContext": {
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
                "authorizer": {"lambda": context},
                "requestId": "r", "routeKey": format!("{method} {path}"), "stage": "$default",
                "accountId": "a", "apiId": "b", "domainName": "c", "domainPrefix": "d",
                "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 0
            },
            "body": body,
            "isBase64Encoded": false
        });
        lambda_http::request::from_str(&event.to_string()).unwrap()
    }

    fn body_of(response: &Response<Body>) -> Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    fn caller(scopes: &str) -> Value {
        json!({"tenant_id": "acme", "key_id": "key_1", "scopes": scopes})
    }

    #[tokio::test]
    async fn a_request_without_the_authorizers_tenant_is_401() {
        let state = state().await;
        let route = route("get_me").unwrap();
        let response = dispatch(&state, route, request("GET", "/v1/me", json!({}), None)).await;
        assert_eq!(response.status(), 401);
        assert_eq!(body_of(&response)["error"]["code"], "UNAUTHORIZED");
    }

    #[tokio::test]
    async fn get_me_answers_from_the_authorizers_context() {
        let state = state().await;
        let route = route("get_me").unwrap();
        let req = request("GET", "/v1/me", caller("webhooks:read events:write"), None);
        let response = dispatch(&state, route, req).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(
            body_of(&response),
            json!({"tenant_id": "acme", "key_id": "key_1", "scopes": ["webhooks:read", "events:write"]})
        );
    }

    #[tokio::test]
    async fn a_tokens_context_past_its_expiry_is_401_even_from_the_gateways_cache() {
        let state = state().await;
        let route = route("get_me").unwrap();
        let now = chrono::Utc::now().timestamp();
        for (expires_at, status) in [
            (json!(now + 60), 200),
            (json!(now - 1), 401),
            (json!((now + 60).to_string()), 200),
            (json!("soon"), 401),
        ] {
            let mut context = caller("webhooks:read");
            context["expires_at"] = expires_at.clone();
            let response = dispatch(&state, route, request("GET", "/v1/me", context, None)).await;
            assert_eq!(response.status(), status, "{expires_at}");
        }
    }

    #[tokio::test]
    async fn a_missing_scope_is_403_before_the_handler_runs() {
        let state = state().await;
        let route = route("create_webhook").unwrap();
        let req = request("POST", "/v1/webhooks", caller("webhooks:read"), Some("{}"));
        let response = dispatch(&state, route, req).await;
        assert_eq!(response.status(), 403);
        assert_eq!(body_of(&response)["error"]["code"], "FORBIDDEN");
    }

    #[tokio::test]
    async fn bad_bodies_are_refused_before_storage_is_touched() {
        let state = state().await;
        let route = route("create_event_type").unwrap();
        let big = format!("{{\"name\": \"{}\"}}", "x".repeat(201 * 1024));
        for (body, status, code) in [
            ("{not json", 400, "INVALID_REQUEST"),
            ("[1]", 400, "INVALID_REQUEST"),
            (big.as_str(), 413, "PAYLOAD_TOO_LARGE"),
        ] {
            let req = request(
                "POST",
                "/v1/event-types",
                caller("event-types:write"),
                Some(body),
            );
            let response = dispatch(&state, route, req).await;
            assert_eq!(response.status(), status);
            assert_eq!(body_of(&response)["error"]["code"], code);
        }
    }

    #[tokio::test]
    async fn storage_that_cannot_be_reached_is_a_503_with_retry_after() {
        let state = state().await;
        let route = route("list_webhooks").unwrap();
        let req = request("GET", "/v1/webhooks", caller("webhooks:read"), None);
        let response = dispatch(&state, route, req).await;
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "2");
        assert_eq!(body_of(&response)["error"]["code"], "UNAVAILABLE");
    }

    #[tokio::test]
    async fn a_deferred_check_is_503_with_retry_after_while_storage_is_down_then_passes() {
        use crate::domain::api_key::generate_key;
        use crate::storage::KeyStore;
        use crate::storage::memory::MemoryStore;
        use std::sync::Arc;
        let memory = Arc::new(MemoryStore::new());
        let (key, record) = generate_key("acme", vec![Scope::WebhooksRead]);
        memory.put_api_key(&record).await.unwrap();
        let mut state = state().await;
        state.store = memory.clone();
        let route = route("list_webhooks").unwrap();
        let deferred = || {
            let mut req = request("GET", "/v1/webhooks", json!({"auth_deferred": true}), None);
            req.headers_mut()
                .insert("authorization", format!("Bearer {key}").parse().unwrap());
            req
        };
        memory.fail_next(1);
        let down = dispatch(&state, route, deferred()).await;
        assert_eq!(down.status(), 503);
        assert_eq!(down.headers()["retry-after"], "2");
        assert_eq!(body_of(&down)["error"]["code"], "UNAVAILABLE");
        let up = dispatch(&state, route, deferred()).await;
        assert_eq!(up.status(), 200);
        assert_eq!(body_of(&up)["data"], json!([]));
        // get_me may not read storage: a deferred check there is a 503 to retry.
        let me = dispatch(&state, super::route("get_me").unwrap(), deferred()).await;
        assert_eq!(me.status(), 503);
        let mut unknown = request("GET", "/v1/webhooks", json!({"auth_deferred": true}), None);
        unknown
            .headers_mut()
            .insert("authorization", "Bearer whk_nope".parse().unwrap());
        assert_eq!(dispatch(&state, route, unknown).await.status(), 401);
    }

    #[test]
    fn every_function_is_registered_once() {
        let mut names: Vec<_> = ROUTES
            .iter()
            .map(|r| r.function)
            .chain(PUBLIC_ROUTES.iter().map(|r| r.function))
            .chain(ASSET_ROUTES.iter().map(|r| r.function))
            .collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before);
        assert!(route("get_me").is_some());
        assert!(route("nope").is_none());
        assert!(public_route("issue_token").is_some());
        assert!(public_route("get_me").is_none());
        assert!(asset_route("portal").is_some());
        assert!(asset_route("issue_token").is_none());
    }
}
