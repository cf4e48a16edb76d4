//! The pipeline's decisions, as pure functions of the schedule, the attempt, what storage
//! holds and the time: what follows an attempt (another at a time, or an end), when an
//! early task is parked, what a retry task does with the delivery and webhook it finds,
//! and which webhooks an event goes to. The fan-out, retry
//! tasks, release pages and the manual retry route all decide here.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::breaker::Hold;
use super::http::Sent;
use crate::domain::delivery::{Delivery, DeliveryStatus};
use crate::domain::event::Event;
use crate::domain::event_type::subscription_matches;
use crate::domain::retry::RetrySchedule;
use crate::domain::webhook::{Webhook, WebhookStatus};
use crate::queue::{RetryTask, Task};

/// What follows an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Succeeded,
    /// No more attempts: the schedule is spent, the receiver answered 410, or a manual
    /// retry failed.
    Failed,
    /// Another attempt at `at`, queued with the delay `wait`.
    RetryAt {
        at: DateTime<Utc>,
        wait: Duration,
    },
    /// A retry by hand of a pending delivery failed: it keeps its automatic retries, the
    /// next one due as before (its retry task is queued already).
    StillScheduled,
}

/// Who made an attempt: the pipeline follows a failure with the schedule's next attempt;
/// one made by hand (a retry, a recover) leaves the schedule where it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempted {
    Automatically,
    ByHand,
}

/// What follows the schedule's attempt `number`, given how it went and a random share in
/// `[0, 1)` for the jitter. A receiver's `Retry-After` is honoured up to the schedule's
/// longest wait.
pub fn after_attempt(schedule: &RetrySchedule, number: u32, sent: &Sent, random: f64) -> Verdict {
    if sent.attempt.succeeded() {
        return Verdict::Succeeded;
    }
    if sent.attempt.status_code == Some(410) {
        return Verdict::Failed;
    }
    match schedule.next_wait(number, sent.retry_after, random) {
        Some(wait) => Verdict::RetryAt {
            at: crate::domain::later(sent.attempt.at, wait),
            wait,
        },
        None => Verdict::Failed,
    }
}

/// What follows a retry by hand of a delivery that was `previous`: final, except that a
/// pending delivery whose attempt fails keeps its automatic retries (a `410 Gone` still
/// ends them), and a failed one stays failed.
pub fn after_manual_retry(previous: DeliveryStatus, sent: &Sent) -> Verdict {
    if sent.attempt.succeeded() {
        Verdict::Succeeded
    } else if previous == DeliveryStatus::Pending && sent.attempt.status_code != Some(410) {
        Verdict::StillScheduled
    } else {
        Verdict::Failed
    }
}

/// Records attempt `number` (made `by` the pipeline or by hand) and its verdict on the
/// delivery; returns the retry task to queue (with its delay), if another attempt follows.
/// A task numbers the automatic attempt it makes.
pub fn record(
    delivery: &mut Delivery,
    number: u32,
    sent: Sent,
    verdict: Verdict,
    by: Attempted,
) -> Option<(Task, Duration)> {
    let (status, next_at) = match verdict {
        Verdict::Succeeded => (DeliveryStatus::Succeeded, None),
        Verdict::Failed => (DeliveryStatus::Failed, None),
        Verdict::RetryAt { at, .. } => (DeliveryStatus::Pending, Some(at)),
        Verdict::StillScheduled => (DeliveryStatus::Pending, delivery.next_attempt_at),
    };
    delivery.record(number, sent.attempt, status, next_at);
    if by == Attempted::ByHand {
        delivery.manual_attempts += 1;
    }
    match verdict {
        Verdict::RetryAt { at, wait } => Some((
            Task::Retry(RetryTask {
                tenant_id: delivery.tenant_id.clone(),
                delivery_id: delivery.id.clone(),
                webhook_id: Some(delivery.webhook_id.clone()),
                attempt: delivery.automatic_attempts() + 1,
                not_before: at.timestamp_millis(),
            }),
            wait,
        )),
        Verdict::Succeeded | Verdict::Failed | Verdict::StillScheduled => None,
    }
}

