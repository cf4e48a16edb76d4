//! Event-type schemas: JSON Schema draft 2020-12, compiled once ([`Schema::compile`]) and
//! checked against each event's `data` ([`Schema::check`]), and the per-instance cache of
//! compiled schemas ([`SchemaCache`]) that makes a check cost microseconds.
//!
//! A schema stands alone: `$ref`s resolve inside it (and to the draft's own meta-schemas);
//! anything else (a file, an address) is refused when the schema is written, so no schema
//! makes the service read a file or call a host.

use std::collections::HashMap;
use std::sync::Arc;

use boon::{Compiler, Draft, InstanceToken, SchemaIndex, Schemas, UrlLoader, ValidationError};
use parking_lot::Mutex;
use serde_json::Value;

/// The only draft accepted (a `$schema` naming another is refused).
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// The longest an event's data may take to check against its type's schema (what the step
/// budget, [`MAX_CHECK_EVALUATIONS`], cannot see: an evaluation's own cost).
pub const CHECK_BUDGET: std::time::Duration = std::time::Duration::from_millis(500);

/// Where a schema is compiled from: a name nothing else resolves to.
const LOCATION: &str = "https://schema.invalid/event-type.json";

/// A compiled schema.
pub struct Schema {
    schemas: Schemas,
    index: SchemaIndex,
    /// Its worst-case cost (`schema_cost`): how many subschema evaluations a value may take.
    cost: super::schema_cost::Cost,
}

/// The most subschema evaluations one event's check may take, counted before it starts:
/// the values of the data times the schema's worst-case evaluations a value. A check past
/// it is not run at all.
pub const MAX_CHECK_EVALUATIONS: u64 = 20_000_000;

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schema")
    }
}

/// Why an event's data does not match its schema: the path of the first value at fault
/// (`data`, `data.amount`, `data.items.2`) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Refuses every reference outside the schema.
struct NoLoader;

impl UrlLoader for NoLoader {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(format!("{url} is outside the schema: a schema must stand alone").into())
    }
}

impl Schema {
    /// Compiles a schema, checking it against the draft's meta-schema and bounding its
    /// worst-case validation cost (`schema_cost`); the error says what is wrong, for a 422
    /// `INVALID_SCHEMA`.
    pub fn compile(schema: &Value) -> Result<Schema, String> {
        if let Some(draft) = schema.get("$schema")
            && draft.as_str().map(|d| d.trim_end_matches('#')) != Some(DRAFT_2020_12)
        {
            return Err(format!("$schema must be {DRAFT_2020_12} (or left out)"));
        }
        let mut compiler = Compiler::new();
        compiler.set_default_draft(Draft::V2020_12);
        compiler.use_loader(Box::new(NoLoader));
        compiler
            .add_resource(LOCATION, schema.clone())
            .map_err(|e| e.to_string())?;
        let mut schemas = Schemas::new();
        let index = compiler
            .compile(LOCATION, &mut schemas)
            .map_err(|e| format!("{e:#}").replace(LOCATION, "schema"))?;
        let cost = super::schema_cost::bound(schema)?;
        Ok(Schema {
            schemas,
            index,
            cost,
        })
    }

    /// Whether checking `data` may take more evaluations than a check may: the step
    /// budget, known before the check starts.
    fn over_budget(&self, data: &Value) -> bool {
        fn values(v: &Value) -> u64 {
            match v {
                Value::Array(items) => 1 + items.iter().map(values).sum::<u64>(),
                Value::Object(map) => 1 + map.values().map(values).sum::<u64>(),
                _ => 1,
            }
        }
        values(data).saturating_mul(self.cost.per_value) > MAX_CHECK_EVALUATIONS
    }

    /// Checks an event's data as [`Schema::check`] does, on a blocking thread (never one of
    /// the async threads a batch's other work runs on) and within [`CHECK_BUDGET`]: data
    /// whose check takes longer is refused as if it did not match. Hands the data back.
    pub async fn check_within_budget(
        self: Arc<Self>,
        data: Value,
    ) -> (Value, Result<(), Mismatch>) {
        if self.over_budget(&data) {
            // Refused before any work: the step budget.
            let reason = format!(
                "is too costly to check against the schema (more than {MAX_CHECK_EVALUATIONS} \
                 subschema evaluations: a check's budget)"
            );
            return (
                data,
                Err(Mismatch {
                    path: "data".into(),
                    reason,
                }),
            );
        }
        let (done, answer) = tokio::sync::oneshot::channel();
        // The check is not cut short (a thread cannot be); the schema's cost bound keeps
        // it finite, and the budget keeps the caller from waiting on it.
        tokio::task::spawn_blocking(move || {
            let outcome = self.check(&data);
            let _ = done.send((data, outcome));
        });
        match tokio::time::timeout(CHECK_BUDGET, answer).await {
            Ok(Ok(answer)) => answer,
            _ => (
                Value::Null,
                Err(Mismatch {
                    path: "data".into(),
                    reason: format!(
                        "could not be checked against the schema within its budget ({} ms)",
                        CHECK_BUDGET.as_millis()
                    ),
                }),
            ),
        }
    }

