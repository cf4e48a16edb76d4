//! The sweeper: nothing accepted may be stranded. Work is stranded only when its message
//! is: an event whose fan-out kept failing (sustained throttling) or a retry task that
//! did, each having exhausted its queue's receives and landed in a dead-letter queue. On a
//! schedule (an EventBridge rule in AWS, a timer in `make run`), the sweeper brings those
//! messages back ([`crate::queue::redrive`]), each after `SWEEP_MARGIN` so storage has time
//! to recover, and each at most a few times before it waits for `webhooks-admin redrive`.
//! Bringing a message back is idempotent: a resumed fan-out skips the records that exist,
//! and a retry task whose attempt was made is dropped.
//!
//! (The first sweeper scanned an index of open work instead; that index cost two index
//! writes per event and per failing delivery, and found nothing the dead-letter queues
//! do not hold.)

use serde::Serialize;

use super::PipelineError;
use crate::queue::redrive::Options;
use crate::queue::{QueueError, QueueName};
use crate::state::AppState;

/// Messages looked at per dead-letter queue per sweep; the next sweep continues.
pub const SWEEP_LIMIT: usize = 1000;

/// What one sweep brought back, and what it left for the operator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    /// From the ingest dead-letter queue.
    pub events: usize,
    /// From the delivery dead-letter queue.
    pub tasks: usize,
    /// Rejected as never processable, or brought back as often as the sweeper may.
    pub left: usize,
}

/// Brings back what the dead-letter queues hold.
pub async fn sweep(state: &AppState) -> Result<Swept, PipelineError> {
    let queues = state
        .queues()
        .ok_or_else(|| QueueError("the queues are not configured".into()))?;
    let options = Options {
        include_rejected: false,
        automatic: true,
        limit: SWEEP_LIMIT,
        delay: state.config.sweep_margin,
    };
    let mut swept = Swept::default();
    for queue in [QueueName::Ingest, QueueName::Delivery] {
        let done = queues.redrive(queue, &options, &|_| {}).await?;
        if done.moved > 0 {
            tracing::warn!(
                moved = done.moved,
                ?queue,
                "sweeper: dead-letter messages brought back"
            );
        }
        if done.exhausted > 0 {
            tracing::error!(
                exhausted = done.exhausted,
                ?queue,
                "sweeper: messages brought back as often as allowed wait for webhooks-admin redrive"
            );
        }
        match queue {
            QueueName::Ingest => swept.events = done.moved,
            QueueName::Delivery => swept.tasks = done.moved,
        }
        swept.left += done.kept.len() + done.exhausted;
        super::metrics::swept(done.moved, done.exhausted);
    }
    tracing::info!(
        events = swept.events,
        tasks = swept.tasks,
        left = swept.left,
        "sweep done"
    );
    Ok(swept)
}
