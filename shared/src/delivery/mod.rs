//! The delivery pipeline: the `deliver` function's handler. It reads a batch of SQS
//! messages (ingest events, retry tasks, release and cancel pages), fans each event out to
//! the tenant's matching webhooks, signs and sends every request concurrently, records
//! every attempt, and schedules each failed delivery's next attempt on its own.
//!
//! Every step is idempotent, so a repeated message (SQS delivers at least once, and a
//! failed batch item comes back) never makes a second delivery record:
//! - an event is stored once (conditional writes on its idempotency key);
//! - a delivery's id is derived from (event, webhook), so a repeat finds the record;
//! - a retry task names its attempt number, and a task whose attempt was made is dropped;
//! - next attempts are queued before the record that mentions them is written.

pub mod client;
pub mod schedule;

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::join_all;

use crate::domain::delivery::{Attempt, Delivery, DeliveryStatus};
use crate::domain::event::Event;
use crate::domain::event_type::subscription_matches;
use crate::domain::format_time;
use crate::domain::webhook::{Webhook, WebhookStatus};
use crate::ids::IdKind;
use crate::queue::{EventTask, Queues, RetryTask, Task, WebhookTask, parse_message};
use crate::signing::{hex_signature, standard_signature_header};
use crate::state::AppState;
use crate::storage::events::Stored;
use crate::storage::{StoreError, TenantView};
use client::{Outgoing, Sent, Target};

/// Requests in flight at once in one invocation.
pub const MAX_IN_FLIGHT: usize = 256;
/// Open deliveries handled per release or cancel task; more continue in a new task.
const PAGE: i32 = 100;
/// `last_triggered_at` is refreshed at most this often (one write per webhook per minute).
const TRIGGER_REFRESH: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// A message of the batch, with what it asks.
struct Message<T> {
    record: SqsMessage,
    task: T,
}

impl<T> Message<T> {
    fn id(&self) -> String {
        self.record.message_id.clone().unwrap_or_default()
    }

    fn receive_count(&self) -> u32 {
        self.record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1)
    }
}

/// The deliver function's handler: processes a batch and reports the messages to retry.
pub async fn deliver_batch(state: &AppState, batch: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let Some(queues) = &state.queues else {
        tracing::error!(
            "the deliver function needs INGEST_QUEUE_URL, INGEST_DLQ_URL and DELIVERY_QUEUE_URL"
        );
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
        let body = record.body.clone().unwrap_or_default();
        match parse_message(&body) {
            Ok(Task::Event(task)) => events.push(Message { record, task }),
            Ok(Task::Retry(task)) => retries.push(Message { record, task }),
            Ok(Task::Release(task)) => pages.push((true, Message { record, task })),
            Ok(Task::Cancel(task)) => pages.push((false, Message { record, task })),
            Err(reason) => {
                if reject(queues, &record, &body, &reason).await.is_err() {
                    failed.extend(record.message_id);
                }
            }
        }
    }
    let (fanned, retried, paged) = tokio::join!(
        fan_out(state, queues, events),
        join_all(retries.into_iter().map(|m| retry(state, queues, m))),
        join_all(
            pages
                .into_iter()
                .map(|(release, m)| work_page(state, queues, release, m))
        ),
    );
    failed.extend(fanned);
    failed.extend(retried.into_iter().flatten());
    failed.extend(paged.into_iter().flatten());
    for id in failed {
        response.add_failure(id);
    }
    response
}

/// Sends a message that can never be processed to the ingest dead-letter queue, logging
/// the reason and counting it (a CloudWatch metric in Embedded Metric Format).
async fn reject(queues: &Queues, record: &SqsMessage, body: &str, reason: &str) -> Result<(), ()> {
    let message_id = record.message_id.as_deref().unwrap_or("");
    tracing::warn!(
        message_id,
        reason,
        "rejected message sent to the dead-letter queue"
    );
    println!(
        "{}",
        serde_json::json!({
            "_aws": {
                "Timestamp": Utc::now().timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": "Webhooks",
                    "Dimensions": [[]],
                    "Metrics": [{"Name": "RejectedMessages", "Unit": "Count"}],
                }],
            },
            "RejectedMessages": 1,
        })
    );
    queues.reject(body, reason).await.map_err(|e| {
        tracing::error!(error = %e, message_id, "could not move a rejected message to the dead-letter queue");
    })
}