    /// Checks an event's data; the first mismatch in document order if it does not match.
    pub fn check(&self, data: &Value) -> Result<(), Mismatch> {
        let Err(error) = self.schemas.validate(data, self.index) else {
            return Ok(());
        };
        let leaf = first_leaf(&error);
        let mut path = String::from("data");
        for token in &leaf.instance_location.tokens {
            match token {
                InstanceToken::Prop(name) => {
                    path.push('.');
                    path.push_str(name);
                }
                InstanceToken::Item(i) => {
                    path.push('.');
                    path.push_str(&i.to_string());
                }
            }
        }
        Err(Mismatch {
            path,
            reason: rule(&leaf.kind),
        })
    }
}

/// The rule a value broke, in the schema's own terms: never the event's data (no value, no
/// property name of the data), so a reason can be logged and kept with a dead letter.
fn rule(kind: &boon::ErrorKind) -> String {
    use boon::ErrorKind as K;
    match kind {
        K::Type { want, .. } => {
            let want: Vec<String> = want.iter().map(|t| t.to_string()).collect();
            format!("must be of type {}", want.join(" or "))
        }
        K::Enum { .. } => "must be one of the schema's enum values".into(),
        K::Const { .. } => "must equal the schema's const".into(),
        K::Format { want, .. } => format!("must be a valid {want}"),
        K::MinProperties { want, .. } => format!("must have at least {want} properties"),
        K::MaxProperties { want, .. } => format!("must have at most {want} properties"),
        K::AdditionalProperties { .. } => "has properties the schema does not allow".into(),
        K::Required { want } => format!("misses required properties {want:?}"),
        K::Dependency { prop, missing } | K::DependentRequired { prop, missing } => {
            format!("with {prop:?}, misses {missing:?}")
        }
        K::MinItems { want, .. } => format!("must have at least {want} items"),
        K::MaxItems { want, .. } => format!("must have at most {want} items"),
        K::Contains => "must contain an item the schema's contains allows".into(),
        K::MinContains { want, .. } => format!("must contain at least {want} such items"),
        K::MaxContains { want, .. } => format!("must contain at most {want} such items"),
        K::UniqueItems { .. } => "must have unique items".into(),
        K::AdditionalItems { .. } => "has more items than the schema allows".into(),
        K::MinLength { want, .. } => format!("must be at least {want} characters long"),
        K::MaxLength { want, .. } => format!("must be at most {want} characters long"),
        K::Pattern { want, .. } => format!("must match the pattern {want:?}"),
        K::Minimum { want, .. } => format!("must be >= {want}"),
        K::Maximum { want, .. } => format!("must be <= {want}"),
        K::ExclusiveMinimum { want, .. } => format!("must be > {want}"),
        K::ExclusiveMaximum { want, .. } => format!("must be < {want}"),
        K::MultipleOf { want, .. } => format!("must be a multiple of {want}"),
        K::FalseSchema => "is not allowed by the schema".into(),
        K::PropertyName { .. } => "has a property name the schema's propertyNames refuses".into(),
        K::ContentEncoding { want, .. } => format!("must be {want}-encoded"),
        K::ContentMediaType { want, .. } => format!("must be {want}"),
        K::ContentSchema => "its content does not match the schema's contentSchema".into(),
        K::Not => "must not match the schema's not".into(),
        K::OneOf(_) => "must match exactly one of the schema's oneOf".into(),
        K::AnyOf => "must match one of the schema's anyOf".into(),
        K::AllOf => "must match all of the schema's allOf".into(),
        _ => "does not match the schema".into(),
    }
}

/// The error a validation's tree of causes comes down to first.
fn first_leaf<'e, 's, 'v>(error: &'e ValidationError<'s, 'v>) -> &'e ValidationError<'s, 'v> {
    let mut at = error;
    while let Some(first) = at.causes.first() {
        at = first;
    }
    at
}

