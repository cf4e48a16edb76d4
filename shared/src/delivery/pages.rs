//! Pages of one webhook's deliveries: the buffered ones sent in order after an unpause, the
//! failed ones sent again in order by a recover, or the open ones cancelled after a
//! delete, [`PAGE`] at a time. A full page queues the next one, so no backlog is
//! ever worked inside one request or one invocation.

use std::time::{Duration, Instant};

use super::Pipeline;
use super::attempt::{self, Endpoint};
use super::decide::Attempted;
use super::health;
use super::{Handled, PipelineError};
use crate::domain::delivery::{Delivery, DeliveryStatus};
use crate::domain::webhook::{Webhook, WebhookStatus};
use crate::queue::{QueueName, RecoverTask, Task, TaskQueue, WebhookTask};
use crate::storage::{DeliveryStore, FailedRange};

/// Open deliveries handled per release or cancel task.
pub const PAGE: usize = 100;

/// How long one release task sends before it hands the rest of its page to the next task
/// (the deliver function's timeout is 180 s; one request may take 15 s).
pub const RELEASE_BUDGET: Duration = Duration::from_secs(60);

/// Global secondary indexes are eventually consistent: a page read there may miss a
/// delivery written a moment before. When a release, recover or cancel seems done, one
/// more pass comes this much later (each of at most [`SETTLE_PASSES`]) for what the index
/// had not shown yet; a release goes on while the webhook's buffered count says some wait.
pub const SETTLE_WAIT: Duration = Duration::from_secs(3);
pub const SETTLE_PASSES: u8 = 3;

/// Sends a page of an unpaused webhook's buffered deliveries, oldest first, one after
/// another, so the receiver sees them in the order they happened. A failed one gets its own
/// retry task and does not hold up the rest. What is left (a full page, or the rest of
/// one when the time budget is spent) goes to the next release task.
pub(super) async fn release_page(
    state: &Pipeline<'_>,
    queues: &dyn TaskQueue,
    task: &WebhookTask,
) -> Result<Handled, PipelineError> {
    let started = Instant::now();
    let store = &state.store;
    let Some(webhook) = active_webhook(state, &task.tenant_id, &task.webhook_id).await? else {
        return Ok(Handled::Done); // deleted (cancel handles it) or paused again (stay buffered)
    };
    let page = store
        .open_deliveries(
            &task.tenant_id,
            &task.webhook_id,
            DeliveryStatus::Buffered,
            PAGE,
        )
        .await?;
    let full = page.len() == PAGE;
    let found = !page.is_empty();
    // The index may not show the last moment's buffered writes yet: a short page when the
    // buffered count (a consistent read) says more are waiting. Sent now, those would go
    // out behind later ones; so the page waits for the index first (at most
    // SETTLE_PASSES times, then it goes as it is).
    if !full && task.settle < SETTLE_PASSES {
        let waiting = store
            .buffered_count(&task.tenant_id, &task.webhook_id)
            .await?;
        if waiting > page.len() as u64 {
            let next = WebhookTask {
                settle: task.settle + 1,
                ..task.clone()
            };
            next_page(queues, Task::Release(next), SETTLE_WAIT).await?;
            return Ok(Handled::Done);
        }
    }
    let worked = send_in_order(
        state,
        queues,
        &webhook,
        page,
        started,
        Attempted::Automatically,
    )
    .await?;
    if let Some(wait) = worked.next_page_after(full) {
        let next = WebhookTask {
            settle: 0,
            ..task.clone()
        };
        next_page(queues, Task::Release(next), wait).await?;
        return Ok(Handled::Done);
    }
    // Seemingly done: the buffered count (a consistent read) says whether some are left
    // that the index did not show yet.
    let left = store
        .buffered_count(&task.tenant_id, &task.webhook_id)
        .await?;
    if left == 0 {
        return Ok(Handled::Done);
    }
    let settle = if found { 1 } else { task.settle + 1 };
    if settle <= SETTLE_PASSES {
        let next = WebhookTask {
            settle,
            ..task.clone()
        };
        next_page(queues, Task::Release(next), SETTLE_WAIT).await?;
    } else {
        // None found in all those passes: the count is off (buffered deliveries that
        // expired, say). It is what an unpause answers, so it is set right.
        tracing::warn!(
            left,
            "the buffered count names deliveries no page finds; it is reset"
        );
        store
            .drop_buffered_count(&task.tenant_id, &task.webhook_id)
            .await?;
    }
    Ok(Handled::Done)
}

