//! The delivery pipeline: the `deliver` function's handler. [`deliver_batch`] reads a batch
//! of SQS messages and hands each to the part that owns its kind:
//! - [`fanout`]: ingest events, stored once and sent to every matching webhook at once;
//! - [`retry`]: one more attempt at one delivery (parked until due);
//! - [`pages`]: release (after unpause), recover (failed ones sent again) and cancel
//!   (after delete) a page of a webhook's deliveries;
//! - and, on a schedule, [`sweep`]: what the dead-letter queues hold, brought back.
//!
//! One attempt, wherever it is made (the fan-out, a retry, a page, a retry by hand), is
//! [`attempt`]'s: breaker, rate limit, send, decide, record, queue, save. What follows an
//! attempt, and every other decision, is [`decide`]'s (pure functions); [`send`] signs and
//! sends, [`health`] keeps a webhook's health, [`breaker`] holds back
//! deliveries to a webhook that does not answer, [`http`] is the HTTP client, [`warm`]
//! what an instance keeps between batches (tenants' views), [`metrics`] what operators
//! watch. Every step is idempotent, so a repeated message (SQS delivers at
//! least once, and a failed batch item comes back) never makes a second delivery record:
//! - an event is stored once (conditional writes on its id and its idempotency key);
//! - a delivery's id is derived from (event, webhook), so a repeat finds the record;
//! - a retry task names its attempt number, and a task whose attempt was made is dropped;
//! - next attempts are queued before the record that mentions them is written.

pub mod attempt;
pub mod breaker;
pub mod decide;
mod fanout;
pub mod health;
pub mod http;
pub mod metrics;
mod pages;
pub mod rate;
mod retry;
pub mod send;
pub mod sweep;
pub mod warm;

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use tracing::Instrument;

use crate::config::Config;
use crate::queue::{Origin, QueueError, QueueName, Task, TaskQueue, parse_ingest, parse_task};
use crate::schemas::Schemas;
use crate::secrets::Sealer;
use crate::storage::Store;
use crate::storage::{StoreError, StoreResult, TenantView};
use attempt::Attempts;
use http::Transport;
use warm::Warm;

/// What the pipeline uses of the process, built from its state (`From<&AppState>`): the
/// pipeline never reaches back into the state, so its imports point down.
#[derive(Clone, Copy)]
pub struct Pipeline<'a> {
    pub config: &'a Config,
    pub store: &'a dyn Store,
    /// The queues, when configured (every deployed function; the local stack).
    pub queues: Option<&'a dyn TaskQueue>,
    pub transport: &'a dyn Transport,
    pub sealer: &'a Sealer,
    pub warm: &'a Warm,
    pub schemas: &'a Schemas,
}

impl<'a> From<&Pipeline<'a>> for Pipeline<'a> {
    fn from(pipeline: &Pipeline<'a>) -> Self {
        *pipeline
    }
}

impl<'a> Pipeline<'a> {
    /// What the delivery attempts use.
    pub fn attempts(&self) -> Attempts<'a> {
        Attempts {
            transport: self.transport,
            store: self.store,
            breakers: &self.warm.breakers,
            rates: &self.warm.rates,
            schedule: &self.config.retry_schedule,
        }
    }

    /// Unix seconds when a delivery written now expires.
    pub fn expires_at(&self) -> i64 {
        self.config.expires_at()
    }

    /// The queues, if configured (logged as a misconfiguration where they are needed).
    pub fn queues(&self) -> Option<&'a dyn TaskQueue> {
        if self.queues.is_none() {
            tracing::error!("INGEST_QUEUE_URL, INGEST_DLQ_URL and DELIVERY_QUEUE_URL are not set");
        }
        self.queues
    }
}

/// The current view of every tenant a batch has events or retries for.
pub(crate) type Views = HashMap<String, StoreResult<Arc<TenantView>>>;