/// A random share in [0, 1) for jitter.
fn random_share() -> f64 {
    let bytes = crate::domain::api_key::random_bytes::<8>();
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

// ---- signing and sending ----

/// The headers of one attempt of `event` to `webhook` at `now`: its id, timestamp, both
/// signatures (the Standard Webhooks one under every secret in force), type and attempt.
pub fn signed_headers(
    webhook: &Webhook,
    event_id: &str,
    event_type: &str,
    body: &[u8],
    attempt: u32,
    now: DateTime<Utc>,
) -> Vec<(&'static str, String)> {
    let timestamp = now.timestamp();
    let mut secrets = vec![&webhook.secret];
    if let (Some(previous), Some(until)) = (&webhook.previous_secret, webhook.previous_expires_at)
        && until > now
    {
        secrets.push(previous);
    }
    vec![
        ("webhook-id", event_id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        (
            "webhook-signature",
            standard_signature_header(&secrets, event_id, timestamp, body),
        ),
        ("x-webhook-signature", hex_signature(&webhook.secret, body)),
        ("x-webhook-event", event_type.to_string()),
        ("x-webhook-attempt", attempt.to_string()),
    ]
}

/// Signs and sends one attempt of `event` to `webhook`, at `target` (its parsed URL).
pub async fn send_attempt(
    state: &AppState,
    webhook: &Webhook,
    target: &Target,
    event_id: &str,
    event_type: &str,
    body: Bytes,
    attempt: u32,
) -> Sent {
    let headers = signed_headers(webhook, event_id, event_type, &body, attempt, Utc::now());
    state
        .delivery
        .send(Outgoing {
            url: target,
            body,
            headers,
            auth: webhook.auth.as_ref(),
        })
        .await
}

/// Signs and sends one attempt of a stored event to `webhook`.
pub async fn send_event(state: &AppState, webhook: &Webhook, event: &Event, attempt: u32) -> Sent {
    let body = Bytes::from(event.payload());
    let target = client::parse_target(&webhook.url);
    send_attempt(
        state,
        webhook,
        &target,
        &event.id,
        &event.event_type,
        body,
        attempt,
    )
    .await
}

/// What follows an attempt: the delivery's status and, if another attempt is due, when.
fn next_step(
    state: &AppState,
    attempt_number: u32,
    sent: &Sent,
) -> (DeliveryStatus, Option<Duration>) {
    if sent.attempt.succeeded() {
        return (DeliveryStatus::Succeeded, None);
    }
    if sent.attempt.status_code == Some(410) {
        return (DeliveryStatus::Failed, None);
    }
    match state
        .config
        .retry_schedule
        .next_wait(attempt_number, sent.retry_after, random_share())
    {
        Some(wait) => (DeliveryStatus::Pending, Some(wait)),
        None => (DeliveryStatus::Failed, None),
    }
}

/// Records an attempt on the delivery; returns the retry task to queue, if any.
fn apply_attempt(
    state: &AppState,
    delivery: &mut Delivery,
    attempt_number: u32,
    sent: Sent,
) -> Option<(Task, Duration)> {
    let (status, wait) = next_step(state, attempt_number, &sent);
    let next_at = wait.map(|w| crate::domain::later(sent.attempt.at, w));
    delivery.record(attempt_number, sent.attempt, status, next_at);
    let (wait, next_at) = (wait?, next_at?);
    let task = Task::Retry(RetryTask {
        tenant_id: delivery.tenant_id.clone(),
        delivery_id: delivery.id.clone(),
        attempt: attempt_number + 1,
        not_before: next_at.timestamp_millis(),
    });
    Some((task, wait))
}

/// When an attempt was made and whether it succeeded: what a webhook's health needs of it.
#[derive(Clone, Copy)]
struct Tried {
    at: DateTime<Utc>,
    succeeded: bool,
}

impl From<&Attempt> for Tried {
    fn from(a: &Attempt) -> Self {
        Tried {
            at: a.at,
            succeeded: a.succeeded(),
        }
    }
}

/// Keeps a webhook's `last_triggered_at` and auto-disable clock up to date after attempts.
fn health_after(state: &AppState, webhook: &Webhook, attempts: &[Tried]) -> Webhook {
    let mut next = webhook.clone();
    let Some(latest) = attempts.iter().map(|a| a.at).max() else {
        return next;
    };
    if next
        .last_triggered_at
        .is_none_or(|t| latest - t >= TRIGGER_REFRESH)
    {
        next.last_triggered_at = Some(latest);
    }
    if attempts.iter().any(|a| a.succeeded) {
        next.failing_since = None;
    } else {
        let since = *next.failing_since.get_or_insert(latest);
        let limit = chrono::TimeDelta::from_std(state.config.auto_disable_after)
            .unwrap_or(chrono::TimeDelta::MAX);
        if next.status == WebhookStatus::Active && latest - since >= limit {
            next.status = WebhookStatus::Disabled;
            next.disabled_reason = Some(format!(
                "every delivery failed since {} ({} without a success)",
                format_time(since),
                humanize(state.config.auto_disable_after)
            ));
            tracing::warn!(webhook_id = %webhook.id, tenant_id = %webhook.tenant_id, "webhook disabled after failing deliveries");
        }
    }
    next
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86400 && s % 86400 == 0 => format!("{} days", s / 86400),
        s if s >= 3600 && s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{s} seconds"),
    }
}

async fn save_health(state: &AppState, before: &Webhook, after: &Webhook) {
    if let Err(e) = state.store.record_webhook_health(before, after).await {
        tracing::warn!(error = %e, webhook_id = %before.id, "could not record webhook health");
    }
}

// ---- fan-out ----

/// An event ready to fan out.
struct Claimed {
    message: usize,
    event: Event,
    /// Skip webhooks whose delivery is already recorded (a repeat of an unfinished fan-out).
    resume: bool,
}

/// One request of the fan-out.
struct Job {
    claimed: usize,
    webhook: usize,
}

/// Delivery records written per request (DynamoDB's BatchWriteItem limit).
pub const RECORDS_PER_WRITE: usize = 25;
/// Record writes in flight at once during a fan-out.
pub const PARALLEL_RECORD_WRITES: usize = 8;

/// One delivery's outcome on its way to storage.
struct Outcome {
    claimed: usize,
    delivery: Delivery,
    retry: Option<(Task, Duration)>,
}

/// Queues the chunk's next attempts, then writes its records (in that order, so a record
/// never promises an attempt that was not queued). Returns the events the chunk touched.
async fn record_chunk(
    state: &AppState,
    queues: &Queues,
    chunk: Vec<Outcome>,
    expires: i64,
) -> (Vec<usize>, Result<(), String>) {
    let events: Vec<usize> = chunk.iter().map(|o| o.claimed).collect();
    let mut retries = Vec::new();
    let mut records = Vec::with_capacity(chunk.len());
    for outcome in chunk {
        retries.extend(outcome.retry);
        records.push(outcome.delivery);
    }
    let result = async {
        queues
            .send(&queues.delivery_url, &retries)
            .await
            .map_err(|e| e.to_string())?;
        state
            .store
            .put_deliveries(&records, expires)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    (events, result)
}

/// Fans out the batch's events; returns the ids of messages to retry.
async fn fan_out(
    state: &AppState,
    queues: &Queues,
    messages: Vec<Message<EventTask>>,
) -> Vec<String> {
    if messages.is_empty() {
        return Vec::new();
    }
    let mut failed = Vec::new();
    // One read per tenant per batch: its webhooks and catalogue.
    let mut tenants: HashMap<String, Result<TenantView, ()>> = HashMap::new();
    for m in &messages {
        if !tenants.contains_key(&m.task.tenant_id) {
            let view = state.store.load_tenant(&m.task.tenant_id).await.map_err(|e| {
                tracing::warn!(error = %e, tenant_id = %m.task.tenant_id, "could not read the tenant's webhooks");
            });
            tenants.insert(m.task.tenant_id.clone(), view);
        }
    }
    // Store (or find) each event.
    let claims = join_all(messages.iter().enumerate().map(|(i, m)| {
        let view = &tenants[&m.task.tenant_id];
        claim(state, queues, i, m, view)
    }))
    .await;
    let mut claimed: Vec<Claimed> = Vec::new();
    for (i, outcome) in claims.into_iter().enumerate() {
        match outcome {
            Ok(Some(c)) => claimed.push(c),
            Ok(None) => {}
            Err(()) => failed.push(messages[i].id()),
        }
    }
    // Which webhooks get which event, and which deliveries exist already.
    let mut deliveries: Vec<Vec<Delivery>> = vec![Vec::new(); claimed.len()];
    let mut jobs: Vec<Job> = Vec::new();
    let mut broken: Vec<bool> = vec![false; claimed.len()];
    for (ci, c) in claimed.iter().enumerate() {
        let Ok(view) = &tenants[&c.event.tenant_id] else {
            broken[ci] = true;
            continue;
        };
        let matching: Vec<usize> = view
            .webhooks
            .iter()
            .enumerate()
            .filter(|(_, wh)| {
                wh.status != WebhookStatus::Disabled
                    && subscription_matches(&wh.events, &c.event.event_type)
            })
            .map(|(wi, _)| wi)
            .collect();
        let existing: Vec<String> = if c.resume {
            let ids: Vec<String> = matching
                .iter()
                .map(|&wi| crate::domain::delivery::delivery_id(&c.event.id, &view.webhooks[wi].id))
                .collect();
            match state
                .store
                .existing_deliveries(&c.event.tenant_id, &ids)
                .await
            {
                Ok(found) => found.into_iter().map(|d| d.id).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read existing deliveries");
                    broken[ci] = true;
                    continue;
                }
            }
        } else {
            Vec::new()
        };
        for wi in matching {
            let wh = &view.webhooks[wi];
            // Only a resumed fan-out has records to skip (Delivery::new derives the id).
            if !existing.is_empty()
                && existing.contains(&crate::domain::delivery::delivery_id(&c.event.id, &wh.id))
            {
                continue;
            }
            if wh.status == WebhookStatus::Paused {
                deliveries[ci].push(Delivery::new(
                    &c.event.tenant_id,
                    &c.event.id,
                    &wh.id,
                    &c.event.event_type,
                    DeliveryStatus::Buffered,
                    crate::domain::now(),
                ));
            } else {
                jobs.push(Job {
                    claimed: ci,
                    webhook: wi,
                });
            }
        }
    }
    // Send every request of the batch concurrently (one slow endpoint delays no other) and
    // record the outcomes 25 at a time while the rest are still in flight.
    let payloads: Vec<Bytes> = claimed
        .iter()
        .map(|c| Bytes::from(c.event.payload()))
        .collect();
    // Each webhook's URL parsed once for the batch, not once per event.
    let mut targets: HashMap<(&str, usize), Target> = HashMap::new();
    for job in &jobs {
        let tenant = claimed[job.claimed].event.tenant_id.as_str();
        if let Ok(view) = &tenants[tenant] {
            targets
                .entry((tenant, job.webhook))
                .or_insert_with(|| client::parse_target(&view.webhooks[job.webhook].url));
        }
    }
    let mut requests = Vec::with_capacity(jobs.len());
    for job in jobs.iter().filter(|j| !broken[j.claimed]) {
        let c = &claimed[job.claimed];
        let Ok(view) = &tenants[&c.event.tenant_id] else {
            continue;
        };
        let wh = &view.webhooks[job.webhook];
        let target = &targets[&(c.event.tenant_id.as_str(), job.webhook)];
        let body = payloads[job.claimed].clone();
        let (ci, wi) = (job.claimed, job.webhook);
        requests.push(async move {
            let sent =
                send_attempt(state, wh, target, &c.event.id, &c.event.event_type, body, 1).await;
            (ci, wi, sent)
        });
    }
    let (outcomes, outcomes_rx) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    let produce = async {
        let mut attempts_by_webhook: HashMap<(&str, usize), Vec<Tried>> = HashMap::new();
        for (ci, buffered) in deliveries.into_iter().enumerate() {
            for delivery in buffered.into_iter().filter(|_| !broken[ci]) {
                let _ = outcomes.send(Outcome {
                    claimed: ci,
                    delivery,
                    retry: None,
                });
            }
        }
        let mut sending = futures::stream::iter(requests).buffer_unordered(MAX_IN_FLIGHT);
        while let Some((ci, wi, sent)) = sending.next().await {
            let c = &claimed[ci];
            let Ok(view) = &tenants[&c.event.tenant_id] else {
                continue;
            };
            let mut delivery = Delivery::new(
                &c.event.tenant_id,
                &c.event.id,
                &view.webhooks[wi].id,
                &c.event.event_type,
                DeliveryStatus::Pending,
                sent.attempt.at,
            );
            attempts_by_webhook
                .entry((c.event.tenant_id.as_str(), wi))
                .or_default()
                .push(Tried::from(&sent.attempt));
            let retry = apply_attempt(state, &mut delivery, 1, sent);
            let _ = outcomes.send(Outcome {
                claimed: ci,
                delivery,
                retry,
            });
        }
        drop(outcomes);
        attempts_by_webhook
    };
    let expires = state.expires_at();
    let record = futures::stream::unfold(outcomes_rx, |mut rx| async move {
        rx.recv().await.map(|outcome| (outcome, rx))
    })
    .chunks(RECORDS_PER_WRITE)
    .map(move |chunk| record_chunk(state, queues, chunk, expires))
    .buffer_unordered(PARALLEL_RECORD_WRITES)
    .collect::<Vec<_>>();
    let (attempts_by_webhook, recorded) = tokio::join!(produce, record);
    let mut unfinished: Vec<bool> = broken.clone();
    for (events, result) in recorded {
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not record deliveries; their events will be retried");
            for ci in events {
                unfinished[ci] = true;
            }
        }
    }
    let finished: Vec<usize> = (0..claimed.len()).filter(|&ci| !unfinished[ci]).collect();
    let marks = join_all(finished.iter().map(|&ci| {
        let e = &claimed[ci].event;
        state.store.mark_fanned_out(&e.tenant_id, &e.id)
    }))
    .await;
    for (&ci, mark) in finished.iter().zip(marks) {
        if let Err(e) = mark {
            // The records are written; a repeat resumes and skips them.
            tracing::warn!(error = %e, "could not mark an event fanned out");
            unfinished[ci] = true;
        }
    }
    for ci in (0..claimed.len()).filter(|&ci| unfinished[ci]) {
        failed.push(messages[claimed[ci].message].id());
    }
    // Webhook health: last_triggered_at and the auto-disable clock.
    let updates = attempts_by_webhook
        .iter()
        .filter_map(|((tenant, wi), attempts)| {
            let view = tenants[*tenant].as_ref().ok()?;
            let before = &view.webhooks[*wi];
            let after = health_after(state, before, attempts);
            Some(async move { save_health(state, before, &after).await })
        });
    join_all(updates).await;
    failed.sort();
    failed.dedup();
    failed
}

