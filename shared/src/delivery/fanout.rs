//! The fan-out: every event of the batch stored once, matched against its tenant's
//! webhooks, sent to every match at once (one slow endpoint delays no other), and every
//! outcome recorded while the rest are still in flight.
//!
//! An event goes through typed phases: its message is [`Claimed`] (the event stored or
//! found), then [`Planned`] (the webhooks it goes to now, the records of the paused ones),
//! then each request is a [`PendingDispatch`] until it is sent and becomes a
//! [`CompletedDispatch`], recorded 25 to a write after its retry task is queued.
//!
//! Nothing marks an event "fanned out": a repeat of its message (SQS delivers at least
//! once) finds the event stored and the records of the webhooks it went to, and sends only
//! what is missing. A first receipt reads nothing but its tenant's view.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::join_all;
use tracing::Instrument;

use super::Pipeline;
use super::attempt::Send;
use super::decide::{self, Attempted, Route};
use super::health::{self, Tried};
use super::http::{Target, parse_target};
use super::metrics::{self, Outcome};
use super::{Message, PipelineError, Views, random_share, reject};
use crate::domain::delivery::{Delivery, DeliveryStatus, delivery_id};
use crate::domain::event::Event;
use crate::domain::webhook::{Credentials, Webhook};
use crate::queue::{EventTask, QueueName, Task, TaskQueue};
use crate::storage::{RECORDS_PER_WRITE, Saved, StoreError, Stored, TenantView};

/// Requests in flight at once in one invocation.
pub const MAX_IN_FLIGHT: usize = 256;
/// The fewest requests in flight a tenant may have in one invocation, however many tenants
/// share its batch: each gets an equal share of [`MAX_IN_FLIGHT`], at least this.
pub const MIN_TENANT_SHARE: usize = 16;
/// Record writes in flight at once during a fan-out.
pub const PARALLEL_RECORD_WRITES: usize = 8;

/// An event of the batch, stored (or found), ready to plan.
struct Claimed<'m> {
    message: &'m Message<EventTask>,
    event: Event,
    /// A repeat of a fan-out that may not have finished: skip the records that exist.
    resume: bool,
}

/// What an event's fan-out does: the webhooks it is sent to now, and the records of the
/// paused webhooks that buffer it.
struct Planned<'a> {
    message: &'a Message<EventTask>,
    event: Event,
    body: Bytes,
    send_to: Vec<&'a Webhook>,
    buffered: Vec<Delivery>,
    span: tracing::Span,
}

/// One request to make: an event (by its plan) to a webhook, at its parsed URL, with its
/// credentials in the clear.
struct PendingDispatch<'a, 't> {
    plan: usize,
    webhook: &'a Webhook,
    target: &'t Target,
    credentials: &'t Credentials,
}

/// A request made: what to record, and the retry task to queue before the record is
/// written.
struct CompletedDispatch {
    plan: usize,
    delivery: Delivery,
    retry: Option<(Task, Duration)>,
}

/// Fans out the batch's events; returns the ids of messages to retry.
pub(super) async fn fan_out(
    state: &Pipeline<'_>,
    queues: &dyn TaskQueue,
    views: &Views,
    messages: Vec<(Message<EventTask>, tracing::Span)>,
) -> Vec<String> {
    if messages.is_empty() {
        return Vec::new();
    }
    let mut failed = Vec::new();
    let claims = join_all(messages.iter().map(|(m, span)| {
        claim(state, queues, m, view_of(views, &m.task.tenant_id)).instrument(span.clone())
    }))
    .await;
    let mut plans: Vec<Planned<'_>> = Vec::new();
    for ((message, span), claim) in messages.iter().zip(claims) {
        let planned = match claim {
            Ok(Some(claimed)) => {
                span.record("event_id", claimed.event.id.as_str());
                let view = view_of(views, &message.task.tenant_id);
                plan(state, claimed, view, span.clone())
                    .instrument(span.clone())
                    .await
            }
            Ok(None) => continue,
            Err(e) => Err(e),
        };
        match planned {
            Ok(p) => plans.push(p),
            Err(e) => {
                let _entered = span.enter();
                tracing::warn!(error = %e, "the event's fan-out will be retried");
                failed.push(message.id().to_string());
            }
        }
    }
    let (tried, unfinished) = dispatch_and_record(state, queues, &plans).await;
    for (plan, _) in plans.iter().zip(&unfinished).filter(|(_, u)| **u) {
        failed.push(plan.message.id().to_string());
    }
    // Webhook health: last_triggered_at and the auto-disable clock.
    join_all(tried.into_values().map(|(webhook, attempts)| async move {
        health::note(
            state.store,
            &state.warm.health,
            webhook,
            &attempts,
            state.config.auto_disable_after,
        )
        .await;
    }))
    .await;
    failed.sort();
    failed.dedup();
    failed
}