pub use fanout::{MAX_IN_FLIGHT, PARALLEL_RECORD_WRITES};
pub use pages::SETTLE_WAIT;

/// Why a message's work could not be done now: it comes back and is tried again.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Keys(#[from] crate::secrets::KeyError),
}

/// How a message's work ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    /// Done: the message can go.
    Done,
    /// Parked or waiting on something: it comes back later, and that is no failure.
    Later,
}

/// A message of the batch, with what it asks.
pub(crate) struct Message<T> {
    record: SqsMessage,
    task: T,
}

impl<T> Message<T> {
    fn id(&self) -> &str {
        self.record.message_id.as_deref().unwrap_or("")
    }

    fn receive_count(&self) -> u32 {
        self.record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1)
    }

    fn body(&self) -> &str {
        self.record.body.as_deref().unwrap_or("")
    }

    /// The message's id and the time SQS accepted it (`SentTimestamp`, always present on
    /// a record from SQS).
    fn origin(&self) -> Option<Origin> {
        let sent_at = self.record.attributes.get("SentTimestamp")?.parse().ok()?;
        Some(Origin {
            message_id: self.id().to_string(),
            sent_at,
        })
    }

    /// The queue this message came from: where it is parked.
    fn queue(&self, queues: &dyn TaskQueue) -> QueueName {
        source_queue(&self.record, queues)
    }

    /// Makes the message visible again only after `wait` (at most 12 h).
    async fn park(
        &self,
        queues: &dyn TaskQueue,
        wait: std::time::Duration,
    ) -> Result<Handled, PipelineError> {
        let receipt = self.record.receipt_handle.as_deref().unwrap_or("");
        queues.defer(self.queue(queues), receipt, wait).await?;
        metrics::parked();
        Ok(Handled::Later)
    }
}

/// The queue an SQS record came from, told by its event source ARN (never by its body).
/// A record from anywhere but the delivery queue is treated as the ingest queue's: it may
/// carry an ingest message and nothing else.
fn source_queue(record: &SqsMessage, queues: &dyn TaskQueue) -> QueueName {
    record
        .event_source_arn
        .as_deref()
        .and_then(|arn| queues.queue_of_arn(arn))
        .unwrap_or(QueueName::Ingest)
}

/// The span every log line about one SQS record is written in: the message, its tenant,
/// and the event, delivery or webhook it concerns (recorded as soon as known).
fn record_span(message_id: &str, task: Option<&Task>) -> tracing::Span {
    let span = tracing::info_span!(
        "sqs_record",
        message_id,
        tenant_id = tracing::field::Empty,
        event_id = tracing::field::Empty,
        delivery_id = tracing::field::Empty,
        webhook_id = tracing::field::Empty,
    );
    match task {
        Some(Task::Event(t) | Task::Redriven(t)) => {
            span.record("tenant_id", t.tenant_id.as_str());
            if let Some(id) = &t.event_id {
                span.record("event_id", id.as_str());
            }
        }
        Some(Task::Retry(t)) => {
            span.record("tenant_id", t.tenant_id.as_str());
            span.record("delivery_id", t.delivery_id.as_str());
        }
        Some(Task::Release(t) | Task::Cancel(t)) => {
            span.record("tenant_id", t.tenant_id.as_str());
            span.record("webhook_id", t.webhook_id.as_str());
        }
        Some(Task::Recover(t)) => {
            span.record("tenant_id", t.tenant_id.as_str());
            span.record("webhook_id", t.webhook_id.as_str());
        }
        None => {}
    }
    span
}

