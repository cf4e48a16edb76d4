//! The tenant's catalogue of event types, and how a subscription pattern matches a type.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::format_time;

/// One entry of a tenant's catalogue.
#[derive(Clone, Debug, PartialEq)]
pub struct EventType {
    pub name: String,
    pub description: String,
    pub schema: Option<Value>,
    pub created_at: DateTime<Utc>,
    /// A ULID taken at creation: the catalogue's newest-first order and its cursor.
    pub sort_key: String,
}

impl EventType {
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "name": self.name,
            "description": self.description,
            "created_at": format_time(self.created_at),
        });
        if let Some(schema) = &self.schema {
            out["schema"] = schema.clone();
        }
        out
    }
}

impl crate::page::Weigh for EventType {
    /// Its schema as Lambda sends it (escaped inside the response's body), plus room for
    /// the other fields.
    fn weight(&self) -> usize {
        self.schema
            .as_ref()
            .map_or(0, crate::json::escaped_json_size)
            + 2048
    }
}

/// Whether a subscription entry (`*`, `prefix.*` or an exact name) selects `event_type`.
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => event_type
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern == event_type,
    }
}

/// Whether any entry of a subscription selects `event_type`.
pub fn subscription_matches(patterns: &[String], event_type: &str) -> bool {
    patterns.iter().any(|p| pattern_matches(p, event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_exact_names() {
        assert!(pattern_matches("*", "user.created"));
        assert!(pattern_matches("user.created", "user.created"));
        assert!(!pattern_matches("user.created", "user.created.v2"));
        assert!(pattern_matches("data.*", "data.updated"));
        assert!(pattern_matches("data.*", "data.row.deleted"));
        assert!(!pattern_matches("data.*", "data"));
        assert!(!pattern_matches("data.*", "database.updated"));
        assert!(!pattern_matches("user.*", "users.created"));
    }

    #[test]
    fn a_subscription_matches_when_any_entry_does() {
        let subs = vec!["user.created".to_string(), "data.*".to_string()];
        assert!(subscription_matches(&subs, "data.x"));
        assert!(subscription_matches(&subs, "user.created"));
        assert!(!subscription_matches(&subs, "user.deleted"));
    }
}
