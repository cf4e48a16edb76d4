//! The sweeper: nothing accepted may be stranded. An event whose fan-out never finished
//! (its message exhausted the queue's receives under sustained throttling and went to the
//! dead-letter queue) and a pending delivery whose next attempt is overdue (its retry task
//! went there) are found through the sparse open-work index and queued again, on a
//! schedule (an EventBridge rule in AWS, a timer in `make run`). Queueing again is
//! idempotent: a resumed fan-out skips the records that exist, and a retry task whose
//! attempt was made is dropped.

use std::time::Duration;

use serde::Serialize;

use super::PipelineError;
use crate::queue::{EventTask, QueueError, QueueName, RetryTask, Task};
use crate::state::AppState;
use crate::storage::OpenWork;

/// Items queued again per sweep; the next sweep continues with the rest.
pub const SWEEP_LIMIT: usize = 1000;

/// What one sweep queued again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    pub events: usize,
    pub deliveries: usize,
}

/// Queues again the work overdue by more than `SWEEP_MARGIN`.
pub async fn sweep(state: &AppState) -> Result<Swept, PipelineError> {
    let queues = state
        .queues()
        .ok_or_else(|| QueueError("the queues are not configured".into()))?;
    let now = crate::domain::now();
    let margin = chrono::TimeDelta::from_std(state.config.sweep_margin).unwrap_or_default();
    let before = now - margin;
    let mut swept = Swept::default();
    let mut tasks = Vec::new();
    for work in state.store.overdue_work(before, SWEEP_LIMIT).await? {
        match work {
            OpenWork::Event {
                tenant_id,
                event_id,
            } => {
                let Some(event) = state.store.get_event(&tenant_id, &event_id).await? else {
                    continue;
                };
                if !event.fanned_out {
                    tracing::warn!(%tenant_id, %event_id, "sweeper: an event's fan-out never finished; queued again");
                    tasks.push(Task::Event(EventTask::stored(&event, true)));
                    swept.events += 1;
                }
            }
            OpenWork::Delivery {
                tenant_id,
                delivery_id,
                attempts,
            } => {
                tracing::warn!(%tenant_id, %delivery_id, "sweeper: a delivery's next attempt is overdue; queued again");
                tasks.push(Task::Retry(RetryTask {
                    tenant_id,
                    delivery_id,
                    attempt: attempts + 1,
                    not_before: now.timestamp_millis(),
                }));
                swept.deliveries += 1;
            }
        }
    }
    let tasks: Vec<(Task, Duration)> = tasks.into_iter().map(|t| (t, Duration::ZERO)).collect();
    queues.send(QueueName::Delivery, &tasks).await?;
    tracing::info!(
        events = swept.events,
        deliveries = swept.deliveries,
        "sweep done"
    );
    Ok(swept)
}
