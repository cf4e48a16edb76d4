//! Validation of what clients send: event type names, subscriptions, URLs, secrets,
//! credentials and metadata. Each rule answers with the spec's error code.

use crate::json::json_size;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};
use url::Url;

use super::invalid::{Checked, Invalid, Rule};
use super::webhook::{BasicAuth, Confidential, SECRET_PREFIX, Secret};

pub const MAX_EVENT_TYPE_NAME: usize = 128;
pub const MAX_URL_LENGTH: usize = 2048;
pub const MAX_SUBSCRIPTION_ENTRIES: usize = 100;
pub const MAX_NAME_LENGTH: usize = 256;
pub const MAX_DESCRIPTION_LENGTH: usize = 1024;
pub const MAX_METADATA_KEYS: usize = 50;
pub const MAX_METADATA_KEY_LENGTH: usize = 40;
pub const MAX_METADATA_VALUE_LENGTH: usize = 500;
pub const MAX_CREDENTIAL_LENGTH: usize = 256;
/// A webhook's metadata, serialised, in bytes (SPEC §6).
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// An event type's schema, serialised, in bytes (SPEC §6).
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;

/// `^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`, at most 128 characters.
pub fn is_valid_event_type_name(name: &str) -> bool {
    name.len() <= MAX_EVENT_TYPE_NAME
        && name.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// Checks the syntax of a subscription (`*`, `prefix.*` or names), drops repeats and keeps
/// the order given. Whether the names exist is the caller's check against the catalogue.
pub fn parse_subscription(entries: Vec<String>) -> Checked<Vec<String>> {
    let invalid = |message: String| Invalid::new(Rule::Subscription, "events", message);
    if entries.is_empty() {
        return Err(invalid("events must name at least one event type".into()));
    }
    if entries.len() > MAX_SUBSCRIPTION_ENTRIES {
        return Err(invalid(format!(
            "events may hold at most {MAX_SUBSCRIPTION_ENTRIES} entries"
        )));
    }
    let malformed: Vec<&String> = entries
        .iter()
        .filter(|e| {
            let name = e.strip_suffix(".*").unwrap_or(e);
            e.as_str() != "*" && !is_valid_event_type_name(name)
        })
        .collect();
    if !malformed.is_empty() {
        return Err(invalid(format!(
            "malformed event types: {}",
            join_quoted(malformed.iter().map(|s| s.as_str()))
        )));
    }
    let mut unique: Vec<String> = Vec::with_capacity(entries.len());
    for entry in entries {
        if !unique.contains(&entry) {
            unique.push(entry);
        }
    }
    Ok(unique)
}

/// The names of a subscription that must exist in the catalogue (the non-wildcards).
pub fn exact_names(subscription: &[String]) -> impl Iterator<Item = &str> {
    subscription
        .iter()
        .map(String::as_str)
        .filter(|e| *e != "*" && !e.ends_with(".*"))
}

/// The error for subscription names missing from the catalogue.
pub fn unknown_types_error(unknown: &[&str]) -> Invalid {
    Invalid::new(
        Rule::Subscription,
        "events",
        format!(
            "unknown event types: {}",
            join_quoted(unknown.iter().copied())
        ),
    )
}

/// Parses a webhook URL and checks what can be checked without the network: absolute,
/// at most 2048 characters, `https` (or `http` when insecure targets are allowed), a host,
/// and no credentials embedded in it.
pub fn parse_webhook_url(text: &str, allow_insecure_targets: bool) -> Checked<Url> {
    let invalid = |message: &str| Invalid::new(Rule::Url, "url", message);
    if text.len() > MAX_URL_LENGTH {
        return Err(invalid("url must be at most 2048 characters"));
    }
    let url = Url::parse(text).map_err(|_| invalid("url must be an absolute URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure_targets => {}
        "http" => {
            return Err(Invalid::new(Rule::UrlNotHttps, "url", "url must use https"));
        }
        _ => return Err(invalid("url must be an http(s) URL")),
    }
    if url.host().is_none() {
        return Err(invalid("url must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("url must not embed credentials; set auth instead"));
    }
    Ok(url)
}

/// Checks a secret given by the client: `whsec_` plus base64 of 24 to 64 bytes.
pub fn parse_secret(text: &str) -> Checked<Secret> {
    let key = text
        .strip_prefix(SECRET_PREFIX)
        .and_then(|b64| STANDARD.decode(b64).ok());
    match key {
        Some(bytes) if (24..=64).contains(&bytes.len()) => Ok(Secret(text.to_string())),
        _ => Err(Invalid::new(
            Rule::Secret,
            "secret",
            "secret must be whsec_ followed by the base64 of 24 to 64 bytes",
        )),
    }
}

/// Checks Basic credentials: a username without ':' and a password, each 1-256 characters.
pub fn parse_basic_auth(username: String, password: String) -> Checked<BasicAuth> {
    if username.is_empty() || username.len() > MAX_CREDENTIAL_LENGTH || username.contains(':') {
        return Err(Invalid::field(
            "auth.username",
            "username must be 1-256 characters without ':'",
        ));
    }
    if password.is_empty() || password.len() > MAX_CREDENTIAL_LENGTH {
        return Err(Invalid::field(
            "auth.password",
            "password must be 1-256 characters",
        ));
    }
    Ok(BasicAuth {
        username,
        password: Confidential::Clear(password),
    })
}

/// Checks a free-text field's length.
pub fn check_length(field: &str, value: &str, max: usize) -> Checked<()> {
    if value.chars().count() > max {
        return Err(Invalid::field(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// Metadata is an object of strings: at most 50 keys of 40 characters, values of 500.
pub fn parse_metadata(value: Value) -> Checked<Map<String, Value>> {
    let bad = |message: &str| Invalid::field("metadata", message);
    let Value::Object(map) = value else {
        return Err(bad("metadata must be an object of strings"));
    };
    if map.len() > MAX_METADATA_KEYS {
        return Err(bad("metadata may hold at most 50 keys"));
    }
    for (key, value) in &map {
        let Value::String(text) = value else {
            return Err(bad("metadata values must be strings"));
        };
        if key.is_empty() || key.chars().count() > MAX_METADATA_KEY_LENGTH {
            return Err(bad("metadata keys must be 1-40 characters"));
        }
        if text.chars().count() > MAX_METADATA_VALUE_LENGTH {
            return Err(bad("metadata values must be at most 500 characters"));
        }
    }
    if json_size(&map) > MAX_METADATA_BYTES {
        return Err(Invalid::limit(
            "metadata",
            "metadata may be at most 16 KiB (16,384 bytes as JSON)",
        ));
    }
    Ok(map)
}

/// Checks an event type's schema: a JSON object of at most 64 KiB that compiles as a JSON
/// Schema (draft 2020-12); answers it compiled.
pub fn check_schema(schema: &Value) -> Checked<crate::domain::schema::Schema> {
    if !schema.is_object() {
        return Err(Invalid::new(
            Rule::Schema,
            "schema",
            "schema must be a JSON object",
        ));
    }
    if json_size(schema) > MAX_SCHEMA_BYTES {
        return Err(Invalid::limit(
            "schema",
            "a schema may be at most 64 KiB (65,536 bytes as JSON)",
        ));
    }
    crate::domain::schema::Schema::compile(schema).map_err(|why| {
        Invalid::new(
            Rule::Schema,
            "schema",
            format!("schema is not a JSON Schema (draft 2020-12): {why}"),
        )
    })
}

fn join_quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The highest `rate_limit` (attempts per second).
pub const MAX_RATE_LIMIT: u64 = 10_000;

/// A webhook's `rate_limit`: a whole number of attempts per second from 1 to 10,000.
pub fn parse_rate_limit(value: &Value) -> Checked<u32> {
    value
        .as_u64()
        .filter(|n| (1..=MAX_RATE_LIMIT).contains(n))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            Invalid::field(
                "rate_limit",
                "rate_limit must be a whole number of attempts per second from 1 to 10,000, or null",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_type_names_follow_the_dotted_pattern() {
        for good in ["user.created", "a", "A-1_b.c-2", &"x".repeat(128)] {
            assert!(is_valid_event_type_name(good), "{good}");
        }
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "a b",
            "a.*",
            "*",
            "ü",
            &"x".repeat(129),
        ] {
            assert!(!is_valid_event_type_name(bad), "{bad}");
        }
    }

    #[test]
    fn subscriptions_accept_wildcards_and_drop_repeats() {
        let subs = parse_subscription(vec![
            "user.created".into(),
            "data.*".into(),
            "*".into(),
            "user.created".into(),
        ])
        .unwrap();
        assert_eq!(subs, vec!["user.created", "data.*", "*"]);
        assert_eq!(exact_names(&subs).collect::<Vec<_>>(), vec!["user.created"]);
    }

    #[test]
    fn malformed_or_empty_subscriptions_are_invalid_subscription() {
        for entries in [
            vec![],
            vec!["a.**".to_string()],
            vec!["*.a".to_string()],
            vec!["".to_string()],
        ] {
            let e = parse_subscription(entries).unwrap_err();
            assert_eq!(e.rule, Rule::Subscription);
            assert_eq!(e.field.as_deref(), Some("events"));
        }
    }

    #[test]
    fn urls_must_be_https_unless_insecure_targets_are_allowed() {
        assert!(parse_webhook_url("https://example.com/hooks", false).is_ok());
        let e = parse_webhook_url("http://example.com/hooks", false).unwrap_err();
        assert_eq!(e.rule, Rule::UrlNotHttps);
        assert!(parse_webhook_url("http://127.0.0.1:9000/x", true).is_ok());
        for bad in [
            "not a url",
            "/relative",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "mailto:a@example.com",
        ] {
            assert_eq!(
                parse_webhook_url(bad, true).unwrap_err().rule,
                Rule::Url,
                "{bad}"
            );
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert_eq!(parse_webhook_url(&long, false).unwrap_err().rule, Rule::Url);
    }

    #[test]
    fn secrets_must_decode_to_24_to_64_bytes() {
        let ok = format!("whsec_{}", STANDARD.encode([7u8; 24]));
        assert!(parse_secret(&ok).is_ok());
        assert!(parse_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_ok());
        for bad in [
            format!("whsec_{}", STANDARD.encode([7u8; 23])),
            format!("whsec_{}", STANDARD.encode([7u8; 65])),
            STANDARD.encode([7u8; 32]),
            "whsec_not base64!".to_string(),
        ] {
            assert_eq!(parse_secret(&bad).unwrap_err().rule, Rule::Secret);
        }
    }

    #[test]
    fn basic_auth_refuses_colons_and_empty_values() {
        assert!(parse_basic_auth("u".into(), "p".into()).is_ok());
        assert_eq!(
            parse_basic_auth("a:b".into(), "p".into())
                .unwrap_err()
                .field
                .as_deref(),
            Some("auth.username")
        );
        assert_eq!(
            parse_basic_auth("u".into(), "".into())
                .unwrap_err()
                .field
                .as_deref(),
            Some("auth.password")
        );
    }

    #[test]
    fn metadata_is_a_small_object_of_strings() {
        assert!(parse_metadata(json!({"team": "crm"})).is_ok());
        assert!(parse_metadata(json!({"n": 1})).is_err());
        assert!(parse_metadata(json!(["x"])).is_err());
        assert!(parse_metadata(json!({"k": "v".repeat(501)})).is_err());
    }

    #[test]
    fn metadata_and_schemas_are_bounded_by_bytes_not_characters() {
        // 40 keys of 500 four-byte characters: within every per-key rule, 80 KB in all.
        let wide: Map<String, Value> = (0..40)
            .map(|i| (format!("k{i}"), json!("\u{1F600}".repeat(500))))
            .collect();
        let e = parse_metadata(Value::Object(wide)).unwrap_err();
        assert_eq!(
            (e.rule, e.field.as_deref()),
            (Rule::Limit, Some("metadata"))
        );
        assert!(e.message.contains("16 KiB"));
        let schema = json!({"description": "x".repeat(MAX_SCHEMA_BYTES)});
        assert_eq!(check_schema(&schema).unwrap_err().rule, Rule::Limit);
        assert!(check_schema(&json!({"type": "object"})).is_ok());
        assert_eq!(check_schema(&json!([1])).unwrap_err().rule, Rule::Schema);
        assert_eq!(
            check_schema(&json!({"type": "nothing"})).unwrap_err().rule,
            Rule::Schema
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::domain::event_type::pattern_matches;
    use proptest::prelude::*;

    const SEGMENT: &str = "[A-Za-z0-9_-]{1,8}";

    proptest! {
        /// Names built from the spec's pattern are valid; adding any other character is not.
        #[test]
        fn names_follow_the_pattern(segments in proptest::collection::vec(SEGMENT, 1..5), bad in "[^A-Za-z0-9_.-]") {
            let name = segments.join(".");
            prop_assert!(is_valid_event_type_name(&name));
            let broken = format!("{name}{bad}");
            prop_assert!(!is_valid_event_type_name(&broken));
        }

        /// `*` matches every name, a name matches itself, `prefix.*` matches what is below it.
        #[test]
        fn wildcards_match_as_documented(segments in proptest::collection::vec(SEGMENT, 2..5)) {
            let name = segments.join(".");
            prop_assert!(pattern_matches("*", &name));
            prop_assert!(pattern_matches(&name, &name));
            let prefix = segments[..segments.len() - 1].join(".");
            let below = format!("{prefix}.*");
            prop_assert!(pattern_matches(&below, &name));
            let own = format!("{name}.*");
            prop_assert!(!pattern_matches(&own, &name));
        }

        /// No input string panics the URL, secret or subscription checks.
        #[test]
        fn checks_never_panic(text in ".{0,300}", insecure in any::<bool>()) {
            let _ = parse_webhook_url(&text, insecure);
            let _ = parse_secret(&text);
            let _ = parse_subscription(vec![text.clone()]);
            let _ = is_valid_event_type_name(&text);
        }
    }
}