/// Stores the message's event once, or finds it. `Ok(None)`: nothing to do (already
/// fanned out, or rejected to the dead-letter queue). `Err`: retry the message.
async fn claim(
    state: &AppState,
    queues: &Queues,
    index: usize,
    message: &Message<EventTask>,
    view: &Result<TenantView, ()>,
) -> Result<Option<Claimed>, ()> {
    let task = &message.task;
    let Ok(view) = view else { return Err(()) };
    if !view.event_types.contains(&task.event_type) {
        let reason = format!(
            "event type {:?} is not in the catalogue of tenant {:?} (unknown type or tenant)",
            task.event_type, task.tenant_id
        );
        let body = message.record.body.clone().unwrap_or_default();
        return reject(queues, &message.record, &body, &reason)
            .await
            .map(|()| None);
    }
    let retry = |e: StoreError| {
        tracing::warn!(error = %e, "could not store an event; the message will be retried");
        Err(())
    };
    if let Some(event_id) = &task.event_id {
        // Stored by the API. A first receipt needs no read; a repeat checks what is done.
        let repeat = message.receive_count() > 1 || task.resend;
        if !repeat {
            let created_at = task
                .created_at
                .as_deref()
                .and_then(crate::domain::parse_time)
                .unwrap_or_else(crate::domain::now);
            let event = Event {
                id: event_id.clone(),
                tenant_id: task.tenant_id.clone(),
                event_type: task.event_type.clone(),
                data: task.data.clone(),
                source_id: task.id.clone(),
                created_at,
                fanned_out: false,
            };
            return Ok(Some(Claimed {
                message: index,
                event,
                resume: false,
            }));
        }
        return match state.store.get_event(&task.tenant_id, event_id).await {
            Ok(Some(event)) if event.fanned_out => Ok(None),
            Ok(Some(event)) => Ok(Some(Claimed {
                message: index,
                event,
                resume: true,
            })),
            Ok(None) => {
                tracing::warn!(event_id, "queued event no longer stored; dropped");
                Ok(None)
            }
            Err(e) => retry(e),
        };
    }
    // From a source on the ingest queue: its `id`, else the SQS message id, makes the
    // repeat of one message (or one source event) land on the first.
    let key = match &task.id {
        Some(id) => id.clone(),
        None => format!("sqs:{}", message.id()),
    };
    let event = Event {
        id: IdKind::Event.generate(),
        tenant_id: task.tenant_id.clone(),
        event_type: task.event_type.clone(),
        data: task.data.clone(),
        source_id: task.id.clone(),
        created_at: crate::domain::now(),
        fanned_out: false,
    };
    match state
        .store
        .store_event(&event, Some(&key), state.expires_at())
        .await
    {
        Ok(Stored::New) => Ok(Some(Claimed {
            message: index,
            event,
            resume: false,
        })),
        Ok(Stored::Repeat(first)) if first.fanned_out => Ok(None),
        Ok(Stored::Repeat(first)) => Ok(Some(Claimed {
            message: index,
            event: first,
            resume: true,
        })),
        Err(e) => retry(e),
    }
}

