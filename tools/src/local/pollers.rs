//! Drives the deliver function from the local queues as Lambda's SQS event source mapping
//! does: long-poll a batch, hand it to the same handler as an `SqsEvent`, delete what
//! succeeded, and leave the reported failures for their visibility timeout to bring back.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use shared::state::AppState;

/// One queue the deliver function reads.
#[derive(Clone, Debug)]
pub struct EventSource {
    pub url: String,
    pub arn: String,
}

/// Batches one poller has in flight at once. Lambda's event source mapping runs batches in
/// side-by-side invocations; a batch held by a slow receiver (up to the request timeout)
/// must not stop the poller from taking the next, or a few hanging endpoints would stall
/// the local deliver function for everyone.
pub const BATCHES_PER_POLLER: usize = 4;

/// Polls `source` until `stop` turns true, handing each batch to the deliver function's
/// handler in a task of its own (at most [`BATCHES_PER_POLLER`] at once). Returning drops
/// the batches still in flight, as a stopped Lambda does.
pub async fn poll(
    state: Arc<AppState>,
    source: EventSource,
    visibility_timeout: Option<u32>,
    mut stop: watch::Receiver<bool>,
) {
    let client = aws_sdk_sqs::Client::new(&shared::state::sdk_config(&state.config).await);
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
        let receive = client
            .receive_message()
            .queue_url(&source.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .set_visibility_timeout(visibility_timeout)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send();
        let received = tokio::select! {
            _ = stop.changed() => return,
            received = receive => received,
        };
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "local poller: receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let batch = Batch::new(messages, &source, &region);
        let (state, client, url) = (Arc::clone(&state), client.clone(), source.url.clone());
        batches.spawn(async move {
            batch.handle(&state, &client, &url).await;
            drop(slot);
        });
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

    /// Runs the handler, then deletes what succeeded; the reported failures come back after
    /// their visibility timeout.
    async fn handle(self, state: &AppState, client: &aws_sdk_sqs::Client, url: &str) {
        let response = shared::delivery::deliver_batch(state, self.event).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
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
