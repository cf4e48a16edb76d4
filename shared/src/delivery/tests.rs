//! The pipeline's logic against the in-memory store and queues and a scripted transport:
//! fan-out, retry tasks, release and cancel pages, in milliseconds and without the
//! emulator. The end-to-end suite runs the same code on the real implementations.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use serde_json::json;

use super::deliver_batch;
use super::http::{Outgoing, Sent, Transport};
use super::pages::PAGE;
use crate::config::{Config, Mode};
use crate::domain::delivery::{Attempt, Delivery, DeliveryStatus};
use crate::domain::event::Event;
use crate::domain::event_type::EventType;
use crate::domain::webhook::{Secret, Webhook, WebhookStatus};
use crate::queue::memory::{DELIVERY_ARN, INGEST_ARN, MemoryQueue};
use crate::queue::{QueueName, RecoverTask, RetryTask, Task, WebhookTask};
use crate::secrets::Sealer;
use crate::secrets::testing::MemoryKeyring;
use crate::state::AppState;
use crate::storage::memory::MemoryStore;
use crate::storage::{CatalogStore, DeliveryStore, EventStore, WebhookStore};

/// Answers each request by the path of its URL: a scripted status (0: no answer), then 200.
#[derive(Default)]
struct Scripted {
    answers: Mutex<HashMap<String, VecDeque<u16>>>,
    /// The path and `webhook-id` (the event) of every request, in order.
    requests: Mutex<Vec<(String, String)>>,
}

impl Scripted {
    fn script(&self, path: &str, statuses: &[u16]) {
        self.answers
            .lock()
            .unwrap()
            .insert(path.to_string(), statuses.iter().copied().collect());
    }

    fn paths(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn events(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }
}

#[async_trait]
impl Transport for Scripted {
    async fn send(&self, outgoing: Outgoing<'_>) -> Sent {
        let path = outgoing
            .url
            .as_ref()
            .map(|u| u.path().trim_start_matches('/').to_string())
            .unwrap_or_default();
        let status = self
            .answers
            .lock()
            .unwrap()
            .get_mut(&path)
            .and_then(VecDeque::pop_front)
            .unwrap_or(200);
        let event = outgoing
            .headers
            .iter()
            .find(|(name, _)| *name == "webhook-id")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        self.requests.lock().unwrap().push((path, event));
        // 0: no answer at all (a timeout).
        Sent {
            attempt: Attempt {
                at: crate::domain::now(),
                status_code: (status != 0).then_some(status),
                response_time: 1,
                error: match status {
                    0 => Some("timed out".into()),
                    s if s >= 300 => Some(format!("HTTP {s}")),
                    _ => None,
                },
                response_excerpt: None,
            },
            retry_after: None,
            slow: false,
        }
    }

    async fn probe_tls(&self, _url: &str) -> Result<(), String> {
        Ok(())
    }
}

const TENANT: &str = "acme";

struct World {
    state: AppState,
    store: Arc<MemoryStore>,
    queue: Arc<MemoryQueue>,
    transport: Arc<Scripted>,
}

async fn world() -> World {
    let config = Config::from_vars(Mode::Local, |k| {
        (k == "RETRY_SCHEDULE").then(|| "10s,1m".to_string())
    })
    .unwrap();
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new());
    let transport = Arc::new(Scripted::default());
    let state = AppState {
        config,
        store: store.clone(),
        queues: Some(queue.clone()),
        transport: transport.clone(),
        sealer: Arc::new(Sealer::new(Arc::new(MemoryKeyring::new()))),
        warm: Arc::default(),
        schemas: Arc::default(),
        tokens: Arc::new(crate::tokens::Tokens::new(
            crate::tokens::TokenSigner::Unset,
            "urn:test",
            "urn:test:api",
        )),
        credentials: None,
        limit_hints: Arc::default(),
    };
    for name in ["user.created", "invoice.paid"] {
        let et = EventType {
            name: name.into(),
            description: String::new(),
            schema: None,
            created_at: crate::domain::now(),
            sort_key: crate::ids::new_ulid().to_string(),
        };
        store.create_event_type(TENANT, &et, 1000).await.unwrap();
    }
    World {
        state,
        store,
        queue,
        transport,
    }
}

