//! Event-type schemas: JSON Schema draft 2020-12, compiled once ([`Schema::compile`]) and
//! checked against each event's `data` ([`Schema::check`]), and the per-instance cache of
//! compiled schemas ([`SchemaCache`]) that makes a check cost microseconds.
//!
//! A schema stands alone: `$ref`s resolve inside it (and to the draft's own meta-schemas);
//! anything else (a file, an address) is refused when the schema is written, so no schema
//! makes the service read a file or call a host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use boon::{Compiler, Draft, InstanceToken, SchemaIndex, Schemas, UrlLoader, ValidationError};
use serde_json::Value;

/// The only draft accepted (a `$schema` naming another is refused).
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Where a schema is compiled from: a name nothing else resolves to.
const LOCATION: &str = "https://schema.invalid/event-type.json";

/// A compiled schema.
pub struct Schema {
    schemas: Schemas,
    index: SchemaIndex,
}

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
    /// Compiles a schema, checking it against the draft's meta-schema; the error says what
    /// is wrong, for a 422 `INVALID_SCHEMA`.
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
        Ok(Schema { schemas, index })
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
            reason: leaf.kind.to_string(),
        })
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
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&(tenant_id.to_string(), name.to_string(), key.to_string()))
            .cloned()
    }

    pub fn put(&self, tenant_id: &str, name: &str, key: &str, schema: Option<Arc<Schema>>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
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
        assert_eq!(wrong.to_string(), "data.amount: must be >=0, but got -1");
        let deep = schema
            .check(&json!({"amount": 1, "items": [{"sku": "a"}, {}]}))
            .unwrap_err();
        assert_eq!(deep.path, "data.items.1");
        assert!(deep.reason.contains("sku"), "{deep}");
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