/// Sends a page of a webhook's failed deliveries again (`recover_webhook`), oldest first,
/// one after another, each as one more attempt on its record; a re-send that fails leaves
/// its delivery failed (an attempt asked for, like a manual retry, is final). The next
/// page starts after the last delivery this one reached.
pub(super) async fn recover_page(
    state: &Pipeline<'_>,
    queues: &dyn TaskQueue,
    task: &RecoverTask,
) -> Result<Handled, PipelineError> {
    let started = Instant::now();
    let Some(webhook) = active_webhook(state, &task.tenant_id, &task.webhook_id).await? else {
        return Ok(Handled::Done); // deleted, paused or disabled since: the rest stays failed
    };
    let (Some(since), Some(until)) = (
        chrono::DateTime::from_timestamp_millis(task.since),
        chrono::DateTime::from_timestamp_millis(task.until),
    ) else {
        return Ok(Handled::Done);
    };
    let range = FailedRange {
        since,
        until,
        after: task.after.clone(),
    };
    let mut page = state
        .store
        .failed_deliveries(&task.tenant_id, &task.webhook_id, &range, PAGE)
        .await?;
    let full = page.len() == PAGE;
    if task.settle > 0 {
        // A settling pass reads the whole range again: what this recover (or anything
        // else) attempted since it was asked is left alone.
        let asked = task.requested_at.unwrap_or(task.until);
        page.retain(|d| {
            d.last_attempt()
                .is_none_or(|a| a.at.timestamp_millis() < asked)
        });
    }
    let worked = send_in_order(state, queues, &webhook, page, started, Attempted::ByHand).await?;
    if let Some(wait) = worked.next_page_after(full) {
        // A full page sent to its end has `done_until` its last delivery.
        let next = Task::Recover(RecoverTask {
            after: worked.done_until.or_else(|| task.after.clone()),
            ..task.clone()
        });
        next_page(queues, next, wait).await?;
    } else if task.settle == 0 {
        // Seemingly done: once more a moment later, from the start of the range, for
        // deliveries that failed just before the recover and the index did not show.
        let next = Task::Recover(RecoverTask {
            after: None,
            settle: 1,
            ..task.clone()
        });
        next_page(queues, next, SETTLE_WAIT).await?;
    }
    Ok(Handled::Done)
}

/// The webhook of a page task, if it exists and is active.
async fn active_webhook(
    state: &Pipeline<'_>,
    tenant_id: &str,
    webhook_id: &str,
) -> Result<Option<Webhook>, PipelineError> {
    Ok(state
        .store
        .get_webhook(tenant_id, webhook_id)
        .await?
        .filter(|wh| wh.status == WebhookStatus::Active))
}

/// Why a page stopped before its end.
enum Stop {
    /// The webhook's breaker or rate limit holds the rest back this long.
    Held(Duration),
    /// [`RELEASE_BUDGET`] is spent.
    OutOfTime,
}

/// How far a page got.
struct Worked {
    /// The last delivery attempted (or found closed), in the page's order.
    done_until: Option<String>,
    stop: Option<Stop>,
}

impl Worked {
    /// When the task for the rest should run, if anything is left: after the hold, at once
    /// when the time ran out or the page was full, never when a short page was finished.
    fn next_page_after(&self, full: bool) -> Option<Duration> {
        match self.stop {
            Some(Stop::Held(wait)) => Some(wait),
            Some(Stop::OutOfTime) => Some(Duration::ZERO),
            None => full.then_some(Duration::ZERO),
        }
    }
}

/// Attempts each delivery of `page` (oldest first) once, one after another, from the
/// status it is in, recording each attempt and queueing what follows it, until the
/// page ends, the time budget is spent or the webhook's breaker or rate limit holds
/// the rest back.
async fn send_in_order(
    state: &Pipeline<'_>,
    queues: &dyn TaskQueue,
    webhook: &Webhook,
    mut page: Vec<Delivery>,
    started: Instant,
    by: Attempted,
) -> Result<Worked, PipelineError> {
    page.sort_by(|a, b| a.id.cmp(&b.id));
    let store = &state.store;
    let endpoint = Endpoint::open(state.sealer, webhook).await?;
    let mut tried = Vec::new();
    let mut worked = Worked {
        done_until: None,
        stop: None,
    };
    let attempts = state.attempts();
    for mut delivery in page {
        if started.elapsed() >= RELEASE_BUDGET {
            worked.stop = Some(Stop::OutOfTime);
            break;
        }
        // A webhook that does not answer, or is over its rate, keeps the rest waiting
        // until there is room (SQS delays whole seconds: a shorter wait would come back at
        // once).
        let permit = match attempts.admit(webhook).await {
            Ok(permit) => permit,
            Err(hold) => {
                worked.stop = Some(Stop::Held(hold.wait.max(Duration::from_secs(1))));
                break;
            }
        };
        let from = delivery.status;
        worked.done_until = Some(delivery.id.clone());
        let Some(event) = store
            .get_event(&webhook.tenant_id, &delivery.event_id)
            .await?
        else {
            // Its event expired while it waited.
            if from != DeliveryStatus::Failed {
                attempt::close(*store, delivery, DeliveryStatus::Failed, state.expires_at())
                    .await?;
            }
            continue;
        };
        let send = endpoint.send(&event);
        let made = attempts.make(&mut delivery, Some(permit), send, by).await;
        tried.push(made.tried);
        attempt::queue_then_save(
            queues,
            *store,
            &delivery,
            made.retry,
            from,
            state.expires_at(),
        )
        .await?;
    }
    health::note(
        state.store,
        &state.warm.health,
        webhook,
        &tried,
        state.config.auto_disable_after,
    )
    .await;
    Ok(worked)
}

/// Cancels a page of a deleted webhook's open deliveries (nothing if it still exists: the
/// delete did not happen).
pub(super) async fn cancel_page(
    state: &Pipeline<'_>,
    queues: &dyn TaskQueue,
    task: &WebhookTask,
) -> Result<Handled, PipelineError> {
    let store: &dyn DeliveryStore = state.store;
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
            d.close(DeliveryStatus::Cancelled, now);
            store
                .save_delivery(&d, u32::MAX, status, state.expires_at())
                .await?;
        }
    }
    if full {
        next_page(queues, Task::Cancel(task.clone()), Duration::ZERO).await?;
    } else if task.settle == 0 {
        // Seemingly done: once more a moment later, for what the index did not show yet.
        let next = WebhookTask {
            settle: 1,
            ..task.clone()
        };
        next_page(queues, Task::Cancel(next), SETTLE_WAIT).await?;
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