impl World {
    async fn webhook(&self, path: &str, events: &[&str], status: WebhookStatus) -> Webhook {
        let mut wh = Webhook::new(
            TENANT,
            format!("http://127.0.0.1:9/{path}"),
            events.iter().map(|e| e.to_string()).collect(),
            Secret::generate(),
        );
        wh.status = status;
        self.store.create_webhook(&wh, 100).await.unwrap();
        wh
    }

    async fn deliver(&self, records: Vec<SqsMessage>) -> Vec<String> {
        let mut batch = SqsEvent::default();
        batch.records = records;
        deliver_batch(&self.state, batch)
            .await
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect()
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.store.all_deliveries()
    }
}

fn message(id: &str, arn: &str, body: String, receives: u32) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = Some(id.into());
    record.receipt_handle = Some(format!("receipt-{id}"));
    record.body = Some(body);
    record.event_source_arn = Some(arn.into());
    record
        .attributes
        .insert("ApproximateReceiveCount".into(), receives.to_string());
    record
        .attributes
        .insert("SentTimestamp".into(), SENT_AT.to_string());
    record
}

/// When SQS accepted the tests' messages.
const SENT_AT: i64 = 1_790_000_000_000;

/// Every event the store holds for the tenant.
async fn stored_events(w: &World) -> Vec<Event> {
    let request = crate::page::PageRequest {
        limit: 100,
        position: crate::page::Position::First,
    };
    w.store
        .list_events(TENANT, &crate::storage::EventFilter::default(), &request)
        .await
        .unwrap()
        .data
}

fn ingest(id: &str, event_type: &str) -> SqsMessage {
    let body = json!({"tenant_id": TENANT, "type": event_type, "data": {"n": 1}});
    message(id, INGEST_ARN, body.to_string(), 1)
}

fn task(id: &str, task: Task) -> SqsMessage {
    message(id, DELIVERY_ARN, serde_json::to_string(&task).unwrap(), 1)
}

#[tokio::test]
async fn an_event_goes_to_active_subscribers_and_buffers_for_paused_ones_only() {
    let w = world().await;
    let active = w
        .webhook("active", &["user.*"], WebhookStatus::Active)
        .await;
    let paused = w.webhook("paused", &["*"], WebhookStatus::Paused).await;
    w.webhook("disabled", &["*"], WebhookStatus::Disabled).await;
    w.webhook("other", &["invoice.paid"], WebhookStatus::Active)
        .await;
    assert!(
        w.deliver(vec![ingest("m-1", "user.created")])
            .await
            .is_empty()
    );

    assert_eq!(w.transport.paths(), vec!["active"]);
    let records = w.deliveries();
    assert_eq!(records.len(), 2, "{records:#?}");
    let status_of = |wh: &Webhook| {
        records
            .iter()
            .find(|d| d.webhook_id == wh.id)
            .unwrap()
            .status
    };
    assert_eq!(status_of(&active), DeliveryStatus::Succeeded);
    assert_eq!(status_of(&paused), DeliveryStatus::Buffered);
    // The event is stored once, its id made from the message's id and time.
    let [event] = stored_events(&w).await.try_into().unwrap();
    assert_eq!(event.id, records[0].event_id);
    let sent_at = chrono::DateTime::from_timestamp_millis(SENT_AT).unwrap();
    let expected = Event::from_message(TENANT, "user.created", Default::default(), "m-1", sent_at);
    assert_eq!(event.id, expected.id);
}

#[tokio::test]
async fn a_failed_first_attempt_queues_its_retry_before_its_record_says_pending() {
    let w = world().await;
    w.webhook("flaky", &["*"], WebhookStatus::Active).await;
    w.transport.script("flaky", &[503]);
    assert!(
        w.deliver(vec![ingest("m-1", "user.created")])
            .await
            .is_empty()
    );
    let [d] = w.deliveries().try_into().unwrap();
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, 1));
    let queued = w.queue.take(QueueName::Delivery);
    let [(Task::Retry(retry), delay)] = queued.as_slice() else {
        panic!("{queued:?}")
    };
    assert_eq!(
        (retry.attempt, retry.delivery_id.as_str()),
        (2, d.id.as_str())
    );
    assert!((Duration::from_secs(10)..=Duration::from_secs(12)).contains(delay));
    assert_eq!(
        Some(retry.not_before),
        d.next_attempt_at.map(|t| t.timestamp_millis())
    );
}