// ---- retries ----

/// One retry task; `Some(message id)` when the message must come back.
async fn retry(state: &AppState, queues: &Queues, message: Message<RetryTask>) -> Option<String> {
    match retry_once(state, queues, &message).await {
        Ok(()) => None,
        Err(why) => {
            if !why.is_empty() {
                tracing::warn!(reason = %why, delivery_id = %message.task.delivery_id, "retry task will come back");
            }
            Some(message.id())
        }
    }
}

async fn retry_once(
    state: &AppState,
    queues: &Queues,
    message: &Message<RetryTask>,
) -> Result<(), String> {
    let task = &message.task;
    let store = &state.store;
    let now = Utc::now();
    let due = DateTime::<Utc>::from_timestamp_millis(task.not_before).unwrap_or(now);
    if due > now {
        // Early (SQS delays whole seconds, at most 15 minutes): park it until it is due.
        park(queues, message, (due - now).to_std().unwrap_or_default()).await?;
        return Err(String::new());
    }
    let Some(mut delivery) = store
        .get_delivery(&task.tenant_id, &task.delivery_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        // The task is queued before the record is written: give the writer a moment.
        // Past a few receives the record is gone for good (expired).
        if message.receive_count() < MISSING_RECORD_RECEIVES {
            park(queues, message, Duration::from_secs(1)).await?;
            return Err(String::new());
        }
        return Ok(());
    };
    if delivery.attempts >= task.attempt || !delivery.status.is_open() {
        return Ok(()); // a duplicate task, or closed meanwhile
    }
    let webhook = store
        .get_webhook(&task.tenant_id, &delivery.webhook_id)
        .await
        .map_err(|e| e.to_string())?;
    let close = |delivery: &mut Delivery, status: DeliveryStatus| {
        delivery.status = status;
        delivery.next_attempt_at = None;
        delivery.updated_at = crate::domain::now();
    };
    let webhook = match webhook {
        None => {
            close(&mut delivery, DeliveryStatus::Cancelled);
            return save(state, &delivery, task.attempt, &OPEN).await;
        }
        Some(wh) if wh.status == WebhookStatus::Disabled => {
            close(&mut delivery, DeliveryStatus::Cancelled);
            return save(state, &delivery, task.attempt, &OPEN).await;
        }
        Some(wh) if wh.status == WebhookStatus::Paused => {
            close(&mut delivery, DeliveryStatus::Buffered);
            return save(state, &delivery, task.attempt, &OPEN).await;
        }
        Some(wh) => wh,
    };
    let Some(event) = store
        .get_event(&task.tenant_id, &delivery.event_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        close(&mut delivery, DeliveryStatus::Failed);
        return save(state, &delivery, task.attempt, &OPEN).await;
    };
    let sent = send_event(state, &webhook, &event, task.attempt).await;
    let after = health_after(state, &webhook, &[Tried::from(&sent.attempt)]);
    if let Some(next) = apply_attempt(state, &mut delivery, task.attempt, sent) {
        queues
            .send(&queues.delivery_url, &[next])
            .await
            .map_err(|e| e.to_string())?;
    }
    save(state, &delivery, task.attempt, &OPEN).await?;
    save_health(state, &webhook, &after).await;
    Ok(())
}

