//! Reading a request: the authorizer's context, path and query parameters, and JSON bodies
//! whose every field is checked by name, so errors can say which field is at fault.
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use serde_json::{Map, Value};

use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::auth::AuthorizerContext;
use crate::domain::api_key::Scope;

/// Largest request body accepted (SPEC: 200 KiB).
pub const MAX_BODY_BYTES: usize = 200 * 1024;

/// Who is calling: the tenant and key the authorizer found, and the key's scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthContext {
    pub tenant_id: String,
    pub key_id: String,
    pub scopes: Vec<Scope>,
    /// When the credential expires (Unix seconds): access tokens and portal sessions;
    /// `None` for API keys.
    pub expires_at: Option<i64>,
}

impl AuthContext {
    /// Reads the authorizer's context from the request; 401 (naming the credential sent)
    /// when it found no valid one.
    pub fn from_request(req: &Request) -> ApiResult<Self> {
        Self::from_context(&authorizer_context(req))
            .map_err(|_| ApiError::unauthorized_for(authorization(req)))
    }

    /// What the caller authenticated with, as its messages name it.
    pub fn credential(&self) -> &'static str {
        if crate::ids::is_portal_session(&self.key_id) {
            "portal session"
        } else if self.expires_at.is_some() {
            "access token"
        } else {
            "API key"
        }
    }

    /// The caller an authorizer context names: its tenant, key id and scopes, and an
    /// expiry still to come; 401 when it names none.
    pub fn from_context(context: &AuthorizerContext) -> ApiResult<Self> {
        let present = |value: &Option<String>| value.clone().filter(|s| !s.is_empty());
        let expires_at = match context.expires_at {
            Some(exp) if exp <= chrono::Utc::now().timestamp() => {
                return Err(ApiError::unauthorized());
            }
            expires_at => expires_at,
        };
        match (present(&context.tenant_id), present(&context.key_id)) {
            (Some(tenant_id), Some(key_id)) => Ok(AuthContext {
                tenant_id,
                key_id,
                scopes: Scope::parse_list(context.scopes.as_deref().unwrap_or_default())
                    .map_err(|_| ApiError::unauthorized())?,
                expires_at,
            }),
            _ => Err(ApiError::unauthorized()),
        }
    }

    /// Whether the authorizer deferred the key's check to the route (storage was down).
    pub fn deferred(req: &Request) -> bool {
        authorizer_context(req).deferred
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// 403 unless the credential carries `scope`.
    pub fn require(&self, scope: Scope) -> ApiResult<()> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(self.credential(), scope.as_str()))
        }
    }
}

/// The request's `Authorization` header.
pub fn authorization(req: &Request) -> Option<&str> {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
}

/// What the authorizer handed this request (nothing, outside API Gateway).
fn authorizer_context(req: &Request) -> AuthorizerContext {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .map(|a| AuthorizerContext::from_fields(&a.fields))
            .unwrap_or_default(),
        _ => AuthorizerContext::default(),
    }
}

/// A route's request, with the caller already authenticated.
pub struct Call {
    pub auth: AuthContext,
    pub req: Request,
}

impl Call {
    pub fn tenant(&self) -> &str {
        &self.auth.tenant_id
    }

    /// A path parameter named in the route (`{id}`), or 404 when absent.
    pub fn path(&self, name: &str) -> ApiResult<String> {
        self.req
            .path_parameters_ref()
            .and_then(|p| p.first(name))
            .map(str::to_string)
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such resource"))
    }

    /// A query parameter, if given.
    pub fn query(&self, name: &str) -> Option<String> {
        self.req
            .query_string_parameters_ref()
            .and_then(|q| q.first(name))
            .map(str::to_string)
    }

    /// A boolean query parameter: `true` or `false`, anything else is a 400.
    pub fn query_bool(&self, name: &str) -> ApiResult<bool> {
        match self.query(name).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(ApiError::invalid_field(
                name,
                format!("{name} must be true or false"),
            )),
        }
    }

    /// `show_authentication=true` reveals passwords, which takes `webhooks:write`.
    pub fn show_authentication(&self) -> ApiResult<bool> {
        let show = self.query_bool("show_authentication")?;
        if show {
            self.auth.require(Scope::WebhooksWrite)?;
        }
        Ok(show)
    }

    /// The body as a JSON object; 413 past 200 KiB, 400 for anything but an object.
    pub fn body(&self) -> ApiResult<JsonObject> {
        let bytes: &[u8] = self.req.body().as_ref();
        if bytes.len() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                "the request body is larger than 200 KiB",
            ));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid_request("a JSON object body is required"));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(ApiError::invalid_request("the body must be a JSON object")),
            Err(e) => Err(ApiError::invalid_request(format!("malformed JSON: {e}"))),
        }
    }

    /// Like [`Call::body`], but an empty body is an empty object (optional bodies).
    pub fn optional_body(&self) -> ApiResult<JsonObject> {
        let bytes: &[u8] = self.req.body().as_ref();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            Ok(JsonObject(Map::new()))
        } else {
            self.body()
        }
    }
}

