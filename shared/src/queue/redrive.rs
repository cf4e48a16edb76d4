//! Bringing messages back from the dead-letter queues: what the scheduled sweeper does on
//! its own and `webhooks-admin redrive` does by hand. Whatever a dead-letter message was,
//! it comes back as a task on the delivery queue:
//! - an ingest message as a `redriven` task (never an event task, which names an event
//!   the API stored), with its first message's id and time when it names no source `id`,
//!   so the event it makes is the one its first receipts made (every step of the fan-out
//!   is idempotent on that id);
//! - a task as itself, an event task marked `resend` so the fan-out skips what was
//!   recorded.
//!
//! A message rejected as never processable (it carries a `reason`) stays unless the
//! operator asks for it, and then only if it can be read now. The sweeper brings a message
//! back at most [`MAX_AUTOMATIC_REDRIVES`] times; after that it waits for the operator.

use std::time::Duration;

use super::{Origin, QueueName, Task, parse_ingest, parse_task};

/// Times the sweeper brings one message back on its own.
pub const MAX_AUTOMATIC_REDRIVES: u32 = 3;

/// The message attribute that counts how often a message was brought back.
pub const REDRIVES_ATTRIBUTE: &str = "redrives";
/// The message attribute that says why a message was rejected.
pub const REASON_ATTRIBUTE: &str = "reason";

/// How a redrive goes.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Bring back rejected messages too (those that can be read now).
    pub include_rejected: bool,
    /// The sweeper's own redrive: at most [`MAX_AUTOMATIC_REDRIVES`] per message.
    pub automatic: bool,
    /// Most messages looked at in one redrive.
    pub limit: usize,
    /// How long a message brought back waits before it is seen (at most 15 minutes).
    pub delay: Duration,
}

/// A message of a dead-letter queue, as received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetter {
    pub message_id: String,
    pub body: String,
    /// `SentTimestamp`: Unix milliseconds.
    pub sent_at: Option<i64>,
    pub reason: Option<String>,
    pub redrives: u32,
}

/// What becomes of a dead-letter message.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Back to the delivery queue as this task, brought back once more.
    Move(Task),
    /// Stays, with the reason it was rejected for (or cannot be read now).
    Keep(String),
    /// Stays: the sweeper brought it back as often as it may.
    Exhausted,
}

/// What a redrive did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Redriven {
    /// Messages brought back.
    pub moved: usize,
    /// Messages left where they are, with why.
    pub kept: Vec<String>,
    /// Messages the sweeper has brought back as often as it may: they wait for
    /// `webhooks-admin redrive`.
    pub exhausted: usize,
}

/// What becomes of `letter`, from `queue`'s dead-letter queue.
pub fn decide(queue: QueueName, letter: &DeadLetter, options: &Options) -> Decision {
    if let (Some(reason), false) = (&letter.reason, options.include_rejected) {
        return Decision::Keep(reason.clone());
    }
    if options.automatic && letter.redrives >= MAX_AUTOMATIC_REDRIVES {
        return Decision::Exhausted;
    }
    match revive(queue, letter) {
        Ok(task) => Decision::Move(task),
        Err(reason) => Decision::Keep(reason),
    }
}

/// The task a dead-letter message comes back as.
fn revive(queue: QueueName, letter: &DeadLetter) -> Result<Task, String> {
    match queue {
        QueueName::Ingest => {
            let mut event = parse_ingest(&letter.body)?;
            if event.id.is_none() {
                event.origin = letter.sent_at.map(|sent_at| Origin {
                    message_id: letter.message_id.clone(),
                    sent_at,
                });
            }
            Ok(Task::Redriven(event))
        }
        QueueName::Delivery => {
            let mut task = parse_task(&letter.body)?;
            if let Task::Event(event) = &mut task {
                event.resend |= event.event_id.is_some();
            }
            Ok(task)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{EventTask, RetryTask};

    fn letter(body: &str) -> DeadLetter {
        DeadLetter {
            message_id: "m-1".into(),
            body: body.into(),
            sent_at: Some(1_700_000_000_000),
            reason: None,
            redrives: 0,
        }
    }

    const EVENT: &str = r#"{"tenant_id":"acme","type":"a.b","data":{"n":1}}"#;

    #[test]
    fn an_ingest_message_comes_back_as_the_event_its_first_receipts_made() {
        let Decision::Move(Task::Redriven(event)) =
            decide(QueueName::Ingest, &letter(EVENT), &Options::default())
        else {
            panic!("moved as a redriven ingest message");
        };
        assert_eq!(
            event.origin,
            Some(Origin {
                message_id: "m-1".into(),
                sent_at: 1_700_000_000_000
            })
        );
        // With a source id, that id is what makes it the same event.
        let with_id = r#"{"tenant_id":"acme","type":"a.b","data":{},"id":"order-1"}"#;
        let Decision::Move(Task::Redriven(event)) =
            decide(QueueName::Ingest, &letter(with_id), &Options::default())
        else {
            panic!("moved as a redriven ingest message");
        };
        assert_eq!((event.id.as_deref(), event.origin), (Some("order-1"), None));
    }

    #[test]
    fn a_task_comes_back_as_itself_and_a_stored_event_skips_what_was_recorded() {
        let retry = Task::Retry(RetryTask {
            tenant_id: "acme".into(),
            delivery_id: "dlv_x".into(),
            webhook_id: Some("wh_x".into()),
            attempt: 2,
            not_before: 0,
        });
        let body = serde_json::to_string(&retry).unwrap();
        assert_eq!(
            decide(QueueName::Delivery, &letter(&body), &Options::default()),
            Decision::Move(retry)
        );
        let stored = Task::Event(EventTask {
            event_id: Some("evt_x".into()),
            ..crate::queue::parse_ingest(EVENT).unwrap()
        });
        let body = serde_json::to_string(&stored).unwrap();
        let Decision::Move(Task::Event(event)) =
            decide(QueueName::Delivery, &letter(&body), &Options::default())
        else {
            panic!("moved as an event task");
        };
        assert!(event.resend);
    }

    #[test]
    fn rejected_and_exhausted_messages_stay() {
        let mut rejected = letter(EVENT);
        rejected.reason = Some("event type unknown".into());
        let by_hand = Options {
            include_rejected: true,
            ..Options::default()
        };
        assert_eq!(
            decide(QueueName::Ingest, &rejected, &Options::default()),
            Decision::Keep("event type unknown".into())
        );
        assert!(matches!(
            decide(QueueName::Ingest, &rejected, &by_hand),
            Decision::Move(_)
        ));
        let mut garbage = letter("not json");
        garbage.reason = Some("not JSON".into());
        assert!(matches!(
            decide(QueueName::Ingest, &garbage, &by_hand),
            Decision::Keep(why) if why.contains("not JSON")
        ));
        let mut tired = letter(EVENT);
        tired.redrives = MAX_AUTOMATIC_REDRIVES;
        let sweeper = Options {
            automatic: true,
            ..Options::default()
        };
        assert_eq!(
            decide(QueueName::Ingest, &tired, &sweeper),
            Decision::Exhausted
        );
        assert!(matches!(
            decide(QueueName::Ingest, &tired, &Options::default()),
            Decision::Move(_)
        ));
    }
}
