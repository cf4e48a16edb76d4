//! Event types' compiled schemas, as a process keeps them: compiled once per instance from
//! the stored schema, and used by both paths that check an event's data (the publish route
//! and the deliver function, for events from the ingest queue).

use std::sync::Arc;

use crate::domain::schema::{Schema, SchemaCache};
use crate::storage::{CatalogStore, StoreResult};

/// The compiled schemas of this process.
#[derive(Default)]
pub struct Schemas(SchemaCache);

impl Schemas {
    /// The compiled schema of a tenant's event type, by the `sort_key` its catalogue entry
    /// has: compiled once per instance, read from storage only the first time. A stored
    /// schema that no longer compiles (it compiled when it was written) is logged and
    /// treated as none, so no event is refused for it.
    pub async fn get(
        &self,
        store: &dyn CatalogStore,
        tenant_id: &str,
        name: &str,
        sort_key: &str,
    ) -> StoreResult<Option<Arc<Schema>>> {
        if let Some(known) = self.0.get(tenant_id, name, sort_key) {
            return Ok(known);
        }
        let compiled = match store.event_type_schema(tenant_id, name).await? {
            None => None,
            Some(value) => match Schema::compile(&value) {
                Ok(schema) => Some(Arc::new(schema)),
                Err(why) => {
                    tracing::error!(event_type = name, %why, "a stored schema does not compile; events of its type are not checked");
                    None
                }
            },
        };
        self.0.put(tenant_id, name, sort_key, compiled.clone());
        Ok(compiled)
    }
}
