//! Pages of one webhook's open deliveries: sent in order after an unpause, or cancelled
//! after a delete, [`PAGE`] at a time. A full page queues the next one, so no backlog is
//! ever worked inside one request or one invocation.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::breaker::Gate;
use super::client::parse_target;
use super::decide::{self, Attempted};
use super::health::{self, Tried};
use super::send::{Attempting, send_attempt};
use super::{Handled, PipelineError, metrics, random_share};
use crate::domain::delivery::DeliveryStatus;
use crate::domain::webhook::WebhookStatus;
use crate::queue::{QueueName, Task, TaskQueue, WebhookTask};
use crate::state::AppState;
use crate::storage::DeliveryStore;

/// Open deliveries handled per release or cancel task.
pub const PAGE: usize = 100;

/// How long one release task sends before it hands the rest of its page to the next task
/// (the deliver function's timeout is 180 s; one request may take 15 s).
pub const RELEASE_BUDGET: Duration = Duration::from_secs(60);

/// Sends a page of an unpaused webhook's buffered deliveries, oldest first, one after
/// another, so the receiver sees them in the order they happened. A failed one gets its own
/// retry task and does not hold up the rest. What is left (a full page, or the rest of
/// one when the time budget is spent) goes to the next release task.
pub(super) async fn release_page(
    state: &AppState,
    queues: &dyn TaskQueue,
    task: &WebhookTask,
) -> Result<Handled, PipelineError> {
    let started = Instant::now();
    let store = &state.store;
    let Some(webhook) = store
        .get_webhook(&task.tenant_id, &task.webhook_id)
        .await?
        .filter(|wh| wh.status == WebhookStatus::Active)
    else {
        return Ok(Handled::Done); // deleted (cancel handles it) or paused again (stay buffered)
    };
    let mut page = store
        .open_deliveries(
            &task.tenant_id,
            &task.webhook_id,
            DeliveryStatus::Buffered,
            PAGE,
        )
        .await?;
    page.sort_by(|a, b| a.id.cmp(&b.id));
    let full = page.len() == PAGE;
    let target = parse_target(&webhook.url);
    let credentials = state.sealer.credentials(&webhook).await?;
    let mut tried = Vec::new();
    let mut unsent = false;
    let mut held_back = None;
    for mut delivery in page {
        if started.elapsed() >= RELEASE_BUDGET {
            unsent = true;
            break;
        }
        // A webhook that does not answer keeps the rest buffered until its breaker lets
        // an attempt through.
        let permit = match state.warm.breakers.enter(&task.tenant_id, &webhook.id) {
            Gate::Go(permit) => permit,
            Gate::Defer(hold) => {
                held_back = Some(hold.wait);
                break;
            }
        };
        // Over the webhook's rate: the rest of the page comes back when there is room.
        if let Some(hold) = super::rate::hold(state, &webhook).await {
            drop(permit);
            // SQS delays whole seconds: a shorter wait would come back at once.
            held_back = Some(hold.wait.max(std::time::Duration::from_secs(1)));
            break;
        }
        let number = delivery.attempts + 1;
        let Some(event) = store.get_event(&task.tenant_id, &delivery.event_id).await? else {
            // Its event expired while it waited.
            delivery.status = DeliveryStatus::Failed;
            delivery.updated_at = crate::domain::now();
            store
                .save_delivery(
                    &delivery,
                    number,
                    DeliveryStatus::Buffered,
                    state.expires_at(),
                )
                .await?;
            continue;
        };
        let sent = send_attempt(
            &*state.transport,
            Attempting {
                credentials: &credentials,
                target: &target,
                event_id: &event.id,
                event_type: &event.event_type,
                body: Bytes::from(event.payload()),
                number,
            },
        )
        .await;
        permit.report(sent.attempt.status_code.is_some());
        tried.push(Tried::from(&sent.attempt));
        let verdict = decide::after_attempt(
            &state.config.retry_schedule,
            number,
            &sent,
            random_share(),
            Attempted::Automatically,
        );
        if let Some(next) = decide::record(&mut delivery, number, sent, verdict) {
            queues.send(QueueName::Delivery, &[next]).await?;
            metrics::retries_queued(1);
        }
        metrics::attempted(&delivery);
        store
            .save_delivery(
                &delivery,
                number,
                DeliveryStatus::Buffered,
                state.expires_at(),
            )
            .await?;
    }
    health::note(
        &*state.store,
        &state.warm.health,
        &webhook,
        &tried,
        state.config.auto_disable_after,
    )
    .await;
    if let Some(wait) = held_back {
        next_page(queues, Task::Release(task.clone()), wait).await?;
    } else if full || unsent {
        next_page(queues, Task::Release(task.clone()), Duration::ZERO).await?;
    }
    Ok(Handled::Done)
}

/// Cancels a page of a deleted webhook's open deliveries (nothing if it still exists: the
/// delete did not happen).
pub(super) async fn cancel_page(
    state: &AppState,
    queues: &dyn TaskQueue,
    task: &WebhookTask,
) -> Result<Handled, PipelineError> {
    let store: &dyn DeliveryStore = &*state.store;
    if state
        .store
        .get_webhook(&task.tenant_id, &task.webhook_id)
        .await?
        .is_some()
    {
        return Ok(Handled::Done);
    }
    let mut full = false;
    for status in [DeliveryStatus::Pending, DeliveryStatus::Buffered] {
        let page = store
            .open_deliveries(&task.tenant_id, &task.webhook_id, status, PAGE)
            .await?;
        full |= page.len() == PAGE;
        let now = crate::domain::now();
        for mut d in page {
            d.status = DeliveryStatus::Cancelled;
            d.next_attempt_at = None;
            d.updated_at = now;
            store
                .save_delivery(&d, u32::MAX, status, state.expires_at())
                .await?;
        }
    }
    if full {
        next_page(queues, Task::Cancel(task.clone()), Duration::ZERO).await?;
    } else {
        store
            .drop_buffered_count(&task.tenant_id, &task.webhook_id)
            .await?;
    }
    Ok(Handled::Done)
}

/// Queues the task that works the next page, after `wait`.
async fn next_page(
    queues: &dyn TaskQueue,
    task: Task,
    wait: Duration,
) -> Result<(), PipelineError> {
    queues.send(QueueName::Delivery, &[(task, wait)]).await?;
    Ok(())
}