#[tokio::test]
async fn a_repeated_message_sends_and_records_nothing_twice() {
    let w = world().await;
    w.webhook("a", &["*"], WebhookStatus::Active).await;
    assert!(
        w.deliver(vec![ingest("m-1", "user.created")])
            .await
            .is_empty()
    );
    let mut again = ingest("m-1", "user.created");
    again
        .attributes
        .insert("ApproximateReceiveCount".into(), "2".into());
    assert!(w.deliver(vec![again]).await.is_empty());
    assert_eq!(w.transport.paths().len(), 1);
    assert_eq!(w.deliveries().len(), 1);
    assert_eq!(stored_events(&w).await.len(), 1);
}

#[tokio::test]
async fn ingest_data_that_breaks_its_types_schema_is_rejected_naming_the_path() {
    let w = world().await;
    w.webhook("a", &["*"], WebhookStatus::Active).await;
    let et = EventType {
        name: "order.paid".into(),
        description: String::new(),
        schema: Some(json!({"type": "object", "required": ["n"],
                            "properties": {"n": {"type": "integer", "maximum": 1}}})),
        created_at: crate::domain::now(),
        sort_key: crate::ids::new_ulid().to_string(),
    };
    w.store.create_event_type(TENANT, &et, 1000).await.unwrap();
    let body = |n: i64| json!({"tenant_id": TENANT, "type": "order.paid", "data": {"n": n}});
    let failed = w
        .deliver(vec![
            message("bad", INGEST_ARN, body(2).to_string(), 1),
            message("good", INGEST_ARN, body(1).to_string(), 1),
        ])
        .await;
    assert!(failed.is_empty(), "{failed:?}");
    let reasons: Vec<String> = w
        .queue
        .sent()
        .rejected
        .iter()
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(
        reasons,
        vec!["data does not match the schema of order.paid: data.n: must be <= 1"]
    );
    assert_eq!(
        w.transport.paths(),
        vec!["a"],
        "the matching one is delivered"
    );
    assert_eq!(stored_events(&w).await.len(), 1, "the other is not stored");
}

#[tokio::test]
async fn unknown_types_are_rejected_with_their_reason_and_malformed_messages_too() {
    let w = world().await;
    w.webhook("a", &["*"], WebhookStatus::Active).await;
    let failed = w
        .deliver(vec![
            ingest("unknown", "nope.nope"),
            message("junk", INGEST_ARN, "{not json".into(), 1),
            ingest("good", "user.created"),
        ])
        .await;
    assert!(failed.is_empty(), "{failed:?}");
    let sent = w.queue.sent();
    let reasons: Vec<&str> = sent.rejected.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("not in the catalogue")));
    assert!(reasons.iter().any(|r| r.contains("not JSON")));
    assert_eq!(w.transport.paths(), vec!["a"]);
}

#[tokio::test]
async fn storage_trouble_brings_the_message_back_and_writes_nothing() {
    let w = world().await;
    w.webhook("a", &["*"], WebhookStatus::Active).await;
    w.store.fail_next(1);
    assert_eq!(
        w.deliver(vec![ingest("m-1", "user.created")]).await,
        vec!["m-1"]
    );
    assert!(w.deliveries().is_empty());
    assert!(w.transport.paths().is_empty());
}

#[tokio::test]
async fn a_record_write_that_fails_brings_the_message_back_and_its_repeat_finishes() {
    let w = world().await;
    w.webhook("a", &["*"], WebhookStatus::Active).await;
    w.transport.script("a", &[500]);
    w.queue.fail_next(1);
    assert_eq!(
        w.deliver(vec![ingest("m-1", "user.created")]).await,
        vec!["m-1"]
    );
    assert!(
        w.deliveries().is_empty(),
        "no record without its retry task"
    );
    let mut again = ingest("m-1", "user.created");
    again
        .attributes
        .insert("ApproximateReceiveCount".into(), "2".into());
    assert!(w.deliver(vec![again]).await.is_empty());
    let [d] = w.deliveries().try_into().unwrap();
    assert_eq!(d.status, DeliveryStatus::Succeeded);
    assert_eq!(stored_events(&w).await.len(), 1);
}

/// A stored event with one pending delivery after a failed first attempt.
async fn pending_delivery(w: &World, webhook: &Webhook) -> Delivery {
    let event = Event::new(TENANT, "user.created", serde_json::Map::new());
    w.store.store_event(&event, None, 0).await.unwrap();
    let mut d = Delivery::new(
        TENANT,
        &event.id,
        &webhook.id,
        &event.event_type,
        DeliveryStatus::Pending,
        event.created_at,
    );
    d.attempts = 1;
    w.store
        .put_deliveries(std::slice::from_ref(&d), 0)
        .await
        .unwrap();
    d
}

