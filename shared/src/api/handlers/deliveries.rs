//! The delivery log: list with filters, read with every attempt, retry by hand, and the
//! synchronous test delivery of a webhook.

use serde_json::json;

use super::events::time_filter;
use crate::api::Reply;
use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::pagination::{CursorScope, page_json, page_request};
use crate::api::request::Call;
use crate::delivery::attempt::{Attempted, Endpoint};
use crate::domain::delivery::{Delivery, DeliveryStatus};
use crate::domain::event::{Event, check_data};
use crate::domain::format_time;
use crate::domain::validation::is_valid_event_type_name;
use crate::ids::IdKind;
use crate::state::AppState;
use crate::storage::{DeliveryFilter, Saved};

pub async fn list_deliveries(state: &AppState, call: Call) -> ApiResult<Reply> {
    let scope = CursorScope {
        list: "deliveries",
        tenant_id: call.tenant(),
    };
    let request = page_request(&call, scope)?;
    let webhook_id = id_filter(&call, "webhook_id", IdKind::Webhook, "a webhook id")?;
    let event_id = id_filter(&call, "event_id", IdKind::Event, "an event id")?;
    let event_type = call.query("event_type");
    if let Some(t) = &event_type
        && !is_valid_event_type_name(t)
    {
        return Err(ApiError::invalid_field(
            "event_type",
            "event_type must be an event type name",
        ));
    }
    let status = call
        .query("status")
        .map(|s| {
            DeliveryStatus::parse(&s).ok_or_else(|| {
                ApiError::invalid_field(
                    "status",
                    "status must be pending, succeeded, failed, buffered or cancelled",
                )
            })
        })
        .transpose()?;
    let filter = DeliveryFilter {
        webhook_id,
        event_id,
        event_type,
        status,
        from: time_filter(&call, "from")?,
        to: time_filter(&call, "to")?,
    };
    let page = state
        .store
        .list_deliveries(call.tenant(), &filter, &request)
        .await?;
    Ok(Reply::ok(page_json(&page, scope, |d| d.to_json(false))))
}

/// A query filter naming a record by id: 400 when it is not an id of that kind.
fn id_filter(call: &Call, name: &str, kind: IdKind, what: &str) -> ApiResult<Option<String>> {
    match call.query(name) {
        Some(id) if !kind.is_valid(&id) => Err(ApiError::invalid_field(
            name,
            format!("{name} must be {what}"),
        )),
        found => Ok(found),
    }
}

async fn load(state: &AppState, call: &Call) -> ApiResult<Delivery> {
    let id = call.path("id")?;
    let not_found = || ApiError::new(ErrorCode::DeliveryNotFound, "no such delivery");
    if !IdKind::Delivery.is_valid(&id) {
        return Err(not_found());
    }
    state
        .store
        .get_delivery(call.tenant(), &id)
        .await?
        .ok_or_else(not_found)
}

pub async fn get_delivery(state: &AppState, call: Call) -> ApiResult<Reply> {
    let delivery = load(state, &call).await?;
    Ok(Reply::ok(delivery.to_json(true)))
}

/// Sends the delivery again now, whatever its status, and records the attempt. A success
/// ends it; if the attempt fails, a pending delivery keeps its automatic retries (its next
/// one due as before) and any other ends `failed`.
pub async fn retry_delivery(state: &AppState, call: Call) -> ApiResult<Reply> {
    let mut delivery = load(state, &call).await?;
    let webhook = state
        .store
        .get_webhook(call.tenant(), &delivery.webhook_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::WebhookNotFound,
                "this delivery's webhook was deleted",
            )
        })?;
    let event = state
        .store
        .get_event(call.tenant(), &delivery.event_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::EventNotFound,
                "this delivery's event has expired",
            )
        })?;
    let previous = delivery.status;
    let endpoint = Endpoint::open(&state.sealer, &webhook).await?;
    let send = endpoint.send(&event);
    // Sent now, whatever the breaker says: the tenant asked for this attempt. Nothing
    // follows it to queue (a retry by hand leaves the schedule where it was).
    let attempts = state.attempts();
    attempts
        .make(&mut delivery, None, send, Attempted::ByHand)
        .await;
    match state
        .store
        .save_delivery(&delivery, delivery.attempts, previous, state.expires_at())
        .await?
    {
        Saved::Written => Ok(Reply::ok(delivery.to_json(true))),
        Saved::Superseded => Err(ApiError::new(
            ErrorCode::Conflict,
            "the delivery changed while it was being retried; read it again",
        )),
    }
}

/// One signed delivery of a test event, now, answered with its outcome. Nothing is stored.
pub async fn test_webhook(state: &AppState, call: Call) -> ApiResult<Reply> {
    let id = call.path("id")?;
    if !IdKind::Webhook.is_valid(&id) {
        return Err(ApiError::webhook_not_found());
    }
    let mut body = call.body()?;
    body.allow(&["event", "data"], "")?;
    let event_type = body.require_string("event")?;
    let data = body
        .take("data")
        .map(check_data)
        .transpose()?
        .unwrap_or_default();
    body.finish("")?;
    let webhook = state
        .store
        .get_webhook(call.tenant(), &id)
        .await?
        .ok_or_else(ApiError::webhook_not_found)?;
    if !is_valid_event_type_name(&event_type) {
        return Err(ApiError::invalid_field(
            "event",
            "event must be an event type name",
        ));
    }
    let event = Event::new(call.tenant(), &event_type, data);
    let endpoint = Endpoint::open(&state.sealer, &webhook).await?;
    let sent = state.attempts().send_test(&endpoint, &event).await;
    let attempt = sent.attempt;
    let success = attempt.succeeded();
    let message = match (&attempt.status_code, &attempt.error) {
        (Some(code), _) if success => format!("delivered: the endpoint answered {code}"),
        (_, Some(error)) => format!("not delivered: {error}"),
        _ => "not delivered".to_string(),
    };
    Ok(Reply::ok(json!({
        "success": success,
        "message": message,
        "details": {
            "status_code": attempt.status_code,
            "response_time": attempt.response_time,
            "timestamp": format_time(attempt.at),
            "error": attempt.error,
        }
    })))
}
