//! One attempt at a delivery, written once for the four places that make one: the
//! fan-out's first attempts, the retry tasks, the release and recover pages, and a retry
//! by hand.
//!
//! - [`Attempts::admit`] asks the webhook's breaker, then its rate limit: go, with a
//!   permit, or wait.
//! - [`Attempts::make`] sends the signed attempt through the transport (HTTP today: the
//!   seam another kind of destination implements), reports it to the breaker, decides
//!   what follows, records both on the delivery and counts it.
//! - [`queue_then_save`] queues the next attempt, then saves the record that promises it:
//!   in that order, so a record never promises an attempt that was not queued. The
//!   fan-out does the same a chunk of records at a time.

use std::time::Duration;

use bytes::Bytes;

use super::breaker::{Breakers, Gate, Hold, Permit};
use super::decide;
pub use super::decide::Attempted;
use super::health::Tried;
use super::http::{Sent, Target, Transport, parse_target};
use super::rate::RateQueue;
use super::send::{Attempting, send_attempt};
use super::{PipelineError, metrics, random_share};
use crate::domain::delivery::{Delivery, DeliveryStatus};
use crate::domain::event::Event;
use crate::domain::retry::RetrySchedule;
use crate::domain::webhook::{Credentials, Webhook};
use crate::queue::{QueueName, Task, TaskQueue};

use crate::secrets::{KeyError, Sealer};
use crate::storage::{DeliveryStore, Saved};

/// What attempts need of the process (see `AppState::attempts`).
#[derive(Clone, Copy)]
pub struct Attempts<'a> {
    pub transport: &'a dyn Transport,
    /// Holds the webhooks' send slots (their rate limits).
    pub store: &'a dyn DeliveryStore,
    pub breakers: &'a Breakers,
    pub rates: &'a RateQueue,
    pub schedule: &'a RetrySchedule,
}

/// What is sent: to whom (the webhook's credentials in the clear, its parsed URL) and
/// which body.
pub struct Send<'a> {
    pub credentials: &'a Credentials,
    pub target: &'a Target,
    pub event_id: &'a str,
    pub body: Bytes,
}

/// A webhook as an attempt needs it: its credentials opened, its URL parsed.
pub struct Endpoint {
    pub credentials: Credentials,
    pub target: Target,
}

impl Endpoint {
    pub async fn open(sealer: &Sealer, webhook: &Webhook) -> Result<Self, KeyError> {
        Ok(Endpoint {
            credentials: sealer.credentials(webhook).await?,
            target: parse_target(&webhook.url),
        })
    }

    /// A stored event's payload, to this endpoint.
    pub fn send<'a>(&'a self, event: &'a Event) -> Send<'a> {
        Send {
            credentials: &self.credentials,
            target: &self.target,
            event_id: &event.id,
            body: Bytes::from(event.payload()),
        }
    }
}

/// An attempt made and recorded.
pub struct Made {
    /// What the webhook's health learns of it.
    pub tried: Tried,
    /// The next attempt to queue (with its delay), if one follows.
    pub retry: Option<(Task, Duration)>,
}

