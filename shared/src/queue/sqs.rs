//! The queues on SQS: batches of ten, delays, visibility timeouts and the dead-letter
//! queue's reason attribute.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use super::{QueueError, QueueName, Task, TaskQueue};

/// SQS's longest `DelaySeconds`.
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// SQS's longest visibility timeout.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// The service's queues on SQS.
#[derive(Clone, Debug)]
pub struct SqsQueues {
    client: Client,
    pub ingest_url: String,
    pub delivery_url: String,
    pub ingest_dlq_url: String,
}

fn queue_error(e: impl std::error::Error + 'static) -> QueueError {
    QueueError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
}

impl SqsQueues {
    pub fn new(client: Client, urls: &crate::config::QueueUrls) -> Self {
        SqsQueues {
            client,
            ingest_url: urls.ingest.clone(),
            delivery_url: urls.delivery.clone(),
            ingest_dlq_url: urls.ingest_dlq.clone(),
        }
    }

    fn url(&self, queue: QueueName) -> &str {
        match queue {
            QueueName::Ingest => &self.ingest_url,
            QueueName::Delivery => &self.delivery_url,
        }
    }
}

#[async_trait]
impl TaskQueue for SqsQueues {
    /// Sends tasks ten to a request.
    async fn send(&self, queue: QueueName, tasks: &[(Task, Duration)]) -> Result<(), QueueError> {
        for chunk in tasks.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (task, delay))| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(serde_json::to_string(task).expect("tasks serialise"))
                        .delay_seconds(delay.min(&MAX_DELAY).as_secs() as i32)
                        .build()
                        .expect("id and body are set")
                })
                .collect();
            let out = self
                .client
                .send_message_batch()
                .queue_url(self.url(queue))
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(queue_error)?;
            if !out.failed().is_empty() {
                return Err(QueueError(format!(
                    "{} of {} messages were not sent",
                    out.failed().len(),
                    chunk.len()
                )));
            }
        }
        Ok(())
    }

    async fn defer(
        &self,
        queue: QueueName,
        receipt_handle: &str,
        wait: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(self.url(queue))
            .receipt_handle(receipt_handle)
            .visibility_timeout(wait.min(MAX_VISIBILITY).as_secs().max(1) as i32)
            .send()
            .await
            .map_err(queue_error)?;
        Ok(())
    }

    async fn reject(&self, body: &str, reason: &str) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.ingest_dlq_url)
            .message_body(body)
            .message_attributes(
                "reason",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(reason)
                    .build()
                    .expect("type and value are set"),
            )
            .send()
            .await
            .map_err(queue_error)?;
        Ok(())
    }

    /// By the queue name at the end of the ARN, matched to the end of each queue's URL.
    fn queue_of_arn(&self, arn: &str) -> Option<QueueName> {
        let name = arn.rsplit(':').next()?;
        [QueueName::Ingest, QueueName::Delivery]
            .into_iter()
            .find(|q| self.url(*q).rsplit('/').next() == Some(name))
    }
}
