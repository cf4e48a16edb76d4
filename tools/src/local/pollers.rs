//! Drives the deliver function from the local queues as Lambda's SQS event source mapping
//! does, with the template's settings: gather a batch (up to `BatchSize` messages, waiting
//! at most `MaximumBatchingWindowInSeconds` for more), hand it to the same handler as an
//! `SqsEvent` under the function's `Timeout`, delete what succeeded, and leave the reported
//! failures (or, after a timeout, the whole batch) for their visibility timeout to bring
//! back. It receives and deletes as the deliver function's own principal, as the mapping
//! does with the function's role.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::template::EventSourceSpec;
use shared::state::AppState;

/// One queue the deliver function reads, and how its mapping makes batches.
#[derive(Clone, Debug)]
pub struct EventSource {
    pub url: String,
    pub arn: String,
    pub spec: EventSourceSpec,
}

/// Batches one poller has in flight at once. Lambda's event source mapping runs batches in
/// side-by-side invocations; a batch held by a slow receiver (up to the request timeout)
/// must not stop the poller from taking the next, or a few hanging endpoints would stall
/// the local deliver function for everyone.
pub const BATCHES_PER_POLLER: usize = 4;

/// Polls `source` until `stop` turns true, handing each batch to the deliver function's
/// handler in a task of its own (at most [`BATCHES_PER_POLLER`] at once), each under
/// `timeout`. Returning drops the batches still in flight, as a stopped Lambda does.
pub async fn poll(
    state: Arc<AppState>,
    timeout: Duration,
    source: EventSource,
    visibility_timeout: Option<u32>,
    mut stop: watch::Receiver<bool>,
) {
    let sdk = shared::state::sdk_config_as(&state.config, state.credentials.clone()).await;
    let client = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .timeout_config(shared::state::queue_timeouts())
            .build(),
    );
    let region = state
        .config
        .aws_region
        .clone()
        .unwrap_or_else(|| "us-east-1".into());
    let visibility_timeout = visibility_timeout.map(|s| i32::try_from(s).unwrap_or(i32::MAX));
    let slots = Arc::new(Semaphore::new(BATCHES_PER_POLLER));
    let mut batches = JoinSet::new();
    while !*stop.borrow() {
        while batches.try_join_next().is_some() {}
        let slot = tokio::select! {
            _ = stop.changed() => return,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let gathered = tokio::select! {
            _ = stop.changed() => return,
            gathered = gather(&client, &source, visibility_timeout) => gathered,
        };
        let messages = match gathered {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(error = %e, "local poller: receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let batch = Batch::new(messages, &source, &region);
        let (state, client, url) = (Arc::clone(&state), client.clone(), source.url.clone());
        let reports_failures = source.spec.reports_failures;
        batches.spawn(async move {
            batch
                .handle(&state, &client, &url, timeout, reports_failures)
                .await;
            drop(slot);
        });
    }
}

/// One batch as the mapping gathers it: the first receive long-polls; once a message is in,
/// more are taken until the batch is full or the batching window has passed.
async fn gather(
    client: &aws_sdk_sqs::Client,
    source: &EventSource,
    visibility_timeout: Option<i32>,
) -> Result<Vec<aws_sdk_sqs::types::Message>, String> {
    let mut messages = Vec::new();
    let mut started: Option<Instant> = None;
    loop {
        let room = source.spec.batch_size - messages.len();
        let wait = match started {
            None => 1,
            Some(at) => {
                let left = source.spec.window.saturating_sub(at.elapsed());
                if left.is_zero() || room == 0 {
                    return Ok(messages);
                }
                // SQS long-polls in whole seconds: the window may run over by less than one.
                (left.as_secs_f64().ceil() as i32).clamp(1, 20)
            }
        };
        let out = client
            .receive_message()
            .queue_url(&source.url)
            .max_number_of_messages(room.min(10) as i32)
            .wait_time_seconds(wait)
            .set_visibility_timeout(visibility_timeout)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        let got = out.messages.unwrap_or_default();
        if got.is_empty() && started.is_none() {
            return Ok(messages);
        }
        started.get_or_insert_with(Instant::now);
        messages.extend(got);
    }
}

/// A received batch as the deliver function sees it, with the receipts to delete.
struct Batch {
    event: SqsEvent,
    receipts: Vec<(String, String)>,
}

impl Batch {
    fn new(messages: Vec<aws_sdk_sqs::types::Message>, source: &EventSource, region: &str) -> Self {
        let mut receipts = Vec::new();
        let mut event = SqsEvent::default();
        for m in messages {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id.clone();
            record.receipt_handle = m.receipt_handle.clone();
            record.body = m.body.clone();
            record.md5_of_body = m.md5_of_body.clone();
            record.attributes = m
                .attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.as_str().to_string(), v))
                .collect();
            record.event_source_arn = Some(source.arn.clone());
            record.event_source = Some("aws:sqs".into());
            record.aws_region = Some(region.to_string());
            receipts.push((
                m.message_id.unwrap_or_default(),
                m.receipt_handle.unwrap_or_default(),
            ));
            event.records.push(record);
        }
        Batch { event, receipts }
    }

    /// Runs the handler under the function's timeout, then deletes what succeeded; the
    /// reported failures come back after their visibility timeout. A batch whose
    /// invocation timed out is failed whole, as Lambda fails it.
    async fn handle(
        self,
        state: &AppState,
        client: &aws_sdk_sqs::Client,
        url: &str,
        timeout: Duration,
        reports_failures: bool,
    ) {
        let run = shared::delivery::deliver_batch(state, self.event);
        let Ok(response) = tokio::time::timeout(timeout, run).await else {
            tracing::error!(
                timeout_s = timeout.as_secs(),
                messages = self.receipts.len(),
                "local deliver: the invocation timed out, as Lambda would end it; its batch comes back"
            );
            return;
        };
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        // Without ReportBatchItemFailures, Lambda reads no failure list: an invocation that
        // returned deletes its whole batch.
        let failed: Vec<&str> = if reports_failures { failed } else { Vec::new() };
        let entries: Vec<DeleteMessageBatchRequestEntry> = self
            .receipts
            .iter()
            .enumerate()
            .filter(|(_, (id, _))| !failed.contains(&id.as_str()))
            .map(|(i, (_, receipt))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .expect("id and receipt are set")
            })
            .collect();
        if !entries.is_empty()
            && let Err(e) = client
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
        {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "local poller: delete failed");
        }
    }
}