/// Receives after which a retry task whose delivery record is missing is dropped.
const MISSING_RECORD_RECEIVES: u32 = 5;

/// Makes a received message visible again only after `wait` (at most 12 h).
async fn park<T>(queues: &Queues, message: &Message<T>, wait: Duration) -> Result<(), String> {
    let url = message
        .record
        .event_source_arn
        .as_deref()
        .and_then(|arn| queues.url_for_arn(arn))
        .unwrap_or(&queues.delivery_url);
    let receipt = message.record.receipt_handle.as_deref().unwrap_or("");
    queues
        .defer(url, receipt, wait)
        .await
        .map_err(|e| e.to_string())
}

/// The open statuses: a retry may find its delivery still buffered while a release
/// marks it pending; either way the attempt's outcome is written.
const OPEN: [DeliveryStatus; 2] = [DeliveryStatus::Pending, DeliveryStatus::Buffered];

/// Saves a delivery unless a later attempt or a close got there first.
async fn save(
    state: &AppState,
    delivery: &Delivery,
    attempt: u32,
    expect: &[DeliveryStatus],
) -> Result<(), String> {
    match state
        .store
        .save_delivery(delivery, attempt, expect, state.expires_at())
        .await
    {
        Ok(()) | Err(StoreError::ConditionFailed(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

// ---- release (unpause) and cancel (delete) ----

/// One page of a webhook's open deliveries: released for sending (after unpause) or
/// cancelled (after delete). A full page queues the next one.
async fn work_page(
    state: &AppState,
    queues: &Queues,
    release: bool,
    message: Message<WebhookTask>,
) -> Option<String> {
    let result = if release {
        release_page(state, queues, &message.task).await
    } else {
        cancel_page(state, queues, &message.task).await
    };
    result.err().map(|e| {
        tracing::warn!(error = %e, webhook_id = %message.task.webhook_id, "page of deliveries will be retried");
        message.id()
    })
}

async fn release_page(state: &AppState, queues: &Queues, task: &WebhookTask) -> Result<(), String> {
    let store = &state.store;
    let webhook = store
        .get_webhook(&task.tenant_id, &task.webhook_id)
        .await
        .map_err(|e| e.to_string())?;
    if webhook.is_none_or(|wh| wh.status != WebhookStatus::Active) {
        return Ok(()); // deleted (cancel handles it) or paused again (stay buffered)
    }
    let page = store
        .open_deliveries(&task.webhook_id, DeliveryStatus::Buffered, PAGE)
        .await
        .map_err(|e| e.to_string())?;
    let now = crate::domain::now();
    let tasks: Vec<(Task, Duration)> = page
        .iter()
        .map(|d| {
            let task = Task::Retry(RetryTask {
                tenant_id: d.tenant_id.clone(),
                delivery_id: d.id.clone(),
                attempt: d.attempts + 1,
                not_before: now.timestamp_millis(),
            });
            (task, Duration::ZERO)
        })
        .collect();
    queues
        .send(&queues.delivery_url, &tasks)
        .await
        .map_err(|e| e.to_string())?;
    for mut d in page.iter().cloned() {
        d.status = DeliveryStatus::Pending;
        d.next_attempt_at = Some(now);
        d.updated_at = now;
        save(state, &d, d.attempts + 1, &[DeliveryStatus::Buffered]).await?;
    }
    if page.len() == PAGE as usize {
        queues
            .send(
                &queues.delivery_url,
                &[(Task::Release(task.clone()), Duration::ZERO)],
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn cancel_page(state: &AppState, queues: &Queues, task: &WebhookTask) -> Result<(), String> {
    let store = &state.store;
    if store
        .get_webhook(&task.tenant_id, &task.webhook_id)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(()); // the delete did not happen
    }
    let mut full = false;
    for status in [DeliveryStatus::Pending, DeliveryStatus::Buffered] {
        let page = store
            .open_deliveries(&task.webhook_id, status, PAGE)
            .await
            .map_err(|e| e.to_string())?;
        full |= page.len() == PAGE as usize;
        let now = crate::domain::now();
        for mut d in page {
            d.status = DeliveryStatus::Cancelled;
            d.next_attempt_at = None;
            d.updated_at = now;
            save(state, &d, u32::MAX, &[status]).await?;
        }
    }
    if full {
        queues
            .send(
                &queues.delivery_url,
                &[(Task::Cancel(task.clone()), Duration::ZERO)],
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_shares_stay_in_range() {
        for _ in 0..1000 {
            let r = random_share();
            assert!((0.0..1.0).contains(&r));
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(humanize(Duration::from_secs(5 * 86400)), "5 days");
        assert_eq!(humanize(Duration::from_secs(7200)), "2 hours");
        assert_eq!(humanize(Duration::from_secs(3)), "3 seconds");
    }
}
