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

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Pipeline;
use super::PipelineError;
use crate::queue::redrive::Options;
use crate::queue::{QueueError, QueueName};

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

/// What the sweeper function is asked: its schedule's sweep, or (`{"redrive": {...}}`, from
/// `webhooks-admin redrive`) a redrive by hand.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedriveRequest {
    /// Bring back rejected messages too (those that can be read now).
    #[serde(default)]
    pub include_rejected: bool,
}

/// One dead-letter queue's part of a redrive by hand.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRedrive {
    /// Messages brought back.
    pub moved: usize,
    /// Why each message left behind was (rejected as never processable, or unreadable).
    pub kept: Vec<String>,
}

/// What a redrive by hand did, per dead-letter queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedrivenByHand {
    pub ingest: QueueRedrive,
    pub delivery: QueueRedrive,
}

/// Messages looked at per dead-letter queue in one redrive by hand (the command asks again
/// until nothing more comes back).
pub const REDRIVE_LIMIT: usize = 2000;

/// The sweeper function's handler: a redrive by hand when the event asks for one, else the
/// scheduled sweep (whatever the schedule's event holds).
pub async fn handle<'a>(
    state: impl Into<Pipeline<'a>>,
    event: &Value,
) -> Result<Value, PipelineError> {
    let state = &state.into();
    let answer = match event.get("redrive") {
        Some(asked) => {
            let request: RedriveRequest = serde_json::from_value(asked.clone()).unwrap_or_default();
            serde_json::to_value(redrive_by_hand(state, &request).await?)
        }
        None => serde_json::to_value(sweep(state).await?),
    };
    Ok(answer.unwrap_or_default())
}

/// Brings back the dead-letter queues' messages however often the sweeper already did
/// (`webhooks-admin redrive`), up to [`REDRIVE_LIMIT`] per queue, as tasks on the delivery
/// queue; only the service's roles may send there.
pub async fn redrive_by_hand<'a>(
    state: impl Into<Pipeline<'a>>,
    request: &RedriveRequest,
) -> Result<RedrivenByHand, PipelineError> {
    let state = state.into();
    let queues = state
        .queues()
        .ok_or_else(|| QueueError("the queues are not configured".into()))?;
    let options = Options {
        include_rejected: request.include_rejected,
        automatic: false,
        limit: REDRIVE_LIMIT,
        delay: std::time::Duration::ZERO,
    };
    let mut done = RedrivenByHand::default();
    for (queue, into) in [
        (QueueName::Ingest, &mut done.ingest),
        (QueueName::Delivery, &mut done.delivery),
    ] {
        let redriven = queues.redrive(queue, &options, &|_| {}).await?;
        into.moved = redriven.moved;
        into.kept = redriven.kept;
    }
    tracing::warn!(
        events = done.ingest.moved,
        tasks = done.delivery.moved,
        "dead-letter messages brought back by hand"
    );
    Ok(done)
}

/// Brings back what the dead-letter queues hold.
pub async fn sweep<'a>(state: impl Into<Pipeline<'a>>) -> Result<Swept, PipelineError> {
    let state = state.into();
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