/// A tenant's view for this batch, or why there is none.
fn view_of<'v>(views: &'v Views, tenant: &str) -> Result<&'v TenantView, PipelineError> {
    match views.get(tenant) {
        Some(Ok(view)) => Ok(view),
        _ => Err(StoreError::Unavailable("the tenant's webhooks could not be read".into()).into()),
    }
}

/// Stores the message's event once, or finds it. `Ok(None)`: nothing to do (rejected to
/// the dead-letter queue, or an API event no longer stored).
async fn claim<'m>(
    state: &Pipeline<'_>,
    queues: &dyn TaskQueue,
    message: &'m Message<EventTask>,
    view: Result<&TenantView, PipelineError>,
) -> Result<Option<Claimed<'m>>, PipelineError> {
    let task = &message.task;
    let view = view?;
    if !view.event_types.contains(&task.event_type) {
        let reason = format!(
            "event type {:?} is not in the catalogue of tenant {:?} (unknown type or tenant)",
            task.event_type, task.tenant_id
        );
        reject(queues, message.body(), &reason).await?;
        return Ok(None);
    }
    let claimed = |event, resume| {
        Ok(Some(Claimed {
            message,
            event,
            resume,
        }))
    };
    if let Some(event_id) = &task.event_id {
        // Stored by the API: what is sent is the stored event, never the task's copy, and a
        // task for an event that is not stored is not the service's (or its publish was
        // answered 503 and took it back). A repeat receipt skips what is recorded.
        return match state.store.get_event(&task.tenant_id, event_id).await? {
            Some(event) => claimed(event, task.resend || message.receive_count() > 1),
            None => {
                tracing::warn!(
                    reason = "its event is not stored",
                    "an event task dropped as untrustworthy"
                );
                metrics::dropped_task();
                Ok(None)
            }
        };
    }
    // From a source on the ingest queue: checked against its type's schema, as the API
    // checks what it stores; data that does not match goes to the dead-letter queue.
    // The check runs on a blocking thread under its budget, so a costly one never holds
    // the batch's other work; its reason names a path and a rule, never the data.
    if let Some(sort_key) = view.schemas.get(&task.event_type)
        && let Some(schema) = state
            .schemas
            .get(state.store, &task.tenant_id, &task.event_type, sort_key)
            .await?
    {
        let data = serde_json::Value::Object(task.data.clone());
        if let (_, Err(mismatch)) = schema.check_within_budget(data).await {
            let reason = format!(
                "data does not match the schema of {}: {mismatch}",
                task.event_type
            );
            reject(queues, message.body(), &reason).await?;
            return Ok(None);
        }
    }
    // Each message makes one event: its id derived from the SQS message (its first
    // message, when it came back from the dead-letter queue), so every receipt of the
    // message makes the same event. With its `id`, the source key makes a repeat of the
    // source event land on the first, and the ids tell the two apart: the same message
    // again (a receipt after one that stopped midway, or a redrive) resumes the fan-out;
    // another message repeating the source id delivers nothing, not even to a webhook
    // created since.
    let origin = task.origin.clone().or_else(|| message.origin());
    let (event, key) = match &origin {
        Some(origin) => {
            let sent_at = chrono::DateTime::from_timestamp_millis(origin.sent_at)
                .unwrap_or_else(crate::domain::now);
            let mut event = Event::from_message(
                &task.tenant_id,
                &task.event_type,
                task.data.clone(),
                &origin.message_id,
                sent_at,
            );
            event.source_id = task.id.clone();
            (event, task.id.clone())
        }
        // No time on the message (never from SQS itself): the source key, else the
        // message's id, is the key; only the same message again resumes.
        None => {
            let mut event = Event::new(&task.tenant_id, &task.event_type, task.data.clone());
            event.source_id = task.id.clone();
            let key = task
                .id
                .clone()
                .unwrap_or_else(|| format!("sqs:{}", message.id()));
            (event, Some(key))
        }
    };
    let known_origin = origin.is_some();
    let same_message = |first: &Event| match known_origin {
        true => first.id == event.id,
        false => task.id.is_none() || message.receive_count() > 1,
    };
    match state
        .store
        .store_event(&event, key.as_deref(), state.expires_at())
        .await?
    {
        Stored::New => claimed(event, false),
        // The same message again (its first receipt may have stopped midway), or a message
        // brought back from the dead-letter queue: the fan-out resumes.
        Stored::Repeat(first) if same_message(&first) => claimed(first, true),
        // Another message repeating an event's source id: delivered once, never again.
        Stored::Repeat(first) => {
            tracing::info!(event_id = %first.id, "a repeated source id: nothing delivered again");
            Ok(None)
        }
    }
}