fn retry_task(d: &Delivery, attempt: u32, not_before: i64) -> Task {
    Task::Retry(RetryTask {
        tenant_id: TENANT.into(),
        delivery_id: d.id.clone(),
        webhook_id: Some(d.webhook_id.clone()),
        attempt,
        not_before,
    })
}

#[tokio::test]
async fn a_due_retry_task_makes_its_attempt_and_a_duplicate_does_nothing() {
    let w = world().await;
    let wh = w.webhook("a", &["*"], WebhookStatus::Active).await;
    let d = pending_delivery(&w, &wh).await;
    let due = retry_task(&d, 2, 0);
    assert!(w.deliver(vec![task("t-1", due.clone())]).await.is_empty());
    let [after] = w.deliveries().try_into().unwrap();
    assert_eq!(
        (after.status, after.attempts),
        (DeliveryStatus::Succeeded, 2)
    );
    assert!(w.deliver(vec![task("t-2", due)]).await.is_empty());
    assert_eq!(w.transport.paths().len(), 1, "the duplicate sent nothing");
}

#[tokio::test]
async fn an_early_retry_task_is_parked_for_the_rest_of_its_wait() {
    let w = world().await;
    let wh = w.webhook("a", &["*"], WebhookStatus::Active).await;
    let d = pending_delivery(&w, &wh).await;
    let later = chrono::Utc::now().timestamp_millis() + 60_000;
    let failed = w.deliver(vec![task("t-1", retry_task(&d, 2, later))]).await;
    assert_eq!(failed, vec!["t-1"], "it comes back when due");
    let sent = w.queue.sent();
    let [(queue, receipt, wait)] = sent.deferred.as_slice() else {
        panic!("{:?}", sent.deferred)
    };
    assert_eq!(
        (*queue, receipt.as_str()),
        (QueueName::Delivery, "receipt-t-1")
    );
    assert!(*wait > Duration::from_secs(55) && *wait <= Duration::from_secs(60));
    assert!(w.transport.paths().is_empty());
}

#[tokio::test]
async fn a_retry_for_a_paused_webhook_buffers_and_one_for_a_deleted_webhook_cancels() {
    let w = world().await;
    let paused = w.webhook("p", &["*"], WebhookStatus::Paused).await;
    let gone = w.webhook("g", &["*"], WebhookStatus::Active).await;
    let a = pending_delivery(&w, &paused).await;
    let b = pending_delivery(&w, &gone).await;
    w.store.delete_webhook(&gone).await.unwrap();
    let failed = w
        .deliver(vec![
            task("t-1", retry_task(&a, 2, 0)),
            task("t-2", retry_task(&b, 2, 0)),
        ])
        .await;
    assert!(failed.is_empty());
    let status = |id: &str| {
        w.deliveries()
            .into_iter()
            .find(|d| d.id == id)
            .unwrap()
            .status
    };
    assert_eq!(status(&a.id), DeliveryStatus::Buffered);
    assert_eq!(status(&b.id), DeliveryStatus::Cancelled);
    assert!(w.transport.paths().is_empty());
}

/// `n` buffered deliveries of a webhook, one per event, oldest first.
async fn buffered(w: &World, webhook: &Webhook, n: usize) -> Vec<Delivery> {
    stored(w, webhook, n, DeliveryStatus::Buffered).await
}

