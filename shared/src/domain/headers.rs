//! A webhook's custom headers (SPEC §3, `headers`): extra HTTP headers sent with every
//! delivery. The `authorization` header's value is a credential: kept apart from the
//! others, sealed at rest like a Basic password, and shown only with
//! `show_authentication=true` (masked otherwise).

use serde_json::{Map, Value};

use super::invalid::{Checked, Invalid, Rule};

/// At most this many custom headers per webhook.
pub const MAX_HEADERS: usize = 20;
/// The longest header name.
pub const MAX_NAME_LENGTH: usize = 64;
/// The longest header value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024;
/// The name an `authorization` header is shown and sent under.
pub const AUTHORIZATION: &str = "Authorization";
/// What an `authorization` value shows as without `show_authentication=true`. Sent back
/// unchanged in an update, it keeps the stored value.
pub const MASKED: &str = "********";

/// Names the service sets itself (compared without case), and prefixes it owns.
const RESERVED: [&str; 6] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "user-agent",
];
const RESERVED_PREFIXES: [&str; 2] = ["webhook-", "x-webhook-"];

/// Headers by name and value. Its Debug output names them and never shows a value: no header
/// value is ever logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderList(pub Vec<(String, String)>);

impl std::fmt::Debug for HeaderList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| name))
            .finish()
    }
}

impl std::ops::Deref for HeaderList {
    type Target = Vec<(String, String)>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Custom headers as a client gave them, checked: the plain ones (in the client's case)
/// and the `authorization` value apart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeadersIn {
    pub plain: HeaderList,
    pub authorization: Option<String>,
}

fn invalid(path: &str, message: impl Into<String>) -> Invalid {
    Invalid::new(Rule::Headers, path, message)
}

/// An HTTP token (RFC 9110 `tchar`).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks a `headers` object: at most 20, names HTTP tokens of at most 64 characters, not
/// the service's own and not repeated (without case), values strings of at most 1,024
/// bytes that an HTTP request can carry (no CR, LF, NUL or other control character but
/// tab). 422 `INVALID_HEADERS` naming the header (`headers.X-Team`).
pub fn parse_headers(value: Value) -> Checked<HeadersIn> {
    let Value::Object(map) = value else {
        return Err(invalid("headers", "headers must be an object of strings"));
    };
    check_all(&map)
}

fn check_all(map: &Map<String, Value>) -> Checked<HeadersIn> {
    if map.len() > MAX_HEADERS {
        return Err(invalid(
            "headers",
            format!("a webhook may have at most {MAX_HEADERS} custom headers"),
        ));
    }
    let mut out = HeadersIn::default();
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in map {
        let path = format!("headers.{name}");
        if !is_token(name) || name.len() > MAX_NAME_LENGTH {
            return Err(invalid(
                &path,
                format!("header names are HTTP tokens of 1-{MAX_NAME_LENGTH} characters"),
            ));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED.contains(&lower.as_str())
            || RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p))
        {
            return Err(invalid(
                &path,
                format!("{name} is set by the service and cannot be a custom header"),
            ));
        }
        if seen.contains(&lower) {
            return Err(invalid(&path, format!("{name} is given twice")));
        }
        seen.push(lower.clone());
        let Value::String(text) = value else {
            return Err(invalid(&path, "header values must be strings"));
        };
        if text.len() > MAX_VALUE_BYTES {
            return Err(invalid(
                &path,
                format!("header values may be at most {MAX_VALUE_BYTES} bytes"),
            ));
        }
        if text.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(invalid(
                &path,
                "header values may not hold CR, LF, NUL or other control characters",
            ));
        }
        if lower == "authorization" {
            out.authorization = Some(text.clone());
        } else {
            out.plain.0.push((name.clone(), text.clone()));
        }
    }
    Ok(out)
}

/// The refusal of an `authorization` header beside Basic credentials (each would replace
/// the other on the wire).
pub fn conflicts_with_basic_auth() -> Invalid {
    invalid(
        "headers.Authorization",
        "a webhook with Basic auth cannot also have an authorization header: remove one of them",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(value: Value) -> Invalid {
        parse_headers(value).unwrap_err()
    }

    #[test]
    fn plain_headers_keep_their_case_and_authorization_is_set_apart() {
        let parsed =
            parse_headers(json!({"X-Team": "crm", "authorization": "Bearer t0k3n", "X-Empty": ""}))
                .unwrap();
        assert_eq!(parsed.authorization.as_deref(), Some("Bearer t0k3n"));
        assert_eq!(parsed.plain.len(), 2);
        assert!(parsed.plain.contains(&("X-Team".into(), "crm".into())));
        assert_eq!(parse_headers(json!({})).unwrap(), HeadersIn::default());
    }

    #[test]
    fn what_the_spec_refuses_is_422_naming_the_header() {
        let many: Map<String, Value> = (0..21).map(|i| (format!("X-{i}"), json!("v"))).collect();
        for (value, path) in [
            (json!(["a"]), "headers"),
            (Value::Object(many), "headers"),
            (json!({"Bad Name": "v"}), "headers.Bad Name"),
            (json!({"": "v"}), "headers."),
            (
                json!({"X-Long".repeat(11): "v"}),
                "headers.X-LongX-LongX-LongX-LongX-LongX-LongX-LongX-LongX-LongX-LongX-Long",
            ),
            (
                json!({"Content-Type": "text/plain"}),
                "headers.Content-Type",
            ),
            (json!({"HOST": "a"}), "headers.HOST"),
            (json!({"user-agent": "a"}), "headers.user-agent"),
            (json!({"Webhook-Id": "a"}), "headers.Webhook-Id"),
            (json!({"X-Webhook-Event": "a"}), "headers.X-Webhook-Event"),
            (json!({"X-A": "line\r\nInjected: yes"}), "headers.X-A"),
            (json!({"X-A": "nul\u{0}"}), "headers.X-A"),
            (json!({"X-A": 5}), "headers.X-A"),
            (json!({"X-A": "v".repeat(1025)}), "headers.X-A"),
        ] {
            let e = refused(value.clone());
            assert_eq!(
                (e.rule, e.field.as_deref()),
                (Rule::Headers, Some(path)),
                "{value}: {e}"
            );
        }
        let e = refused(json!({"X-A": "1", "x-a": "2"}));
        assert!(e.message.contains("twice"), "{e}");
        parse_headers(json!({"X-A": "v".repeat(1024), "X-Tab": "a\tb", "X-Utf8": "é"})).unwrap();
    }
}