/// Which webhooks of the tenant get the event, now or on unpause; a resumed fan-out skips
/// those whose record exists.
async fn plan<'a>(
    state: &Pipeline<'_>,
    claimed: Claimed<'a>,
    view: Result<&'a TenantView, PipelineError>,
    span: tracing::Span,
) -> Result<Planned<'a>, PipelineError> {
    let view = view?;
    let event = claimed.event;
    let created = crate::domain::format_time(event.created_at);
    let routed: Vec<(&Webhook, Route)> = view
        .webhooks
        .iter()
        .filter_map(|wh| decide::route(wh, &event.event_type).map(|r| (wh, r)))
        .filter(|(wh, _)| decide::admits(wh, &event, &created))
        .collect();
    let existing: Vec<String> = if claimed.resume {
        let ids: Vec<String> = routed
            .iter()
            .map(|(wh, _)| delivery_id(&event.id, &wh.id))
            .collect();
        state
            .store
            .existing_deliveries(&event.tenant_id, &ids)
            .await?
            .into_iter()
            .map(|d| d.id)
            .collect()
    } else {
        Vec::new()
    };
    let mut send_to = Vec::new();
    let mut buffered = Vec::new();
    for (wh, route) in routed {
        // Only a resumed fan-out has records to skip (Delivery::new derives the id).
        if !existing.is_empty() && existing.contains(&delivery_id(&event.id, &wh.id)) {
            continue;
        }
        match route {
            Route::Send => send_to.push(wh),
            Route::Buffer => buffered.push(Delivery::new(
                &event.tenant_id,
                &event.id,
                &wh.id,
                &event.event_type,
                DeliveryStatus::Buffered,
                crate::domain::now(),
            )),
        }
    }
    Ok(Planned {
        message: claimed.message,
        body: Bytes::from(event.payload()),
        event,
        send_to,
        buffered,
        span,
    })
}

/// The attempts made to each webhook of the batch, for its health.
type TriedByWebhook<'a> = HashMap<(&'a str, &'a str), (&'a Webhook, Vec<Tried>)>;

