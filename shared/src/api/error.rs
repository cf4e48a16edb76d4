//! The one API error type: a code from the spec's table, its HTTP status, and the JSON shape
//! `{"error": {"code", "message", "field"}}`.

use serde::Serialize;
use serde_json::json;

use crate::domain::invalid::{Invalid, Rule};
use crate::secrets::KeyError;
use crate::storage::StoreError;

/// Every error code the API answers with (SPEC §3, Errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    WebhookNotFound,
    EventNotFound,
    DeliveryNotFound,
    EventTypeNotFound,
    NotFound,
    DuplicateUrl,
    Conflict,
    PayloadTooLarge,
    InvalidUrl,
    InvalidUrlIsNotUsingHttps,
    InvalidSubscription,
    UnknownEventType,
    InvalidSecret,
    TooManyWebhooksRegistered,
    TlsValidationFailed,
    LimitExceeded,
    InvalidFilter,
    InvalidHeaders,
    InvalidSchema,
    SchemaValidationFailed,
    RateLimited,
    Unavailable,
    InternalError,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidRequest => 400,
            Unauthorized => 401,
            Forbidden => 403,
            WebhookNotFound | EventNotFound | DeliveryNotFound | EventTypeNotFound | NotFound => {
                404
            }
            DuplicateUrl | Conflict => 409,
            PayloadTooLarge => 413,
            InvalidUrl
            | InvalidUrlIsNotUsingHttps
            | InvalidSubscription
            | UnknownEventType
            | InvalidSecret
            | TooManyWebhooksRegistered
            | TlsValidationFailed
            | LimitExceeded
            | InvalidFilter
            | InvalidHeaders
            | InvalidSchema
            | SchemaValidationFailed => 422,
            RateLimited => 429,
            Unavailable => 503,
            InternalError => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "INVALID_REQUEST",
            Unauthorized => "UNAUTHORIZED",
            Forbidden => "FORBIDDEN",
            WebhookNotFound => "WEBHOOK_NOT_FOUND",
            EventNotFound => "EVENT_NOT_FOUND",
            DeliveryNotFound => "DELIVERY_NOT_FOUND",
            EventTypeNotFound => "EVENT_TYPE_NOT_FOUND",
            NotFound => "NOT_FOUND",
            DuplicateUrl => "DUPLICATE_URL",
            Conflict => "CONFLICT",
            PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            InvalidUrl => "INVALID_URL",
            InvalidUrlIsNotUsingHttps => "INVALID_URL_IS_NOT_USING_HTTPS",
            InvalidSubscription => "INVALID_SUBSCRIPTION",
            UnknownEventType => "UNKNOWN_EVENT_TYPE",
            InvalidSecret => "INVALID_SECRET",
            TooManyWebhooksRegistered => "TOO_MANY_WEBHOOKS_REGISTERED",
            TlsValidationFailed => "TLS_VALIDATION_FAILED",
            LimitExceeded => "LIMIT_EXCEEDED",
            InvalidFilter => "INVALID_FILTER",
            InvalidHeaders => "INVALID_HEADERS",
            InvalidSchema => "INVALID_SCHEMA",
            SchemaValidationFailed => "SCHEMA_VALIDATION_FAILED",
            RateLimited => "RATE_LIMITED",
            Unavailable => "UNAVAILABLE",
            InternalError => "INTERNAL_ERROR",
        }
    }
}

/// Seconds a client should wait after a 429 or 503.
pub const RETRY_AFTER_SECONDS: u64 = 2;

