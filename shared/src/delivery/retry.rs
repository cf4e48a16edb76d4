//! Retry tasks: one more attempt at one delivery, parked until it is due, queued again
//! for later while its webhook's breaker holds it back, dropped when it is a duplicate,
//! closed without an attempt when its webhook is gone, paused or disabled.

use super::breaker::{Gate, Hold};
use super::decide::{self, Attempted, RetryStep};
use super::health::{self, Tried};
use super::send::send_event;
use super::{Handled, Message, PipelineError, Views, metrics, random_share};
use crate::domain::delivery::{Delivery, DeliveryStatus};
use crate::queue::{QueueName, RetryTask, TaskQueue};
use crate::state::AppState;
use crate::storage::StoreError;

/// Handles one retry task; its webhook comes from the batch's view of its tenant.
pub(super) async fn retry(
    state: &AppState,
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
    let mut early = None;
    if let Some(webhook_id) = &task.webhook_id {
        match state.warm.breakers.enter(&task.tenant_id, webhook_id) {
            Gate::Go(permit) => early = Some(permit),
            Gate::Defer(hold) => return hold_back(queues, task, hold).await,
        }
    }
    let Some(mut delivery) = store
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
    let step = decide::retry_step(&delivery, task.attempt, webhook.as_ref());
    // The task numbers the schedule's attempt; the attempt's own number counts those made
    // by hand too.
    let number = delivery.attempts + 1;
    let webhook = match (step, webhook) {
        (RetryStep::Attempt, Some(webhook)) => webhook,
        (RetryStep::Close(status), _) => {
            close(&mut delivery, status);
            save(state, &delivery, number).await?;
            return Ok(Handled::Done);
        }
        (RetryStep::Drop | RetryStep::Attempt, _) => return Ok(Handled::Done),
    };
    let Some(event) = store.get_event(&task.tenant_id, &delivery.event_id).await? else {
        close(&mut delivery, DeliveryStatus::Failed);
        save(state, &delivery, number).await?;
        return Ok(Handled::Done);
    };
    let permit = match early {
        Some(permit) if task.webhook_id.as_deref() == Some(webhook.id.as_str()) => permit,
        _ => match state.warm.breakers.enter(&task.tenant_id, &webhook.id) {
            Gate::Go(permit) => permit,
            Gate::Defer(hold) => return hold_back(queues, task, hold).await,
        },
    };
    // Over the webhook's rate: the same attempt later, no attempt charged.
    if let Some(hold) = super::rate::hold(state, &webhook).await {
        drop(permit);
        return hold_back(queues, task, hold).await;
    }
    let sent = send_event(state, &webhook, &event, number).await?;
    permit.report(sent.answered_in_time());
    let tried = Tried::from(&sent.attempt);
    let verdict = decide::after_attempt(
        &state.config.retry_schedule,
        task.attempt,
        &sent,
        random_share(),
        Attempted::Automatically,
    );
    if let Some(next) = decide::record(
        &mut delivery,
        number,
        sent,
        verdict,
        Attempted::Automatically,
    ) {
        queues.send(QueueName::Delivery, &[next]).await?;
        metrics::retries_queued(1);
    }
    metrics::attempted(&delivery);
    crate::activity::attempted(&delivery);
    save(state, &delivery, number).await?;
    health::note(
        &*state.store,
        &state.warm.health,
        &webhook,
        &[tried],
        state.config.auto_disable_after,
    )
    .await;
    Ok(Handled::Done)
}

fn close(delivery: &mut Delivery, status: DeliveryStatus) {
    delivery.status = status;
    delivery.next_attempt_at = None;
    delivery.updated_at = crate::domain::now();
}

/// Saves a pending delivery's new state unless a later attempt or a close got there first
/// (then there is nothing to do).
async fn save(state: &AppState, delivery: &Delivery, attempt: u32) -> Result<(), PipelineError> {
    state
        .store
        .save_delivery(
            delivery,
            attempt,
            DeliveryStatus::Pending,
            state.expires_at(),
        )
        .await?;
    Ok(())
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