/// A delivery its webhook's breaker (or its cap on requests in flight) holds back at
/// `now` (for the hold's wait and `random` of its spread): it waits pending, no attempt
/// made, and the retry task that makes its next attempt is returned (with its delay).
pub fn defer(
    delivery: &mut Delivery,
    hold: Hold,
    random: f64,
    now: DateTime<Utc>,
) -> (Task, Duration) {
    let wait = hold.with_share(random);
    let at = crate::domain::later(now, wait);
    delivery.status = DeliveryStatus::Pending;
    delivery.next_attempt_at = Some(at);
    delivery.updated_at = now;
    (
        Task::Retry(RetryTask {
            tenant_id: delivery.tenant_id.clone(),
            delivery_id: delivery.id.clone(),
            webhook_id: Some(delivery.webhook_id.clone()),
            attempt: delivery.automatic_attempts() + 1,
            not_before: at.timestamp_millis(),
        }),
        wait,
    )
}

/// A retry task the breaker holds back at `now` (as [`defer`]): the same attempt as a new
/// task, due then. A new message rather than the old one parked, so a delivery
/// held back again and again (an endpoint down for hours) never reaches the queue's
/// receive limit and its dead-letter queue.
pub fn defer_task(
    task: &RetryTask,
    hold: Hold,
    random: f64,
    now: DateTime<Utc>,
) -> (Task, Duration) {
    let wait = hold.with_share(random);
    (
        Task::Retry(RetryTask {
            not_before: crate::domain::later(now, wait).timestamp_millis(),
            ..task.clone()
        }),
        wait,
    )
}

/// How long a task due at `not_before` (Unix milliseconds) must still wait at `now`;
/// `None` when it is due. SQS delays whole seconds and at most 15 minutes, so tasks come
/// early and are parked for the rest.
pub fn still_to_wait(not_before: i64, now: DateTime<Utc>) -> Option<Duration> {
    let due = DateTime::<Utc>::from_timestamp_millis(not_before)?;
    (due > now).then(|| (due - now).to_std().unwrap_or_default())
}

/// Receives after which a retry task whose delivery record is missing is dropped.
pub const MISSING_RECORD_RECEIVES: u32 = 5;

/// A retry task found no record: the task is queued before the record is written, so wait
/// a moment for the writer; past a few receives the record is gone for good (expired).
pub fn wait_for_missing_record(receive_count: u32) -> Option<Duration> {
    (receive_count < MISSING_RECORD_RECEIVES).then_some(Duration::from_secs(1))
}

/// What a retry task does with the delivery and the webhook it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryStep {
    /// A duplicate task (its attempt was made), or the delivery closed meanwhile.
    Drop,
    /// Close the delivery in this status without an attempt.
    Close(DeliveryStatus),
    /// Make the attempt.
    Attempt,
}

pub fn retry_step(delivery: &Delivery, task_attempt: u32, webhook: Option<&Webhook>) -> RetryStep {
    // Only a pending delivery waits for a retry task: a buffered one is the release's to
    // send, in order, and a closed one is done.
    if delivery.automatic_attempts() >= task_attempt || delivery.status != DeliveryStatus::Pending {
        return RetryStep::Drop;
    }
    match webhook.map(|wh| wh.status) {
        None | Some(WebhookStatus::Disabled) => RetryStep::Close(DeliveryStatus::Cancelled),
        Some(WebhookStatus::Paused) => RetryStep::Close(DeliveryStatus::Buffered),
        Some(WebhookStatus::Active) => RetryStep::Attempt,
    }
}

/// Where an event goes for one webhook of its tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Attempt it now.
    Send,
    /// Keep it buffered until the webhook is unpaused.
    Buffer,
}