/// Compiled schemas an instance keeps, by (tenant, event type, the event type's
/// `sort_key`): a type deleted and created again has a new key, so a stale entry is never
/// used. `None` remembers a type without a schema.
#[derive(Default)]
pub struct SchemaCache {
    entries: Mutex<HashMap<CacheKey, Option<Arc<Schema>>>>,
}

/// (tenant, event type, its `sort_key`).
type CacheKey = (String, String, String);

/// Entries kept before the cache starts over (each at most a compiled 64 KiB schema).
pub const CACHED_SCHEMAS: usize = 512;

impl SchemaCache {
    pub fn get(&self, tenant_id: &str, name: &str, key: &str) -> Option<Option<Arc<Schema>>> {
        let entries = self.entries.lock();
        entries
            .get(&(tenant_id.to_string(), name.to_string(), key.to_string()))
            .cloned()
    }

    pub fn put(&self, tenant_id: &str, name: &str, key: &str, schema: Option<Arc<Schema>>) {
        let mut entries = self.entries.lock();
        if entries.len() >= CACHED_SCHEMAS {
            entries.clear();
        }
        entries.insert(
            (tenant_id.to_string(), name.to_string(), key.to_string()),
            schema,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order() -> Schema {
        Schema::compile(&json!({
            "type": "object",
            "required": ["amount", "items"],
            "properties": {
                "amount": {"type": "number", "minimum": 0},
                "items": {"type": "array", "items": {"$ref": "#/$defs/item"}}
            },
            "$defs": {"item": {"type": "object", "required": ["sku"]}}
        }))
        .unwrap()
    }

    #[test]
    fn matching_data_passes_and_the_first_mismatch_is_named_by_its_path() {
        let schema = order();
        assert_eq!(
            schema.check(&json!({"amount": 5, "items": [{"sku": "a"}]})),
            Ok(())
        );
        let wrong = schema
            .check(&json!({"amount": -1, "items": []}))
            .unwrap_err();
        assert_eq!(wrong.path, "data.amount");
        // The rule, in the schema's terms; never the value that broke it.
        assert_eq!(wrong.to_string(), "data.amount: must be >= 0");
        let deep = schema
            .check(&json!({"amount": 1, "items": [{"sku": "a"}, {}]}))
            .unwrap_err();
        assert_eq!(deep.path, "data.items.1");
        assert!(deep.reason.contains("sku"), "{deep}");
        let secret = schema
            .check(&json!({"amount": "TOPSECRET", "items": []}))
            .unwrap_err();
        assert!(!secret.to_string().contains("TOPSECRET"), "{secret}");
        let missing = schema.check(&json!({})).unwrap_err();
        assert_eq!(missing.path, "data");
    }

    #[test]
    fn invalid_schemas_are_refused_with_a_reason() {
        for bad in [
            json!({"type": "nothing"}),
            json!({"minimum": "zero"}),
            json!({"pattern": "("}),
            json!({"$schema": "http://json-schema.org/draft-07/schema#"}),
        ] {
            let error = Schema::compile(&bad).unwrap_err();
            assert!(!error.is_empty(), "{bad}");
        }
        assert!(Schema::compile(&json!({"$schema": DRAFT_2020_12})).is_ok());
        assert!(Schema::compile(&json!({})).is_ok());
    }

    #[test]
    fn a_schema_never_reads_a_file_or_calls_a_host() {
        for outside in [
            "file:///etc/passwd",
            "https://example.com/schema.json",
            "/etc/hosts",
            "other.json",
        ] {
            let error = Schema::compile(&json!({"$ref": outside})).unwrap_err();
            assert!(!error.contains("root:"), "{error}");
        }
    }

    #[test]
    fn the_cache_keeps_schemas_by_tenant_type_and_creation() {
        let cache = SchemaCache::default();
        assert!(cache.get("t", "a.b", "k1").is_none());
        cache.put("t", "a.b", "k1", Some(Arc::new(order())));
        cache.put("t", "c.d", "k2", None);
        assert!(cache.get("t", "a.b", "k1").unwrap().is_some());
        assert!(cache.get("t", "c.d", "k2").unwrap().is_none());
        assert!(cache.get("t", "a.b", "k3").is_none(), "created again");
        assert!(cache.get("u", "a.b", "k1").is_none(), "another tenant");
    }
}
