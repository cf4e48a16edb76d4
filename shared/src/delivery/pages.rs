//! Pages of one webhook's open deliveries: released for sending after an unpause, or
//! cancelled after a delete, [`PAGE`] at a time. A full page queues the next one, so no
//! backlog is ever worked inside one request or one invocation.

use std::time::Duration;

use super::decide;
use super::{Handled, PipelineError};
use crate::domain::delivery::DeliveryStatus;
use crate::domain::webhook::WebhookStatus;
use crate::queue::{QueueName, Task, TaskQueue, WebhookTask};
use crate::state::AppState;
use crate::storage::DeliveryStore;

/// Open deliveries handled per release or cancel task.
pub const PAGE: usize = 100;

/// Sends a page of a webhook's buffered deliveries on their way, oldest first: a retry
/// task each, then the record marked pending.
pub(super) async fn release_page(
    state: &AppState,
    queues: &dyn TaskQueue,
    task: &WebhookTask,
) -> Result<Handled, PipelineError> {
    let store = &state.store;
    let webhook = store.get_webhook(&task.tenant_id, &task.webhook_id).await?;
    if webhook.is_none_or(|wh| wh.status != WebhookStatus::Active) {
        return Ok(Handled::Done); // deleted (cancel handles it) or paused again (stay buffered)
    }
    let page = store
        .open_deliveries(
            &task.tenant_id,
            &task.webhook_id,
            DeliveryStatus::Buffered,
            PAGE,
        )
        .await?;
    let now = crate::domain::now();
    queues
        .send(QueueName::Delivery, &decide::release_tasks(&page, now))
        .await?;
    for mut d in page.iter().cloned() {
        d.status = DeliveryStatus::Pending;
        d.next_attempt_at = Some(now);
        d.updated_at = now;
        store
            .save_delivery(
                &d,
                d.attempts + 1,
                &[DeliveryStatus::Buffered],
                state.expires_at(),
            )
            .await?;
    }
    if page.len() == PAGE {
        next_page(queues, Task::Release(task.clone())).await?;
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
                .save_delivery(&d, u32::MAX, &[status], state.expires_at())
                .await?;
        }
    }
    if full {
        next_page(queues, Task::Cancel(task.clone())).await?;
    }
    Ok(Handled::Done)
}

/// Queues the task that works the next page.
async fn next_page(queues: &dyn TaskQueue, task: Task) -> Result<(), PipelineError> {
    queues
        .send(QueueName::Delivery, &[(task, Duration::ZERO)])
        .await?;
    Ok(())
}