/// Whether `webhook` gets an event of `event_type`, and how: a disabled webhook or one not
/// subscribed gets nothing, not even a record.
pub fn route(webhook: &Webhook, event_type: &str) -> Option<Route> {
    if webhook.status == WebhookStatus::Disabled
        || !subscription_matches(&webhook.events, event_type)
    {
        return None;
    }
    Some(match webhook.status {
        WebhookStatus::Paused => Route::Buffer,
        _ => Route::Send,
    })
}

/// Whether `webhook`'s content filter (if any) lets `event` through, checked after the type
/// subscription: a refused event makes no delivery and no record. `created` is the event's
/// time as the payload carries it.
pub fn admits(webhook: &Webhook, event: &Event, created: &str) -> bool {
    webhook
        .filter
        .as_ref()
        .is_none_or(|filter| filter.matches(&event.id, &event.event_type, created, &event.data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::delivery::Attempt;

    #[test]
    fn a_held_back_delivery_waits_pending_with_no_attempt_and_its_task_makes_the_next() {
        let now = crate::domain::parse_time("2026-03-01T00:00:00Z").unwrap();
        let mut d = Delivery::new(
            "t",
            "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "wh_x",
            "a.b",
            DeliveryStatus::Pending,
            now,
        );
        let hold = Hold {
            wait: Duration::from_secs(30),
            spread: Duration::from_secs(15),
        };
        let (task, delay) = defer(&mut d, hold, 0.5, now);
        assert_eq!(delay, Duration::from_millis(37_500));
        assert_eq!((d.attempts, d.attempt_log.len()), (0, 0));
        assert_eq!(
            d.next_attempt_at,
            Some(now + chrono::TimeDelta::milliseconds(37_500))
        );
        let Task::Retry(retry) = task else {
            panic!("a retry task")
        };
        assert_eq!(retry.attempt, 1);
        assert_eq!(
            Some(retry.not_before),
            d.next_attempt_at.map(|t| t.timestamp_millis())
        );
        assert_eq!(
            retry_step(&d, retry.attempt, Some(&sample())),
            RetryStep::Attempt
        );
    }

    #[test]
    fn a_held_back_retry_task_becomes_a_new_task_for_the_same_attempt() {
        let now = crate::domain::parse_time("2026-03-01T00:00:00Z").unwrap();
        let task = RetryTask {
            tenant_id: "t".into(),
            delivery_id: "dl_x".into(),
            webhook_id: Some("wh_x".into()),
            attempt: 4,
            not_before: now.timestamp_millis() - 1,
        };
        let hold = Hold {
            wait: Duration::from_secs(10),
            spread: Duration::from_secs(4),
        };
        let (again, delay) = defer_task(&task, hold, 0.5, now);
        assert_eq!(delay, Duration::from_secs(12));
        let Task::Retry(again) = again else {
            panic!("a retry task")
        };
        assert_eq!(
            (
                again.attempt,
                again.delivery_id.as_str(),
                again.tenant_id.as_str()
            ),
            (4, "dl_x", "t")
        );
        assert_eq!(again.not_before, now.timestamp_millis() + 12_000);
        assert_eq!(again.webhook_id.as_deref(), Some("wh_x"));
    }

    use crate::domain::webhook::tests::sample;

    fn sent(status: Option<u16>, retry_after: Option<u64>) -> Sent {
        Sent {
            attempt: Attempt {
                at: crate::domain::parse_time("2026-03-01T00:00:00Z").unwrap(),
                status_code: status,
                response_time: 3,
                error: None,
                response_excerpt: None,
            },
            retry_after: retry_after.map(Duration::from_secs),
            slow: false,
        }
    }

    fn schedule() -> RetrySchedule {
        RetrySchedule::parse("10s,1m").unwrap()
    }

    #[test]
    fn a_2xx_succeeds_and_a_410_ends_the_retries() {
        let s = schedule();
        assert_eq!(
            after_attempt(&s, 1, &sent(Some(204), None), 0.5),
            Verdict::Succeeded
        );
        assert_eq!(
            after_attempt(&s, 1, &sent(Some(410), None), 0.5),
            Verdict::Failed
        );
    }

    #[test]
    fn a_failure_waits_the_schedule_with_jitter_then_is_exhausted() {
        let s = schedule();
        let failed = sent(Some(500), None);
        let Verdict::RetryAt { at, wait } = after_attempt(&s, 1, &failed, 1.0) else {
            panic!("expected a retry")
        };
        assert_eq!(wait, Duration::from_secs(12));
        assert_eq!(at - failed.attempt.at, chrono::TimeDelta::seconds(12));
        assert!(matches!(
            after_attempt(&s, 2, &failed, 0.0),
            Verdict::RetryAt { wait, .. } if wait == Duration::from_secs(60)
        ));
        assert_eq!(after_attempt(&s, 3, &failed, 0.0), Verdict::Failed);
    }

    #[test]
    fn retry_after_is_honoured_only_up_to_the_longest_wait() {
        let s = schedule();
        let verdict = |secs| after_attempt(&s, 1, &sent(Some(503), Some(secs)), 0.0);
        assert!(
            matches!(verdict(30), Verdict::RetryAt { wait, .. } if wait == Duration::from_secs(30))
        );
        assert!(
            matches!(verdict(u64::MAX), Verdict::RetryAt { wait, .. } if wait == Duration::from_secs(60))
        );
    }

    fn delivery() -> Delivery {
        Delivery::new(
            "acme",
            "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "wh_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "user.created",
            DeliveryStatus::Pending,
            crate::domain::now(),
        )
    }

    #[test]
    fn recording_a_retry_verdict_keeps_the_delivery_pending_and_queues_the_next_attempt() {
        let mut d = delivery();
        let failed = sent(Some(500), None);
        let verdict = after_attempt(&schedule(), 1, &failed, 0.0);
        let (task, delay) = record(&mut d, 1, failed, verdict, Attempted::Automatically).unwrap();
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(d.attempts, 1);
        let Task::Retry(retry) = task else { panic!() };
        assert_eq!(retry.attempt, 2);
        assert_eq!(
            Some(retry.not_before),
            d.next_attempt_at.map(|t| t.timestamp_millis())
        );
        assert_eq!(delay, Duration::from_secs(10));
        let ok = sent(Some(200), None);
        assert!(record(&mut d, 2, ok, Verdict::Succeeded, Attempted::Automatically).is_none());
        assert_eq!(
            (d.status, d.next_attempt_at),
            (DeliveryStatus::Succeeded, None)
        );
    }

    #[test]
    fn a_failed_retry_by_hand_keeps_the_automatic_schedule_and_its_numbering() {
        let mut d = delivery();
        let failed = sent(Some(500), None);
        let verdict = after_attempt(&schedule(), 1, &failed, 0.0);
        record(&mut d, 1, failed, verdict, Attempted::Automatically).unwrap();
        let scheduled = d.next_attempt_at;
        let again = sent(Some(500), None);
        let verdict = after_manual_retry(DeliveryStatus::Pending, &again);
        assert_eq!(verdict, Verdict::StillScheduled);
        assert!(record(&mut d, 2, again, verdict, Attempted::ByHand).is_none());
        assert_eq!(
            (d.status, d.next_attempt_at),
            (DeliveryStatus::Pending, scheduled)
        );
        assert_eq!(
            (d.attempts, d.manual_attempts, d.automatic_attempts()),
            (2, 1, 1)
        );
        let hold = Hold {
            wait: Duration::from_secs(1),
            spread: Duration::ZERO,
        };
        let (task, _) = defer(&mut d, hold, 0.0, crate::domain::now());
        let Task::Retry(retry) = task else { panic!() };
        assert_eq!(
            retry.attempt, 2,
            "the next automatic attempt is still the second"
        );
        assert_eq!(
            after_manual_retry(DeliveryStatus::Failed, &sent(Some(500), None)),
            Verdict::Failed
        );
        assert_eq!(
            after_manual_retry(DeliveryStatus::Pending, &sent(Some(410), None)),
            Verdict::Failed
        );
        assert_eq!(
            after_manual_retry(DeliveryStatus::Failed, &sent(Some(204), None)),
            Verdict::Succeeded
        );
    }

    #[test]
    fn early_tasks_wait_for_the_rest_of_their_delay() {
        let now = crate::domain::parse_time("2026-03-01T00:00:00Z").unwrap();
        let ms = now.timestamp_millis();
        assert_eq!(
            still_to_wait(ms + 1500, now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(still_to_wait(ms, now), None);
        assert_eq!(still_to_wait(ms - 10, now), None);
        assert_eq!(still_to_wait(i64::MAX, now), None);
        assert_eq!(wait_for_missing_record(1), Some(Duration::from_secs(1)));
        assert_eq!(wait_for_missing_record(MISSING_RECORD_RECEIVES), None);
    }

    #[test]
    fn a_retry_task_attempts_only_an_open_delivery_of_an_active_webhook() {
        let d = delivery();
        let mut wh = sample();
        assert_eq!(retry_step(&d, 1, Some(&wh)), RetryStep::Attempt);
        assert_eq!(retry_step(&d, 0, Some(&wh)), RetryStep::Drop);
        assert_eq!(
            retry_step(&d, 1, None),
            RetryStep::Close(DeliveryStatus::Cancelled)
        );
        wh.status = WebhookStatus::Paused;
        assert_eq!(
            retry_step(&d, 1, Some(&wh)),
            RetryStep::Close(DeliveryStatus::Buffered)
        );
        wh.status = WebhookStatus::Disabled;
        assert_eq!(
            retry_step(&d, 1, Some(&wh)),
            RetryStep::Close(DeliveryStatus::Cancelled)
        );
        let mut closed = delivery();
        closed.status = DeliveryStatus::Succeeded;
        assert_eq!(retry_step(&closed, 1, Some(&sample())), RetryStep::Drop);
        let mut held = delivery();
        held.status = DeliveryStatus::Buffered;
        assert_eq!(
            retry_step(&held, 1, Some(&sample())),
            RetryStep::Drop,
            "the release's to send"
        );
    }

    #[test]
    fn events_route_to_subscribed_webhooks_and_buffer_for_paused_ones() {
        let mut wh = sample();
        wh.events = vec!["user.*".into()];
        assert_eq!(route(&wh, "user.created"), Some(Route::Send));
        assert_eq!(route(&wh, "invoice.paid"), None);
        wh.status = WebhookStatus::Paused;
        assert_eq!(route(&wh, "user.created"), Some(Route::Buffer));
        wh.status = WebhookStatus::Disabled;
        assert_eq!(route(&wh, "user.created"), None);
    }

    #[test]
    fn a_content_filter_admits_only_the_events_it_matches() {
        let mut wh = sample();
        let data = |amount: u32| {
            serde_json::json!({"amount": amount})
                .as_object()
                .cloned()
                .unwrap()
        };
        let big = Event::new("acme", "user.created", data(500));
        let small = Event::new("acme", "user.created", data(5));
        assert!(admits(&wh, &small, "2026-01-01T00:00:00.000Z"), "no filter");
        wh.filter = Some(
            crate::domain::filter::Filter::parse(
                serde_json::json!({"type": "user.created", "data": {"amount": {"$gte": 100}}}),
            )
            .unwrap(),
        );
        assert!(admits(&wh, &big, "2026-01-01T00:00:00.000Z"));
        assert!(!admits(&wh, &small, "2026-01-01T00:00:00.000Z"));
    }
}
