//! Retry tasks: one more attempt at one delivery, parked until it is due, queued again
//! for later while its webhook's breaker holds it back, dropped when it is a duplicate,
//! closed without an attempt when its webhook is gone, paused or disabled.

use super::Pipeline;
use super::attempt::{self, Endpoint};
use super::breaker::Hold;
use super::decide::{self, Attempted, RetryStep};
use super::health;
use super::{Handled, Message, PipelineError, Views, random_share};
use crate::domain::delivery::DeliveryStatus;
use crate::queue::{QueueName, RetryTask, TaskQueue};
use crate::storage::StoreError;

/// Handles one retry task; its webhook comes from the batch's view of its tenant.
pub(super) async fn retry(
    state: &Pipeline<'_>,
    queues: &dyn TaskQueue,
    views: &Views,
    message: &Message<RetryTask>,
) -> Result<Handled, PipelineError> {
    let task = &message.task;
    let store = &state.store;
    if let Some(wait) = decide::still_to_wait(task.not_before, chrono::Utc::now()) {
        return message.park(queues, wait).await;
    }
    // A webhook that does not answer holds its retries: asked before anything is read, so
    // a held-back delivery costs a message and no storage read each time it comes back.
    let attempts = state.attempts();
    let mut early = None;
    if let Some(webhook_id) = &task.webhook_id {
        match attempts.enter(&task.tenant_id, webhook_id) {
            Ok(permit) => early = Some(permit),
            Err(hold) => return hold_back(queues, task, hold).await,
        }
    }
    let Some(delivery) = store
        .get_delivery(&task.tenant_id, &task.delivery_id)
        .await?
    else {
        return match decide::wait_for_missing_record(message.receive_count()) {
            Some(wait) => message.park(queues, wait).await,
            None => Ok(Handled::Done),
        };
    };
    let view = match views.get(task.tenant_id.as_str()) {
        Some(Ok(view)) => view,
        Some(Err(e)) => return Err(StoreError::Unavailable(e.to_string()).into()),
        None => return Err(StoreError::Other("no view of the task's tenant".into()).into()),
    };
    let webhook = view
        .webhooks
        .iter()
        .find(|wh| wh.id == delivery.webhook_id)
        .cloned();
    let expires = state.expires_at();
    let webhook = match (
        decide::retry_step(&delivery, task.attempt, webhook.as_ref()),
        webhook,
    ) {
        (RetryStep::Attempt, Some(webhook)) => webhook,
        (RetryStep::Close(status), _) => {
            attempt::close(*store, delivery, status, expires).await?;
            return Ok(Handled::Done);
        }
        (RetryStep::Drop | RetryStep::Attempt, _) => return Ok(Handled::Done),
    };
    let Some(event) = store.get_event(&task.tenant_id, &delivery.event_id).await? else {
        attempt::close(*store, delivery, DeliveryStatus::Failed, expires).await?;
        return Ok(Handled::Done);
    };
    let permit = match early {
        Some(permit) if task.webhook_id.as_deref() == Some(webhook.id.as_str()) => permit,
        _ => match attempts.enter(&task.tenant_id, &webhook.id) {
            Ok(permit) => permit,
            Err(hold) => return hold_back(queues, task, hold).await,
        },
    };
    // Over the webhook's rate: the same attempt later, no attempt charged.
    if let Err(hold) = attempts.within_rate(&webhook).await {
        drop(permit);
        return hold_back(queues, task, hold).await;
    }
    let endpoint = Endpoint::open(state.sealer, &webhook).await?;
    let mut delivery = delivery;
    let made = attempts
        .make(
            &mut delivery,
            Some(permit),
            endpoint.send(&event),
            Attempted::Automatically,
        )
        .await;
    let from = DeliveryStatus::Pending;
    attempt::queue_then_save(queues, *store, &delivery, made.retry, from, expires).await?;
    health::note(
        state.store,
        &state.warm.health,
        &webhook,
        &[made.tried],
        state.config.auto_disable_after,
    )
    .await;
    Ok(Handled::Done)
}

/// Holds a retry task back as its webhook's breaker says: the same attempt queued again as
/// a new message (see [`decide::defer_task`]), and this one done.
async fn hold_back(
    queues: &dyn TaskQueue,
    task: &RetryTask,
    hold: Hold,
) -> Result<Handled, PipelineError> {
    let again = decide::defer_task(task, hold, random_share(), chrono::Utc::now());
    queues.send(QueueName::Delivery, &[again]).await?;
    Ok(Handled::Done)
}