/// `n` deliveries of a webhook in `status`, one per event, oldest first.
async fn stored(w: &World, webhook: &Webhook, n: usize, status: DeliveryStatus) -> Vec<Delivery> {
    let mut out = Vec::new();
    for _ in 0..n {
        let event = Event::new(TENANT, "user.created", serde_json::Map::new());
        w.store.store_event(&event, None, 0).await.unwrap();
        let d = Delivery::new(
            TENANT,
            &event.id,
            &webhook.id,
            &event.event_type,
            status,
            event.created_at,
        );
        w.store
            .put_deliveries(std::slice::from_ref(&d), 0)
            .await
            .unwrap();
        out.push(d);
        // Distinct milliseconds, so the delivery ids (which carry the event's time) sort.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    out
}

fn page_task(kind: fn(WebhookTask) -> Task, webhook: &Webhook) -> Task {
    kind(WebhookTask {
        tenant_id: TENANT.into(),
        webhook_id: webhook.id.clone(),
        settle: 0,
    })
}

#[tokio::test]
async fn a_release_sends_the_oldest_first_one_after_another_and_a_full_page_queues_the_next() {
    let w = world().await;
    let wh = w.webhook("a", &["*"], WebhookStatus::Active).await;
    let held = buffered(&w, &wh, PAGE + 1).await;
    w.transport.script("a", &[200, 503]);
    let release = page_task(Task::Release, &wh);
    assert!(
        w.deliver(vec![task("r-1", release.clone())])
            .await
            .is_empty()
    );
    let oldest: Vec<String> = held[..PAGE].iter().map(|d| d.event_id.clone()).collect();
    assert_eq!(w.transport.events(), oldest, "in order, one after another");
    let queued = w.queue.take(QueueName::Delivery);
    let [(Task::Retry(retry), _), (next, _)] = queued.as_slice() else {
        panic!("{queued:?}")
    };
    assert_eq!(
        retry.delivery_id, held[1].id,
        "the failed one retries on its own"
    );
    assert_eq!(next, &release, "the next page");
    let statuses: Vec<DeliveryStatus> = w.deliveries().iter().map(|d| d.status).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == DeliveryStatus::Succeeded)
            .count(),
        PAGE - 1
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == DeliveryStatus::Pending)
            .count(),
        1
    );
    // The next page sends the last one and stops.
    assert!(w.deliver(vec![task("r-2", release)]).await.is_empty());
    assert_eq!(w.transport.events().last(), Some(&held[PAGE].event_id));
    assert!(w.queue.take(QueueName::Delivery).is_empty());
}

#[tokio::test]
async fn a_recover_sends_the_failed_ones_of_its_window_again_in_order_a_page_at_a_time() {
    let w = world().await;
    let wh = w.webhook("a", &["*"], WebhookStatus::Active).await;
    let before = stored(&w, &wh, 1, DeliveryStatus::Failed).await;
    let since = crate::domain::now();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let failed = stored(&w, &wh, PAGE + 1, DeliveryStatus::Failed).await;
    let succeeded = stored(&w, &wh, 1, DeliveryStatus::Succeeded).await;
    let until = crate::domain::now();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let after = stored(&w, &wh, 1, DeliveryStatus::Failed).await;
    w.transport.script("a", &[200, 503]);
    let requested_at = crate::domain::now().timestamp_millis();
    let recover = |after: Option<String>, settle: u8| {
        Task::Recover(RecoverTask {
            tenant_id: TENANT.into(),
            webhook_id: wh.id.clone(),
            since: since.timestamp_millis(),
            until: until.timestamp_millis(),
            after,
            requested_at: Some(requested_at),
            settle,
        })
    };
    let recover = |after| recover(after, 0);
    assert!(w.deliver(vec![task("v-1", recover(None))]).await.is_empty());
    let oldest: Vec<String> = failed[..PAGE].iter().map(|d| d.event_id.clone()).collect();
    assert_eq!(w.transport.events(), oldest, "in order, one after another");
    let queued = w.queue.take(QueueName::Delivery);
    assert_eq!(
        queued,
        vec![(recover(Some(failed[PAGE - 1].id.clone())), Duration::ZERO)],
        "no retry for a re-send that failed, and the next page after the last one sent"
    );
    let record = |id: &str| w.deliveries().into_iter().find(|d| d.id == id).unwrap();
    assert_eq!(record(&failed[0].id).status, DeliveryStatus::Succeeded);
    assert_eq!(record(&failed[0].id).attempts, 1);
    assert_eq!(record(&failed[1].id).status, DeliveryStatus::Failed);
    assert_eq!(record(&failed[1].id).attempts, 1, "one more attempt");

    let Some((next, _)) = queued.into_iter().next() else {
        unreachable!()
    };
    assert!(w.deliver(vec![task("v-2", next)]).await.is_empty());
    assert_eq!(w.transport.events().len(), PAGE + 1);
    assert_eq!(w.transport.events().last(), Some(&failed[PAGE].event_id));
    // Seemingly done: one settling pass a moment later reads the range again (for what
    // the index did not show yet) and sends none of what this recover already tried.
    let queued = w.queue.take(QueueName::Delivery);
    let [(settling, wait)] = queued.as_slice() else {
        panic!("one settling pass: {queued:?}")
    };
    assert_eq!(*wait, super::pages::SETTLE_WAIT);
    assert!(matches!(settling, Task::Recover(t) if t.settle == 1 && t.after.is_none()));
    assert!(
        w.deliver(vec![task("v-3", settling.clone())])
            .await
            .is_empty()
    );
    assert_eq!(w.transport.events().len(), PAGE + 1, "nothing sent twice");
    assert!(w.queue.take(QueueName::Delivery).is_empty(), "done");
    for outside in [&before[0], &after[0]] {
        assert_eq!(record(&outside.id).attempts, 0, "outside the window");
    }
    assert_eq!(record(&succeeded[0].id).attempts, 0, "not failed");
}