/// An error answered to an API client. The message is written for the client: internal
/// details are logged where they happen, never put here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    /// `Retry-After` seconds, when not the code's own.
    retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// Says when to come back (`Retry-After`).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Names the request field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message).with_field(field)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "a valid API key is required: Authorization: Bearer <key>",
        )
    }

    /// 401 naming the credential the caller sent (`authorization`, the header), or asking
    /// for one.
    pub fn unauthorized_for(authorization: Option<&str>) -> Self {
        let message = match crate::auth::bearer_key(authorization) {
            None => {
                "a valid API key or access token is required: Authorization: Bearer <credential>"
            }
            Some(credential) if crate::tokens::looks_like_token(credential) => {
                "this access token or portal session is not valid: malformed, expired or not issued by this service"
            }
            Some(_) => "this API key is not valid: unknown or revoked",
        };
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// 403: the caller's `credential` ("API key", "access token", "portal session") lacks
    /// `scope`.
    pub fn forbidden(credential: &str, scope: &str) -> Self {
        Self::new(
            ErrorCode::Forbidden,
            format!("this {credential} lacks the {scope} scope"),
        )
    }

    pub fn webhook_not_found() -> Self {
        Self::new(ErrorCode::WebhookNotFound, "no such webhook")
    }

    pub fn unavailable() -> Self {
        Self::new(
            ErrorCode::Unavailable,
            "the service is busy; retry after the time in Retry-After",
        )
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::InternalError, "internal error")
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// `Retry-After` seconds for the codes that carry it.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after.or_else(|| {
            matches!(self.code, ErrorCode::Unavailable | ErrorCode::RateLimited)
                .then_some(RETRY_AFTER_SECONDS)
        })
    }

    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({"code": self.code.as_str(), "message": self.message});
        if let Some(field) = &self.field {
            error["field"] = json!(field);
        }
        json!({ "error": error })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<Invalid> for ApiError {
    /// Each rule of the domain has its code in the spec's table.
    fn from(invalid: Invalid) -> ApiError {
        let code = match invalid.rule {
            Rule::Malformed => ErrorCode::InvalidRequest,
            Rule::TooLarge => ErrorCode::PayloadTooLarge,
            Rule::Url => ErrorCode::InvalidUrl,
            Rule::UrlNotHttps => ErrorCode::InvalidUrlIsNotUsingHttps,
            Rule::Subscription => ErrorCode::InvalidSubscription,
            Rule::Secret => ErrorCode::InvalidSecret,
            Rule::Limit => ErrorCode::LimitExceeded,
            Rule::Filter => ErrorCode::InvalidFilter,
            Rule::Headers => ErrorCode::InvalidHeaders,
            Rule::Schema => ErrorCode::InvalidSchema,
        };
        ApiError {
            code,
            message: invalid.message,
            field: invalid.field,
            retry_after: None,
        }
    }
}

impl From<KeyError> for ApiError {
    /// A key service that cannot answer is a 503 to retry; a value that does not open is a
    /// 500. Both are logged here, never shown.
    fn from(err: KeyError) -> ApiError {
        match err {
            KeyError::Unavailable(why) => {
                tracing::warn!(reason = %why, "keys unavailable; answering 503");
                ApiError::unavailable()
            }
            other => {
                tracing::error!(error = %other, "keys: a sealed value did not open, or KMS refused");
                ApiError::internal()
            }
        }
    }
}

impl From<StoreError> for ApiError {
    /// Storage trouble never reaches the client in detail: throttling is a 503 to retry,
    /// anything else a 500, and both are logged here.
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::Unavailable(why) => {
                tracing::warn!(reason = %why, "storage throttled; answering 503");
                ApiError::unavailable()
            }
            other => {
                tracing::error!(error = %other, "storage error");
                ApiError::internal()
            }
        }
    }
}

impl From<crate::auth::Unchecked> for ApiError {
    fn from(e: crate::auth::Unchecked) -> ApiError {
        match e {
            crate::auth::Unchecked::Store(e) => e.into(),
            crate::auth::Unchecked::Keys(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_the_spec_spells_them() {
        for code in [
            ErrorCode::InvalidUrlIsNotUsingHttps,
            ErrorCode::TooManyWebhooksRegistered,
            ErrorCode::EventTypeNotFound,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        }
    }

    #[test]
    fn body_names_the_field_only_when_one_is_at_fault() {
        let e = ApiError::invalid_field("url", "url is required");
        assert_eq!(
            e.body(),
            json!({"error": {"code": "INVALID_REQUEST", "message": "url is required", "field": "url"}})
        );
        assert_eq!(e.status(), 400);
        assert!(
            ApiError::unauthorized().body()["error"]
                .get("field")
                .is_none()
        );
    }

    #[test]
    fn domain_rules_map_to_the_specs_codes() {
        let e = ApiError::from(Invalid::new(Rule::UrlNotHttps, "url", "url must use https"));
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::InvalidUrlIsNotUsingHttps, Some("url"))
        );
        assert_eq!(ApiError::from(Invalid::field("data", "no")).status(), 400);
        assert_eq!(
            ApiError::from(Invalid::new(Rule::TooLarge, "data", "big")).status(),
            413
        );
    }

    #[test]
    fn throttling_becomes_503_and_other_errors_500() {
        assert_eq!(
            ApiError::from(StoreError::Unavailable("x".into())).status(),
            503
        );
        assert_eq!(ApiError::from(StoreError::Other("x".into())).status(), 500);
    }

    #[test]
    fn only_throttling_codes_carry_retry_after() {
        assert_eq!(ApiError::unavailable().status(), 503);
        assert_eq!(
            ApiError::unavailable().retry_after(),
            Some(RETRY_AFTER_SECONDS)
        );
        assert_eq!(ApiError::internal().retry_after(), None);
    }
}