/// The deliver function's handler: processes a batch and reports the messages to retry.
pub async fn deliver_batch<'a>(
    state: impl Into<Pipeline<'a>>,
    batch: SqsEvent,
) -> SqsBatchResponse {
    let state = &state.into();
    let mut response = SqsBatchResponse::default();
    let Some(queues) = state.queues() else {
        for record in &batch.records {
            response.add_failure(record.message_id.clone().unwrap_or_default());
        }
        return response;
    };
    let mut events = Vec::new();
    let mut retries = Vec::new();
    let mut pages = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for record in batch.records {
        let body = record.body.as_deref().unwrap_or("");
        let message_id = record.message_id.clone().unwrap_or_default();
        let parsed = match source_queue(&record, queues) {
            QueueName::Ingest => parse_ingest(body).map(Task::Event),
            QueueName::Delivery => parse_task(body),
        };
        match parsed {
            Ok(task) => {
                let span = record_span(&message_id, Some(&task));
                match task {
                    // A redriven message carries the message it first came in: its event
                    // is that message's.
                    Task::Event(task) | Task::Redriven(task) => {
                        events.push((Message { record, task }, span))
                    }
                    Task::Retry(task) => retries.push((Message { record, task }, span)),
                    page @ (Task::Release(_) | Task::Cancel(_) | Task::Recover(_)) => {
                        pages.push((Message { record, task: page }, span));
                    }
                }
            }
            Err(reason) => {
                let span = record_span(&message_id, None);
                let rejected = reject(queues, body, &reason).instrument(span).await;
                if rejected.is_err() {
                    failed.push(message_id);
                }
            }
        }
    }
    let tenants = events
        .iter()
        .map(|(m, _)| m.task.tenant_id.as_str())
        .chain(retries.iter().map(|(m, _)| m.task.tenant_id.as_str()));
    let views = state.warm.current_views(state.store, tenants).await;
    for (tenant, view) in &views {
        if let Err(e) = view {
            tracing::warn!(error = %e, tenant_id = tenant, "could not read the tenant's webhooks; its messages come back");
        }
    }
    let views = &views;
    let (fanned, retried, paged) = tokio::join!(
        fanout::fan_out(state, queues, views, events),
        join_all(retries.into_iter().map(|(m, span)| {
            let work = async move {
                let result = retry::retry(state, queues, views, &m).await;
                outcome(&m, result, "retry task")
            };
            work.instrument(span)
        })),
        join_all(pages.into_iter().map(|(m, span)| {
            let work = async move {
                let result = match &m.task {
                    Task::Release(task) => pages::release_page(state, queues, task).await,
                    Task::Cancel(task) => pages::cancel_page(state, queues, task).await,
                    Task::Recover(task) => pages::recover_page(state, queues, task).await,
                    Task::Event(_) | Task::Redriven(_) | Task::Retry(_) => Ok(Handled::Done),
                };
                outcome(&m, result, "page of deliveries")
            };
            work.instrument(span)
        })),
    );
    failed.extend(fanned);
    failed.extend(retried.into_iter().flatten());
    failed.extend(paged.into_iter().flatten());
    for id in failed {
        response.add_failure(id);
    }
    metrics::flush(state.warm.breakers.open());
    response
}

/// The message id to report as failed, if the work did not finish; logs why.
fn outcome<T>(
    message: &Message<T>,
    result: Result<Handled, PipelineError>,
    what: &str,
) -> Option<String> {
    match result {
        Ok(Handled::Done) => None,
        Ok(Handled::Later) => Some(message.id().to_string()),
        Err(e) => {
            tracing::warn!(error = %e, "{what} will come back");
            Some(message.id().to_string())
        }
    }
}

/// Sends a message that can never be processed to the ingest dead-letter queue, logging
/// the reason and counting it.
async fn reject(queues: &dyn TaskQueue, body: &str, reason: &str) -> Result<(), QueueError> {
    tracing::warn!(reason, "rejected message sent to the dead-letter queue");
    metrics::rejected_message();
    queues.reject(body, reason).await.inspect_err(|e| {
        tracing::error!(error = %e, "could not move a rejected message to the dead-letter queue");
    })
}

/// A random share in [0, 1) for jitter.
fn random_share() -> f64 {
    let bytes = crate::domain::api_key::random_bytes::<8>();
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests;