/// A JSON object read field by field. Each `take_*` removes the field, so [`JsonObject::finish`]
/// can refuse fields the route does not know (a typo never passes silently).
pub struct JsonObject(Map<String, Value>);

fn wrong_type(field: &str, expected: &str) -> ApiError {
    ApiError::invalid_field(field, format!("{field} must be {expected}"))
}

impl JsonObject {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A field that may be absent or null (both read as absent).
    pub fn take(&mut self, field: &str) -> Option<Value> {
        self.0.remove(field).filter(|v| !v.is_null())
    }

    /// Whether the field is present, even as null (PATCH uses null to clear).
    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    /// A field an update may set or clear: absent (`None`), null (`Some(None)`), or a value
    /// checked by `parse` (`Some(Some(_))`).
    pub fn take_nullable<T>(
        &mut self,
        field: &str,
        parse: impl FnOnce(Value) -> crate::domain::invalid::Checked<T>,
    ) -> ApiResult<Option<Option<T>>> {
        match self.0.remove(field) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(value) => Ok(Some(Some(parse(value)?))),
        }
    }

    pub fn take_string(&mut self, field: &str) -> ApiResult<Option<String>> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(wrong_type(field, "a string")),
        }
    }

    pub fn require_string(&mut self, field: &str) -> ApiResult<String> {
        self.take_string(field)?
            .ok_or_else(|| ApiError::invalid_field(field, format!("{field} is required")))
    }

    pub fn take_bool(&mut self, field: &str) -> ApiResult<Option<bool>> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(wrong_type(field, "true or false")),
        }
    }

    pub fn take_object(&mut self, field: &str) -> ApiResult<Option<JsonObject>> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(JsonObject(map))),
            Some(_) => Err(wrong_type(field, "an object")),
        }
    }

    /// A list of strings, or a single string read as a one-element list.
    pub fn take_string_list(&mut self, field: &str) -> ApiResult<Option<Vec<String>>> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(vec![s])),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(wrong_type(field, "a string or a list of strings")),
                })
                .collect::<ApiResult<Vec<_>>>()
                .map(Some),
            Some(_) => Err(wrong_type(field, "a string or a list of strings")),
        }
    }

    /// Refuses, before anything is read, a field not in `known`: a typo (`event` for
    /// `events`) is named as unknown, not reported as the required field it misses.
    /// `context` prefixes nested field names.
    pub fn allow(&self, known: &[&str], context: &str) -> ApiResult<()> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(unknown) => Err(unknown_field(context, unknown)),
        }
    }

    /// Refuses whatever fields are left; `context` prefixes nested field names.
    pub fn finish(self, context: &str) -> ApiResult<()> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(unknown) => Err(unknown_field(context, unknown)),
        }
    }
}

fn unknown_field(context: &str, name: &str) -> ApiError {
    let field = if context.is_empty() {
        name.to_string()
    } else {
        format!("{context}.{name}")
    };
    ApiError::invalid_field(&field, format!("unknown field {field}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> JsonObject {
        JsonObject(value.as_object().cloned().unwrap())
    }

    #[test]
    fn fields_are_typed_and_named_in_errors() {
        let mut body = object(json!({"url": 5, "name": "n", "events": "a.b", "x": null}));
        let e = body.require_string("url").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("url"));
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert_eq!(body.take_string("name").unwrap(), Some("n".into()));
        assert_eq!(
            body.take_string_list("events").unwrap(),
            Some(vec!["a.b".into()])
        );
        assert_eq!(body.take_string("x").unwrap(), None);
        assert!(body.finish("").is_ok());
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let body = object(json!({"nmae": "typo"}));
        assert_eq!(body.finish("").unwrap_err().field.as_deref(), Some("nmae"));
        let body = object(json!({"extra": 1}));
        assert_eq!(
            body.finish("auth").unwrap_err().field.as_deref(),
            Some("auth.extra")
        );
    }

    #[test]
    fn lists_must_hold_only_strings() {
        let mut body = object(json!({"events": ["a", 1]}));
        assert!(body.take_string_list("events").is_err());
        let mut body = object(json!({"events": {"a": 1}}));
        assert!(body.take_string_list("events").is_err());
    }
}
