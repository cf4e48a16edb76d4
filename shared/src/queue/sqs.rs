//! The queues on SQS: batches of ten, delays, visibility timeouts and the dead-letter
//! queue's reason attribute.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};

use super::redrive::{self, DeadLetter, Decision, REASON_ATTRIBUTE, REDRIVES_ATTRIBUTE};
use super::{QueueError, QueueName, Task, TaskQueue};

/// SQS's longest `DelaySeconds`.
pub const MAX_DELAY: Duration = crate::domain::retry::MAX_QUEUE_DELAY;
/// The longest park: SQS's 12 hours of visibility counted from the receive, less the time
/// since it (a longer wait comes back early and parks again).
use crate::domain::retry::MAX_PARK;

/// The service's queues on SQS.
#[derive(Clone, Debug)]
pub struct SqsQueues {
    client: Client,
    pub ingest_url: String,
    pub delivery_url: String,
    pub ingest_dlq_url: String,
    pub delivery_dlq_url: Option<String>,
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
            delivery_dlq_url: urls.delivery_dlq.clone(),
        }
    }

    fn url(&self, queue: QueueName) -> &str {
        match queue {
            QueueName::Ingest => &self.ingest_url,
            QueueName::Delivery => &self.delivery_url,
        }
    }

    fn dead_letter_url(&self, queue: QueueName) -> Result<&str, QueueError> {
        match queue {
            QueueName::Ingest => Ok(&self.ingest_dlq_url),
            QueueName::Delivery => self
                .delivery_dlq_url
                .as_deref()
                .ok_or_else(|| QueueError("DELIVERY_DLQ_URL is not set".into())),
        }
    }

    /// Sends a task brought back from a dead-letter queue, counting the times it was.
    async fn send_back(
        &self,
        task: &Task,
        redrives: u32,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.delivery_url)
            .message_body(serde_json::to_string(task).expect("tasks serialise"))
            .delay_seconds(delay.min(MAX_DELAY).as_secs() as i32)
            .message_attributes(REDRIVES_ATTRIBUTE, number(redrives))
            .send()
            .await
            .map_err(queue_error)?;
        Ok(())
    }
}

fn number(n: u32) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("Number")
        .string_value(n.to_string())
        .build()
        .expect("type and value are set")
}

/// A received message as a dead letter.
fn dead_letter(m: &aws_sdk_sqs::types::Message) -> DeadLetter {
    let attribute = |name: &str| {
        m.message_attributes
            .as_ref()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value.clone())
    };
    DeadLetter {
        message_id: m.message_id.clone().unwrap_or_default(),
        body: m.body.clone().unwrap_or_default(),
        sent_at: m
            .attributes
            .as_ref()
            .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
            .and_then(|t| t.parse().ok()),
        reason: attribute(REASON_ATTRIBUTE),
        redrives: attribute(REDRIVES_ATTRIBUTE)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
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
            .visibility_timeout(wait.min(MAX_PARK).as_secs().max(1) as i32)
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
                REASON_ATTRIBUTE,
                MessageAttributeValue::builder()
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

    /// Receives ten at a time, each kept invisible while it is worked on; what stays is
    /// made visible again at the end, for whoever looks next.
    async fn redrive(
        &self,
        queue: QueueName,
        options: &redrive::Options,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<redrive::Redriven, QueueError> {
        let from = self.dead_letter_url(queue)?;
        let mut done = redrive::Redriven::default();
        let mut held = Vec::new();
        let mut seen = 0usize;
        while seen < options.limit {
            let out = self
                .client
                .receive_message()
                .queue_url(from)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .visibility_timeout(120)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(queue_error)?;
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            seen += messages.len();
            let before = done.moved;
            for m in messages {
                let letter = dead_letter(&m);
                let receipt = m.receipt_handle.unwrap_or_default();
                match redrive::decide(queue, &letter, options) {
                    Decision::Move(task) => {
                        self.send_back(&task, letter.redrives + 1, options.delay)
                            .await?;
                        self.client
                            .delete_message()
                            .queue_url(from)
                            .receipt_handle(receipt)
                            .send()
                            .await
                            .map_err(queue_error)?;
                        done.moved += 1;
                    }
                    Decision::Keep(reason) => {
                        done.kept.push(reason);
                        held.push(receipt);
                    }
                    Decision::Exhausted => {
                        done.exhausted += 1;
                        held.push(receipt);
                    }
                }
            }
            if done.moved > before {
                progress(done.moved);
            }
        }
        for receipt in held {
            self.client
                .change_message_visibility()
                .queue_url(from)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await
                .map_err(queue_error)?;
        }
        Ok(done)
    }

    /// By the queue name at the end of the ARN, matched to the end of each queue's URL.
    fn queue_of_arn(&self, arn: &str) -> Option<QueueName> {
        let name = arn.rsplit(':').next()?;
        [QueueName::Ingest, QueueName::Delivery]
            .into_iter()
            .find(|q| self.url(*q).rsplit('/').next() == Some(name))
    }
}