#[tokio::test]
async fn a_release_for_a_paused_again_webhook_keeps_everything_buffered() {
    let w = world().await;
    let wh = w.webhook("a", &["*"], WebhookStatus::Paused).await;
    buffered(&w, &wh, 3).await;
    assert!(
        w.deliver(vec![task("r", page_task(Task::Release, &wh))])
            .await
            .is_empty()
    );
    assert!(w.queue.take(QueueName::Delivery).is_empty());
    assert!(
        w.deliveries()
            .iter()
            .all(|d| d.status == DeliveryStatus::Buffered)
    );
}

#[tokio::test]
async fn a_cancel_page_closes_a_deleted_webhooks_open_deliveries_only_once_it_is_gone() {
    let w = world().await;
    let wh = w.webhook("a", &["*"], WebhookStatus::Active).await;
    buffered(&w, &wh, 2).await;
    pending_delivery(&w, &wh).await;
    let cancel = page_task(Task::Cancel, &wh);
    assert!(
        w.deliver(vec![task("c-1", cancel.clone())])
            .await
            .is_empty()
    );
    assert!(
        w.deliveries().iter().all(|d| d.status.is_open()),
        "the webhook still exists: the delete did not happen"
    );
    w.store.delete_webhook(&wh).await.unwrap();
    assert!(w.deliver(vec![task("c-2", cancel)]).await.is_empty());
    assert!(
        w.deliveries()
            .iter()
            .all(|d| d.status == DeliveryStatus::Cancelled)
    );
}

#[tokio::test]
async fn the_sweeper_brings_back_dead_letters_as_the_work_they_were() {
    use crate::queue::redrive::{DeadLetter, MAX_AUTOMATIC_REDRIVES};
    let w = world().await;
    let wh = w.webhook("a", &["*"], WebhookStatus::Active).await;
    // An ingest message whose fan-out stored its event and then kept failing.
    w.queue.fail_next(1);
    w.transport.script("a", &[500]);
    assert_eq!(
        w.deliver(vec![ingest("m-1", "user.created")]).await,
        vec!["m-1"]
    );
    let [first] = stored_events(&w).await.try_into().unwrap();
    let body = json!({"tenant_id": TENANT, "type": "user.created", "data": {"n": 1}});
    let letter = |body: String, reason: Option<&str>, redrives| DeadLetter {
        message_id: "m-1".into(),
        body,
        sent_at: Some(SENT_AT),
        reason: reason.map(str::to_string),
        redrives,
    };
    // A retry task that kept failing too; one message rejected; one brought back too often.
    let d = pending_delivery(&w, &wh).await;
    let retry = serde_json::to_string(&retry_task(&d, 2, 0)).unwrap();
    w.queue.sent().dead = vec![
        (QueueName::Ingest, letter(body.to_string(), None, 0)),
        (
            QueueName::Ingest,
            letter("{}".into(), Some("not an event"), 0),
        ),
        (QueueName::Delivery, letter(retry, None, 0)),
        (
            QueueName::Delivery,
            letter(body.to_string(), None, MAX_AUTOMATIC_REDRIVES),
        ),
    ];

    let swept = super::sweep::sweep(&w.state).await.unwrap();
    assert_eq!((swept.events, swept.tasks, swept.left), (1, 1, 2));
    assert_eq!(
        w.queue.sent().dead.len(),
        2,
        "the rejected and the exhausted stay"
    );
    let queued = w.queue.take(QueueName::Delivery);
    assert_eq!(queued.len(), 2, "{queued:?}");
    for (_, delay) in &queued {
        assert_eq!(*delay, w.state.config.sweep_margin);
    }
    // Handed back to the pipeline: the event it first made is delivered (not a second
    // event), and the retry makes its attempt.
    let records: Vec<SqsMessage> = queued
        .into_iter()
        .enumerate()
        .map(|(i, (t, _))| task(&format!("s-{i}"), t))
        .collect();
    assert!(w.deliver(records).await.is_empty());
    let others: Vec<Event> = stored_events(&w)
        .await
        .into_iter()
        .filter(|e| e.id != d.event_id)
        .collect();
    assert_eq!(others, vec![first.clone()], "one event, not a second");
    let events = w.transport.events();
    assert!(events.contains(&first.id) && events.contains(&d.event_id));
    let from_the_event = w
        .deliveries()
        .into_iter()
        .find(|r| r.event_id == first.id)
        .unwrap();
    assert_eq!(from_the_event.status, DeliveryStatus::Succeeded);
}

