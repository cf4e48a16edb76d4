//! The tenant's event-type catalogue: list, create, delete.

use serde_json::json;

use crate::api::Reply;
use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::pagination::{CursorScope, page_json, page_request};
use crate::api::request::Call;
use crate::domain::event_type::EventType;
use crate::domain::validation::{
    MAX_DESCRIPTION_LENGTH, check_length, check_schema, is_valid_event_type_name,
};
use crate::page::paginate;
use crate::state::AppState;
use crate::storage::CreateEventTypeError;

fn cursor_scope(call: &Call) -> CursorScope<'_> {
    CursorScope {
        list: "event-types",
        tenant_id: call.tenant(),
    }
}

/// The catalogue, a page at a time: the names of the whole catalogue (small), then the
/// schemas of the page's types alone, and the page cut short where its schemas would take
/// it past a list answer's budget.
pub async fn list_event_types(state: &AppState, call: Call) -> ApiResult<Reply> {
    let scope = cursor_scope(&call);
    let request = page_request(&call, scope)?;
    let all = state.store.list_event_types(call.tenant()).await?;
    let mut page = paginate(all, |et| et.sort_key.as_str(), &request);
    let names: Vec<&str> = page.data.iter().map(|et| et.name.as_str()).collect();
    let mut schemas = state
        .store
        .event_type_schemas(call.tenant(), &names)
        .await?;
    for et in &mut page.data {
        et.schema = schemas.remove(&et.name);
    }
    crate::page::fit_budget(&mut page, &request, |et| et.sort_key.as_str());
    Ok(Reply::ok(page_json(&page, scope, EventType::to_json)))
}

pub async fn create_event_type(state: &AppState, call: Call) -> ApiResult<Reply> {
    let mut body = call.body()?;
    body.allow(&["name", "description", "schema"], "")?;
    let name = body.require_string("name")?;
    let description = body.take_string("description")?.unwrap_or_default();
    let schema = body.take("schema");
    body.finish("")?;
    if !is_valid_event_type_name(&name) {
        return Err(ApiError::invalid_field(
            "name",
            "name must match ^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$ and be at most 128 characters",
        ));
    }
    check_length("description", &description, MAX_DESCRIPTION_LENGTH)?;
    if let Some(schema) = &schema {
        check_schema(schema)?;
    }
    let event_type = EventType {
        name,
        description,
        schema,
        created_at: crate::domain::now(),
        sort_key: crate::ids::new_ulid().to_string(),
    };
    let max = state.config.max_event_types_per_tenant;
    match state
        .store
        .create_event_type(call.tenant(), &event_type, max)
        .await
    {
        Ok(()) => Ok(Reply::created(event_type.to_json())),
        Err(CreateEventTypeError::Exists) => Err(ApiError::new(
            ErrorCode::Conflict,
            format!("event type {:?} already exists", event_type.name),
        )
        .with_field("name")),
        Err(CreateEventTypeError::LimitReached) => Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("a tenant may have at most {max} event types"),
        )
        .with_field("name")),
        Err(CreateEventTypeError::Store(e)) => Err(e.into()),
    }
}

pub async fn delete_event_type(state: &AppState, call: Call) -> ApiResult<Reply> {
    let name = call.path("name")?;
    if state.store.delete_event_type(call.tenant(), &name).await? {
        Ok(Reply::ok(json!({"name": name, "deleted": true})))
    } else {
        Err(ApiError::new(
            ErrorCode::EventTypeNotFound,
            "no such event type",
        ))
    }
}

/// The names of `wanted` missing from the tenant's catalogue.
pub async fn missing_event_types<'a>(
    state: &AppState,
    tenant_id: &str,
    wanted: impl Iterator<Item = &'a str>,
) -> ApiResult<Vec<&'a str>> {
    let wanted: Vec<&str> = wanted.collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let catalogue = state.store.list_event_types(tenant_id).await?;
    Ok(wanted
        .into_iter()
        .filter(|name| !catalogue.iter().any(|et| et.name == *name))
        .collect())
}
