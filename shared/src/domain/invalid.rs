//! The domain's own error: a value that breaks one of the spec's rules. The API layer maps
//! each rule to its error code (`api::error`); nothing here knows about HTTP.

/// Which rule a value broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Wrong shape or type, missing, or out of range: a plain bad request.
    Malformed,
    /// Larger than the spec allows (200 KiB of event data).
    TooLarge,
    /// Not a URL the service may deliver to.
    Url,
    /// An `http://` URL where only `https://` is allowed.
    UrlNotHttps,
    /// A malformed subscription, or one naming types outside the catalogue.
    Subscription,
    /// A signing secret that is not `whsec_` plus base64 of 24 to 64 bytes.
    Secret,
    /// Past a per-tenant limit (the message names it).
    Limit,
    /// A webhook's content filter that is not one (the field names the path at fault).
    Filter,
    /// A custom header the spec refuses (the field names the header).
    Headers,
    /// An event type's schema that is not a JSON Schema (draft 2020-12).
    Schema,
}

/// A value that breaks `rule`, with a message for the client and the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub rule: Rule,
    pub message: String,
    pub field: Option<String>,
}

impl Invalid {
    pub fn new(rule: Rule, field: &str, message: impl Into<String>) -> Self {
        Invalid {
            rule,
            message: message.into(),
            field: Some(field.to_string()),
        }
    }

    /// A value of `field` past a per-tenant limit, named in `message`.
    pub fn limit(field: &str, message: impl Into<String>) -> Self {
        Self::new(Rule::Limit, field, message)
    }

    /// A malformed value of `field`.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::new(Rule::Malformed, field, message)
    }
}

pub type Checked<T> = Result<T, Invalid>;
