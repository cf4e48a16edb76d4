//! The queues in memory, for unit tests: every task sent, deferral and rejection is kept
//! for the test to read and to hand back to the pipeline.

use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, MutexGuard};

use super::redrive::{self, DeadLetter, Decision};
use super::{QueueError, QueueName, Task, TaskQueue};

/// What the memory queue saw.
#[derive(Debug, Default)]
pub struct Sent {
    pub tasks: Vec<(QueueName, Task, Duration)>,
    pub deferred: Vec<(QueueName, String, Duration)>,
    pub rejected: Vec<(String, String)>,
    /// What sits in the dead-letter queues (a test puts it there).
    pub dead: Vec<(QueueName, DeadLetter)>,
}

#[derive(Default)]
pub struct MemoryQueue {
    sent: Mutex<Sent>,
    failures: Mutex<u32>,
}

/// The event source ARNs the memory queue answers to.
pub const INGEST_ARN: &str = "arn:aws:sqs:local:0:ingest";
pub const DELIVERY_ARN: &str = "arn:aws:sqs:local:0:delivery";

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` sends fail.
    pub fn fail_next(&self, n: u32) {
        *self.failures.lock() = n;
    }

    pub fn sent(&self) -> MutexGuard<'_, Sent> {
        self.sent.lock()
    }

    /// Takes the tasks sent so far to `queue`, oldest first.
    pub fn take(&self, queue: QueueName) -> Vec<(Task, Duration)> {
        let mut sent = self.sent();
        let (taken, kept) = std::mem::take(&mut sent.tasks)
            .into_iter()
            .partition(|(q, _, _)| *q == queue);
        sent.tasks = kept;
        taken.into_iter().map(|(_, t, d)| (t, d)).collect()
    }

    fn check(&self) -> Result<(), QueueError> {
        let mut failures = self.failures.lock();
        if *failures > 0 {
            *failures -= 1;
            return Err(QueueError("unavailable (in-memory test)".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl TaskQueue for MemoryQueue {
    async fn send(&self, queue: QueueName, tasks: &[(Task, Duration)]) -> Result<(), QueueError> {
        self.check()?;
        self.sent()
            .tasks
            .extend(tasks.iter().map(|(t, d)| (queue, t.clone(), *d)));
        Ok(())
    }

    async fn defer(
        &self,
        queue: QueueName,
        receipt_handle: &str,
        wait: Duration,
    ) -> Result<(), QueueError> {
        self.check()?;
        self.sent()
            .deferred
            .push((queue, receipt_handle.to_string(), wait));
        Ok(())
    }

    async fn reject(&self, body: &str, reason: &str) -> Result<(), QueueError> {
        self.check()?;
        self.sent()
            .rejected
            .push((body.to_string(), reason.to_string()));
        Ok(())
    }

    async fn redrive(
        &self,
        queue: QueueName,
        options: &redrive::Options,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<redrive::Redriven, QueueError> {
        self.check()?;
        let mut sent = self.sent();
        let mut done = redrive::Redriven::default();
        let mut kept = Vec::new();
        for (q, letter) in std::mem::take(&mut sent.dead) {
            if q != queue || done.moved + done.kept.len() + done.exhausted >= options.limit {
                kept.push((q, letter));
                continue;
            }
            match redrive::decide(queue, &letter, options) {
                Decision::Move(task) => {
                    sent.tasks.push((QueueName::Delivery, task, options.delay));
                    done.moved += 1;
                }
                Decision::Keep(reason) => {
                    done.kept.push(reason);
                    kept.push((q, letter));
                }
                Decision::Exhausted => {
                    done.exhausted += 1;
                    kept.push((q, letter));
                }
            }
        }
        sent.dead = kept;
        drop(sent);
        progress(done.moved);
        Ok(done)
    }

    fn queue_of_arn(&self, arn: &str) -> Option<QueueName> {
        match arn {
            INGEST_ARN => Some(QueueName::Ingest),
            DELIVERY_ARN => Some(QueueName::Delivery),
            _ => None,
        }
    }
}