/// Sends every planned request concurrently and records the outcomes 25 at a time while the
/// rest are still in flight, and the buffered records beside them. Returns the attempts per
/// webhook, and which plans did not get all their records written.
async fn dispatch_and_record<'a>(
    state: &Pipeline<'_>,
    queues: &dyn TaskQueue,
    plans: &'a [Planned<'a>],
) -> (TriedByWebhook<'a>, Vec<bool>) {
    // Each webhook's URL parsed and its credentials opened once for the batch, not once per
    // event (opening costs no KMS call once its data key is cached).
    let mut webhooks: HashMap<(&str, &str), &Webhook> = HashMap::new();
    for plan in plans {
        for wh in &plan.send_to {
            webhooks.insert((wh.tenant_id.as_str(), wh.id.as_str()), wh);
        }
    }
    let opened = join_all(webhooks.iter().map(|(key, wh)| async move {
        let target = parse_target(&wh.url);
        (*key, target, state.sealer.credentials(wh).await)
    }))
    .await;
    let mut ready: HashMap<(&str, &str), (Target, Credentials)> = HashMap::new();
    for (key, target, credentials) in opened {
        match credentials {
            Ok(credentials) => {
                ready.insert(key, (target, credentials));
            }
            Err(e) => {
                tracing::warn!(error = %e, webhook_id = key.1, tenant_id = key.0, "could not open a webhook's credentials; its events will be retried");
            }
        }
    }
    let mut unfinished = vec![false; plans.len()];
    let mut pending: Vec<PendingDispatch<'a, '_>> = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        for wh in &plan.send_to {
            match ready.get(&(wh.tenant_id.as_str(), wh.id.as_str())) {
                Some((target, credentials)) => pending.push(PendingDispatch {
                    plan: i,
                    webhook: wh,
                    target,
                    credentials,
                }),
                // Sent when the message comes back (the rest are recorded and skipped then).
                None => unfinished[i] = true,
            }
        }
    }
    let (completed, completions) = tokio::sync::mpsc::unbounded_channel::<CompletedDispatch>();
    // The records of paused webhooks: each counted in its webhook's buffered count in the
    // same write (rare, so one write each).
    let expires = state.expires_at();
    let buffer = join_all(plans.iter().enumerate().flat_map(|(i, plan)| {
        plan.buffered
            .iter()
            .map(move |d| async move { (i, state.store.buffer_delivery(d, expires).await) })
    }));
    // No tenant holds more than its share of the invocation's requests in flight, and the
    // tenants' requests take turns, so a tenant with many slow endpoints cannot keep
    // another's first attempts waiting behind its own.
    let pending = interleave_by_tenant(pending);
    let tenants: std::collections::HashSet<&str> = pending
        .iter()
        .map(|p| p.webhook.tenant_id.as_str())
        .collect();
    let share = (MAX_IN_FLIGHT / tenants.len().max(1)).max(MIN_TENANT_SHARE);
    let shares: HashMap<&str, tokio::sync::Semaphore> = tenants
        .into_iter()
        .map(|tenant| (tenant, tokio::sync::Semaphore::new(share)))
        .collect();
    let produce = async {
        let mut tried: TriedByWebhook<'a> = HashMap::new();
        // Futures collected first: a lazily mapped stream trips the compiler's Send check
        // inside spawned tasks (the local stack's pollers).
        let shares = &shares;
        let requests: Vec<_> = pending
            .into_iter()
            .map(|p| async move {
                let _slot = match shares.get(p.webhook.tenant_id.as_str()) {
                    Some(share) => share.acquire().await.ok(),
                    None => None,
                };
                dispatch(state, plans, p).await
            })
            .collect();
        let mut sending = futures::stream::iter(requests).buffer_unordered(MAX_IN_FLIGHT);
        while let Some((webhook, attempt, done)) = sending.next().await {
            if let Some(attempt) = attempt {
                tried
                    .entry((webhook.tenant_id.as_str(), webhook.id.as_str()))
                    .or_insert_with(|| (webhook, Vec::new()))
                    .1
                    .push(attempt);
            }
            let _ = completed.send(done);
        }
        drop(completed);
        tried
    };
    let record = futures::stream::unfold(completions, |mut rx| async move {
        rx.recv().await.map(|done| (done, rx))
    })
    .chunks(RECORDS_PER_WRITE)
    .map(move |chunk| record_chunk(state, queues, chunk, expires))
    .buffer_unordered(PARALLEL_RECORD_WRITES)
    .collect::<Vec<_>>();
    let (tried, recorded, buffered) = tokio::join!(produce, record, buffer);
    for (i, result) in buffered {
        if matches!(result, Ok(Saved::Written)) {
            metrics::delivery(Outcome::Buffered);
        }
        if let Err(e) = result {
            let _entered = plans[i].span.enter();
            tracing::warn!(error = %e, "could not buffer a delivery; the event will be retried");
            unfinished[i] = true;
        }
    }
    for (touched, result) in recorded {
        if let Err(e) = result {
            let events: Vec<&str> = touched
                .iter()
                .map(|&i| plans[i].event.id.as_str())
                .collect();
            tracing::warn!(error = %e, ?events, "could not record deliveries; their events will be retried");
            for i in touched {
                unfinished[i] = true;
            }
        }
    }
    (tried, unfinished)
}