impl<'a> Attempts<'a> {
    /// Whether an attempt to `webhook` may go now: its breaker first (a webhook that does
    /// not answer holds everything back), then its rate limit.
    pub async fn admit(&self, webhook: &Webhook) -> Result<Permit<'a>, Hold> {
        let permit = self.enter(&webhook.tenant_id, &webhook.id)?;
        // Held by the rate, the permit drops unreported: no attempt was made.
        self.within_rate(webhook).await?;
        Ok(permit)
    }

    /// The breaker's half of [`Attempts::admit`], on its own for who can ask it before
    /// reading anything.
    pub fn enter(&self, tenant_id: &str, webhook_id: &str) -> Result<Permit<'a>, Hold> {
        match self.breakers.enter(tenant_id, webhook_id) {
            Gate::Go(permit) => Ok(permit),
            Gate::Defer(hold) => Err(hold),
        }
    }

    /// The rate limit's half of [`Attempts::admit`]: a send slot taken, or how long to
    /// wait. Storage that cannot take one holds the attempt a second: the limit is never
    /// passed for want of it.
    pub async fn within_rate(&self, webhook: &Webhook) -> Result<(), Hold> {
        let admitted = super::rate::admit(
            self.store,
            self.rates,
            webhook,
            chrono::Utc::now(),
            random_share(),
        )
        .await;
        match admitted {
            Ok(super::rate::Admit::Go) => Ok(()),
            Ok(super::rate::Admit::Wait(hold)) => Err(hold),
            Err(e) => {
                tracing::warn!(error = %e, webhook_id = %webhook.id, "could not take a send slot; the attempt waits");
                Err(Hold {
                    wait: Duration::from_secs(1),
                    spread: Duration::from_secs(1),
                })
            }
        }
    }

    /// Makes the next attempt at `delivery` (numbered after every attempt so far) and
    /// records it with what follows: made `by` the pipeline, a failure takes the
    /// schedule's next step (counting only its own attempts); made by hand, a failure
    /// leaves a pending delivery's remaining schedule in place and ends any other.
    /// `permit` is the breaker's, when the attempt went through [`Attempts::admit`].
    pub async fn make(
        &self,
        delivery: &mut Delivery,
        permit: Option<Permit<'_>>,
        send: Send<'_>,
        by: Attempted,
    ) -> Made {
        let number = delivery.attempts + 1;
        let sent = send_attempt(
            self.transport,
            Attempting {
                credentials: send.credentials,
                target: send.target,
                event_id: send.event_id,
                event_type: &delivery.event_type,
                body: send.body,
                number,
                test: false,
            },
        )
        .await;
        if let Some(permit) = permit {
            permit.report(sent.answered_in_time());
        }
        let tried = Tried::from(&sent.attempt);
        let verdict = self.verdict(delivery, &sent, by);
        let retry = decide::record(delivery, number, sent, verdict, by);
        metrics::attempted(delivery);
        crate::activity::attempted(delivery);
        Made { tried, retry }
    }

    /// Sends a test event (not stored, nothing recorded) to `endpoint`, marked
    /// `X-Webhook-Test: true`.
    pub async fn send_test(&self, endpoint: &Endpoint, event: &Event) -> Sent {
        send_attempt(
            self.transport,
            Attempting {
                credentials: &endpoint.credentials,
                target: &endpoint.target,
                event_id: &event.id,
                event_type: &event.event_type,
                body: Bytes::from(event.payload()),
                number: 1,
                test: true,
            },
        )
        .await
    }

    fn verdict(&self, delivery: &Delivery, sent: &Sent, by: Attempted) -> decide::Verdict {
        match by {
            Attempted::Automatically => decide::after_attempt(
                self.schedule,
                delivery.automatic_attempts() + 1,
                sent,
                random_share(),
            ),
            Attempted::ByHand => decide::after_manual_retry(delivery.status, sent),
        }
    }
}

/// Queues what follows an attempt (`retry`), then saves `delivery` unless a later attempt
/// or a close got there first: the save is conditional on the delivery having been
/// `from` with fewer attempts than it has now.
pub async fn queue_then_save(
    queues: &dyn TaskQueue,
    store: &dyn DeliveryStore,
    delivery: &Delivery,
    retry: Option<(Task, Duration)>,
    from: DeliveryStatus,
    expires_at: i64,
) -> Result<Saved, PipelineError> {
    if let Some(next) = retry {
        queues.send(QueueName::Delivery, &[next]).await?;
        metrics::retries_queued(1);
    }
    Ok(store
        .save_delivery(delivery, delivery.attempts, from, expires_at)
        .await?)
}

/// Closes `delivery` as `status` without an attempt (its webhook gone, paused or deleted,
/// its event expired) and saves it unless something got there first.
pub async fn close(
    store: &dyn DeliveryStore,
    mut delivery: Delivery,
    status: DeliveryStatus,
    expires_at: i64,
) -> Result<Saved, PipelineError> {
    let from = delivery.status;
    delivery.close(status, crate::domain::now());
    Ok(store
        .save_delivery(&delivery, delivery.attempts + 1, from, expires_at)
        .await?)
}

/// The next attempt at `delivery`, due at once, as a retry task: how a replay starts one.
/// The delivery waits pending for it.
pub fn due_now(delivery: &mut Delivery, at: chrono::DateTime<chrono::Utc>) -> (Task, Duration) {
    const NOW: Hold = Hold {
        wait: Duration::ZERO,
        spread: Duration::ZERO,
    };
    decide::defer(delivery, NOW, 0.0, at)
}

/// Whether `webhook` would be sent `event` now (not buffered, not left out): active,
/// subscribed to its type, and its filter admits it (`created` is the event's time as the
/// payload has it).
pub fn sends_now(webhook: &Webhook, event: &Event, created: &str) -> bool {
    decide::route(webhook, &event.event_type) == Some(decide::Route::Send)
        && decide::admits(webhook, event, created)
}
