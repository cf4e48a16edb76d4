//! Replay (SPEC §3, `replay_event`): an event delivered again, as new delivery records.
//!
//! With `webhook_id`, one delivery to that webhook, whether it was subscribed to the type
//! or created after the event (it must be active). Without, one to every active webhook
//! the event would reach now (type and filter) that has no delivery of it yet. Either way
//! the request only writes the records and queues their first attempts: the deliver
//! function sends them as it sends any retry (signed with each webhook's current secret,
//! `webhook-id` the event's id, breakers and rate limits applied), never inside the
//! request.

use std::collections::HashSet;

use serde_json::json;

use super::webhooks::require_active;
use crate::api::Reply;
use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::request::Call;
use crate::delivery::attempt;
use crate::domain::delivery::{Delivery, DeliveryStatus, delivery_id, replay_delivery_id};
use crate::domain::event::Event;
use crate::domain::webhook::Webhook;
use crate::domain::{format_time, now};
use crate::ids::IdKind;
use crate::queue::QueueName;
use crate::state::AppState;

pub async fn replay_event(state: &AppState, call: Call) -> ApiResult<Reply> {
    let id = call.path("id")?;
    let mut body = call.optional_body()?;
    let webhook_id = body.take_string("webhook_id")?;
    body.finish("")?;
    let not_found = || ApiError::new(ErrorCode::EventNotFound, "no such event");
    if !IdKind::Event.is_valid(&id) {
        return Err(not_found());
    }
    let tenant = call.tenant();
    let event = state
        .store
        .get_event(tenant, &id)
        .await?
        .ok_or_else(not_found)?;
    let queues = crate::api::queues(state)?;
    let at = now();
    let mut deliveries = match webhook_id {
        Some(webhook_id) => vec![to_one(state, tenant, &event, &webhook_id).await?],
        None => to_every_match(state, tenant, &event).await?,
    };
    let tasks: Vec<_> = deliveries
        .iter_mut()
        .map(|d| attempt::due_now(d, at))
        .collect();
    // The attempts are queued before the records that mention them are written (a task
    // that finds no record yet waits for it); a write that fails leaves tasks that find
    // nothing and are dropped.
    queues
        .send(QueueName::Delivery, &tasks)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "could not queue a replay; answering 503");
            ApiError::unavailable()
        })?;
    state
        .store
        .put_deliveries(&deliveries, state.expires_at())
        .await?;
    Ok(Reply::accepted(
        json!({"event_id": event.id, "queued": deliveries.len()}),
    ))
}

/// A new delivery of the event to one webhook: the event's usual delivery id if it has
/// none yet, else a fresh one beside it.
async fn to_one(
    state: &AppState,
    tenant: &str,
    event: &Event,
    webhook_id: &str,
) -> ApiResult<Delivery> {
    if !IdKind::Webhook.is_valid(webhook_id) {
        return Err(ApiError::webhook_not_found().with_field("webhook_id"));
    }
    let webhook = state
        .store
        .get_webhook(tenant, webhook_id)
        .await?
        .ok_or_else(|| ApiError::webhook_not_found().with_field("webhook_id"))?;
    require_active(&webhook, "only an active webhook gets a replay")
        .map_err(|e| e.with_field("webhook_id"))?;
    let mut delivery = new_delivery(event, &webhook);
    let existing = state
        .store
        .existing_deliveries(tenant, std::slice::from_ref(&delivery.id))
        .await?;
    if !existing.is_empty() {
        delivery.id = replay_delivery_id(&event.id, &webhook.id);
    }
    Ok(delivery)
}

/// A delivery to every active webhook the event reaches now that has none of it yet.
async fn to_every_match(state: &AppState, tenant: &str, event: &Event) -> ApiResult<Vec<Delivery>> {
    let webhooks = state.store.list_webhooks(tenant).await?;
    let created = format_time(event.created_at);
    let matching: Vec<&Webhook> = webhooks
        .iter()
        .filter(|wh| attempt::sends_now(wh, event, &created))
        .collect();
    let ids: Vec<String> = matching
        .iter()
        .map(|wh| delivery_id(&event.id, &wh.id))
        .collect();
    let existing: HashSet<String> = state
        .store
        .existing_deliveries(tenant, &ids)
        .await?
        .into_iter()
        .map(|d| d.id)
        .collect();
    Ok(matching
        .into_iter()
        .map(|wh| new_delivery(event, wh))
        .filter(|d| !existing.contains(&d.id))
        .collect())
}

fn new_delivery(event: &Event, webhook: &Webhook) -> Delivery {
    Delivery::new(
        &event.tenant_id,
        &event.id,
        &webhook.id,
        &event.event_type,
        DeliveryStatus::Pending,
        now(),
    )
}