/// The dispatches of a batch, the tenants taking turns (each tenant's in their order).
fn interleave_by_tenant<'a, 't>(
    pending: Vec<PendingDispatch<'a, 't>>,
) -> Vec<PendingDispatch<'a, 't>> {
    let mut queues: Vec<(&'a str, std::collections::VecDeque<PendingDispatch<'a, 't>>)> =
        Vec::new();
    for p in pending {
        let tenant = p.webhook.tenant_id.as_str();
        match queues.iter_mut().find(|(t, _)| *t == tenant) {
            Some((_, queue)) => queue.push_back(p),
            None => queues.push((tenant, std::collections::VecDeque::from([p]))),
        }
    }
    let mut turns = Vec::new();
    while !queues.is_empty() {
        for (_, queue) in &mut queues {
            if let Some(p) = queue.pop_front() {
                turns.push(p);
            }
        }
        queues.retain(|(_, queue)| !queue.is_empty());
    }
    turns
}

/// Sends one pending dispatch and decides what follows it; or, when the webhook's breaker
/// or its cap on requests in flight holds it back, records it pending with its retry task
/// and no attempt.
async fn dispatch<'a>(
    state: &Pipeline<'_>,
    plans: &'a [Planned<'a>],
    pending: PendingDispatch<'a, '_>,
) -> (&'a Webhook, Option<Tried>, CompletedDispatch) {
    let plan = &plans[pending.plan];
    let event = &plan.event;
    let mut delivery = Delivery::new(
        &event.tenant_id,
        &event.id,
        &pending.webhook.id,
        &event.event_type,
        DeliveryStatus::Pending,
        crate::domain::now(),
    );
    let held_back = |mut delivery: Delivery, hold| {
        let retry = decide::defer(&mut delivery, hold, random_share(), crate::domain::now());
        metrics::delivery(Outcome::Deferred);
        let done = CompletedDispatch {
            plan: pending.plan,
            delivery,
            retry: Some(retry),
        };
        (pending.webhook, None, done)
    };
    let attempts = state.attempts();
    let permit = match attempts.admit(pending.webhook).await {
        Ok(permit) => permit,
        Err(hold) => return held_back(delivery, hold),
    };
    let send = Send {
        credentials: pending.credentials,
        target: pending.target,
        event_id: &event.id,
        body: plan.body.clone(),
    };
    let made = attempts
        .make(&mut delivery, Some(permit), send, Attempted::Automatically)
        .await;
    // The record's time is its first attempt's.
    if let Some(first) = delivery.last_attempt() {
        delivery.created_at = first.at;
    }
    let (tried, retry) = (made.tried, made.retry);
    let done = CompletedDispatch {
        plan: pending.plan,
        delivery,
        retry,
    };
    (pending.webhook, Some(tried), done)
}

/// Queues the chunk's next attempts, then writes its records (in that order, so a record
/// never promises an attempt that was not queued). Returns the plans the chunk touched.
async fn record_chunk(
    state: &Pipeline<'_>,
    queues: &dyn TaskQueue,
    chunk: Vec<CompletedDispatch>,
    expires: i64,
) -> (Vec<usize>, Result<(), PipelineError>) {
    let touched: Vec<usize> = chunk.iter().map(|d| d.plan).collect();
    let mut retries = Vec::new();
    let mut records = Vec::with_capacity(chunk.len());
    for done in chunk {
        retries.extend(done.retry);
        records.push(done.delivery);
    }
    let result = async {
        queues.send(QueueName::Delivery, &retries).await?;
        metrics::retries_queued(retries.len());
        state.store.put_deliveries(&records, expires).await?;
        Ok(())
    }
    .await;
    (touched, result)
}
