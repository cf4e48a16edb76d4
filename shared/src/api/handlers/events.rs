//! Events: publish (202, idempotent on the source's `id`), list, read with a summary of
//! the event's deliveries.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::api::Reply;
use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::pagination::{CursorScope, page_json, page_request};
use crate::api::request::Call;
use crate::domain::delivery::DeliveryStatus;
use crate::domain::event::{Event, check_data, is_valid_source_id};
use crate::domain::parse_time;
use crate::domain::validation::is_valid_event_type_name;
use crate::ids::IdKind;
use crate::queue::{EventTask, QueueName, Task};
use crate::state::AppState;
use crate::storage::{EventFilter, Stored};

/// A time filter (`from`, `to`): RFC 3339, else a 400 naming it.
pub fn time_filter(call: &Call, field: &str) -> ApiResult<Option<DateTime<Utc>>> {
    call.query(field)
        .map(|text| time_field(field, &text))
        .transpose()
}

/// A time given in `field` (query or body): RFC 3339, else a 400 naming it.
pub fn time_field(field: &str, text: &str) -> ApiResult<DateTime<Utc>> {
    parse_time(text)
        .ok_or_else(|| ApiError::invalid_field(field, format!("{field} must be an RFC 3339 time")))
}

pub async fn publish_event(state: &AppState, call: Call) -> ApiResult<Reply> {
    let mut body = call.body()?;
    body.allow(&["type", "data", "id"], "")?;
    let event_type = body.require_string("type")?;
    let data = body
        .take("data")
        .ok_or_else(|| ApiError::invalid_field("data", "data is required"))?;
    let source_id = body.take_string("id")?;
    body.finish("")?;
    let mut data = check_data(data)?;
    if let Some(id) = &source_id
        && !is_valid_source_id(id)
    {
        return Err(ApiError::invalid_field(
            "id",
            "id must be at most 128 characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'",
        ));
    }
    let unknown = || {
        ApiError::new(
            ErrorCode::UnknownEventType,
            format!("event type {event_type:?} is not in the catalogue"),
        )
        .with_field("type")
    };
    if !is_valid_event_type_name(&event_type) {
        return Err(unknown());
    }
    let entry = state
        .store
        .event_type_entry(call.tenant(), &event_type)
        .await?
        .ok_or_else(unknown)?;
    if entry.has_schema
        && let Some(schema) = state
            .schemas
            .get(&*state.store, call.tenant(), &event_type, &entry.sort_key)
            .await?
    {
        // On a blocking thread, within the check's budget (see domain::schema).
        let object = Value::Object(std::mem::take(&mut data));
        let (object, checked) = schema.check_within_budget(object).await;
        if let Value::Object(map) = object {
            data = map;
        }
        checked.map_err(|mismatch| {
            ApiError::new(
                ErrorCode::SchemaValidationFailed,
                format!("data does not match the schema of {event_type}: {mismatch}"),
            )
            .with_field(&mismatch.path)
        })?;
    }
    let queues = crate::api::queues(state)?;
    let mut event = Event::new(call.tenant(), &event_type, data);
    event.source_id = source_id.clone();
    let event = match state
        .store
        .store_event(&event, source_id.as_deref(), state.expires_at())
        .await?
    {
        Stored::New => event,
        // A repeated id answers with the first event and delivers nothing again, not even
        // to a webhook created since (its first publish queued its fan-out, or was
        // answered 503 and taken back).
        Stored::Repeat(first) => return Ok(Reply::accepted(first.to_json())),
    };
    let task = Task::Event(EventTask::stored(&event, false));
    // On the delivery queue, which only the service can write to: a producer allowed on
    // the ingest queue cannot forge a stored event's task.
    if let Err(e) = queues
        .send(QueueName::Delivery, &[(task, Duration::ZERO)])
        .await
    {
        tracing::warn!(error = %e, "could not queue an event; answering 503");
        // Nothing half-written: a new event that will not be delivered is taken back.
        if let Err(e) = state.store.forget_event(&event).await {
            tracing::error!(error = %e, event_id = %event.id, "could not take back an event that was not queued");
        }
        return Err(ApiError::unavailable());
    }
    Ok(Reply::accepted(event.to_json()))
}

pub async fn list_events(state: &AppState, call: Call) -> ApiResult<Reply> {
    let scope = CursorScope {
        list: "events",
        tenant_id: call.tenant(),
    };
    let request = page_request(&call, scope)?;
    let event_type = call.query("type");
    if let Some(t) = &event_type
        && !is_valid_event_type_name(t)
    {
        return Err(ApiError::invalid_field(
            "type",
            "type must be an event type name",
        ));
    }
    let filter = EventFilter {
        event_type,
        from: time_filter(&call, "from")?,
        to: time_filter(&call, "to")?,
    };
    let page = state
        .store
        .list_events(call.tenant(), &filter, &request)
        .await?;
    Ok(Reply::ok(page_json(&page, scope, Event::to_json)))
}

pub async fn get_event(state: &AppState, call: Call) -> ApiResult<Reply> {
    let id = call.path("id")?;
    let not_found = || ApiError::new(ErrorCode::EventNotFound, "no such event");
    if !IdKind::Event.is_valid(&id) {
        return Err(not_found());
    }
    let event = state
        .store
        .get_event(call.tenant(), &id)
        .await?
        .ok_or_else(not_found)?;
    let counts = state.store.delivery_counts_for_event(&event).await?;
    let mut summary = json!({"total": counts.values().sum::<u64>()});
    for status in DeliveryStatus::ALL {
        summary[status.as_str()] = Value::from(counts.get(&status).copied().unwrap_or(0));
    }
    let mut out = event.to_json();
    out["deliveries"] = summary;
    Ok(Reply::ok(out))
}