#[tokio::test]
async fn a_webhook_that_does_not_answer_is_held_back_and_its_deliveries_wait_as_retry_tasks() {
    use super::breaker::{FIRST_COOLDOWN, TRIP_AFTER};
    let w = world().await;
    let dead = w.webhook("dead", &["*"], WebhookStatus::Active).await;
    w.webhook("fine", &["*"], WebhookStatus::Active).await;
    w.transport.script("dead", &[0; TRIP_AFTER as usize]);
    let first: Vec<SqsMessage> = (0..TRIP_AFTER)
        .map(|i| ingest(&format!("m-{i}"), "user.created"))
        .collect();
    assert!(w.deliver(first).await.is_empty());
    let retries = w.queue.take(QueueName::Delivery);
    assert_eq!(
        retries.len(),
        TRIP_AFTER as usize,
        "each failure has its retry"
    );
    // The breaker is open: the next event goes to "fine" at once, and to "dead" only as a
    // retry task due when the breaker closes, with no attempt made.
    assert!(
        w.deliver(vec![ingest("m-next", "user.created")])
            .await
            .is_empty()
    );
    let paths = w.transport.paths();
    assert_eq!(
        paths.iter().filter(|p| *p == "dead").count(),
        TRIP_AFTER as usize
    );
    assert_eq!(
        paths.iter().filter(|p| *p == "fine").count(),
        TRIP_AFTER as usize + 1
    );
    let held = w
        .deliveries()
        .into_iter()
        .find(|d| d.webhook_id == dead.id && d.attempts == 0)
        .expect("a held-back delivery");
    assert_eq!(held.status, DeliveryStatus::Pending);
    let queued = w.queue.take(QueueName::Delivery);
    let [(Task::Retry(retry), delay)] = queued.as_slice() else {
        panic!("{queued:?}")
    };
    assert_eq!(
        (retry.delivery_id.as_str(), retry.attempt),
        (held.id.as_str(), 1)
    );
    assert!(
        *delay >= FIRST_COOLDOWN - Duration::from_secs(1) && *delay <= FIRST_COOLDOWN.mul_f64(1.5),
        "until the breaker closes, spread over half the cooldown: {delay:?}"
    );
    assert_eq!(retry.webhook_id.as_deref(), Some(dead.id.as_str()));
    // A retry task that comes while it is open is not attempted: the same attempt is
    // queued again for when the breaker closes (a new message, so being held back again
    // and again never counts toward the queue's receive limit), without a storage read.
    let (Task::Retry(due), _) = &retries[0] else {
        panic!("a retry")
    };
    let mut early = due.clone();
    early.not_before = 0;
    w.store.fail_next(10);
    assert!(
        w.deliver(vec![task("r-1", Task::Retry(early.clone()))])
            .await
            .is_empty()
    );
    assert_eq!(
        w.transport.paths().iter().filter(|p| *p == "dead").count(),
        TRIP_AFTER as usize
    );
    assert!(w.queue.sent().deferred.is_empty(), "not parked");
    let again = w.queue.take(QueueName::Delivery);
    let [(Task::Retry(again), delay)] = again.as_slice() else {
        panic!("{again:?}")
    };
    assert_eq!(
        (&again.delivery_id, again.attempt, &again.webhook_id),
        (&early.delivery_id, early.attempt, &early.webhook_id)
    );
    assert!(*delay > Duration::from_secs(20), "{delay:?}");
    assert!(again.not_before > 0);
}
