//! Events and deliveries on DynamoDB: idempotent event storage, batched delivery writes,
//! conditional attempt records, and the key-range queries behind their lists.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, PutRequest, Update, WriteRequest,
};
use chrono::{DateTime, Utc};
use ulid::Ulid;

use super::items::{delivery_item, event_item, source_key_event_id, source_key_item};
use super::layout::{
    self, BUFFERED_COUNTER, DUE_AT, GSI1, GSI2, GSI3, GSI3_PK, INDEX_SK, Item, OpenWorkKey,
    buffered_count_key, deliveries_pk, delivery_key, delivery_sk_range, event_key, event_sk_range,
    events_pk, n, open_deliveries_gsi_pk, s, source_key_key, webhook_deliveries_gsi_pk,
    webhook_deliveries_gsi_range,
};
use super::{DynamoStore, Transaction, WriteError, store_error};
use crate::domain::delivery::{Delivery, DeliveryStatus};
use crate::domain::event::Event;
use crate::page::{Budget, Page, PageRequest, Position, Weigh};
use crate::storage::{
    DeliveryFilter, DeliveryStore, EventFilter, EventStore, OpenWork, RECORDS_PER_WRITE, Saved,
    StoreError, StoreResult, Stored,
};

/// A key range over one partition (of the table or an index), for the lists.
struct RangeQuery {
    index: Option<&'static str>,
    pk_attr: &'static str,
    pk: String,
    sk_attr: &'static str,
    /// Inclusive bounds of the sort key.
    lower: String,
    upper: String,
}

/// Most items one list request examines before it answers with what it has.
const MAX_EXAMINED: usize = 2000;

/// Attempts at a batch request whose items DynamoDB leaves unprocessed.
const BATCH_ATTEMPTS: usize = 6;

#[async_trait]
impl EventStore for DynamoStore {
    async fn store_event(
        &self,
        event: &Event,
        idempotency_key: Option<&str>,
        expires_at: i64,
    ) -> StoreResult<Stored> {
        let put_event = self.put_if_absent(event_item(event, expires_at));
        let Some(source_id) = idempotency_key else {
            return match self
                .transact(Transaction::default().put("event", put_event))
                .await
            {
                Ok(()) => Ok(Stored::New),
                Err(WriteError::Store(e)) => Err(e),
                Err(WriteError::Condition(_)) => {
                    Err(StoreError::Other(format!("event {} exists", event.id)))
                }
            };
        };
        let put_source = self.put_if_absent(source_key_item(event, source_id, expires_at));
        let result = self
            .transact(
                Transaction::default()
                    .put("source_key", put_source)
                    .put("event", put_event),
            )
            .await;
        match result {
            Ok(()) => Ok(Stored::New),
            Err(e) if e.failed("source_key") => {
                let source = self
                    .get(source_key_key(&event.tenant_id, source_id), true)
                    .await?
                    .ok_or_else(|| StoreError::Other("source key vanished".into()))?;
                let event_id = source_key_event_id(&source)?;
                match self.get_event(&event.tenant_id, &event_id).await? {
                    Some(first) => Ok(Stored::Repeat(first)),
                    None => Err(StoreError::Other(format!(
                        "source key points to missing event {event_id}"
                    ))),
                }
            }
            Err(WriteError::Store(e)) => Err(e),
            Err(WriteError::Condition(names)) => Err(StoreError::Other(format!(
                "event {} exists ({names:?})",
                event.id
            ))),
        }
    }

    async fn get_event(&self, tenant_id: &str, event_id: &str) -> StoreResult<Option<Event>> {
        self.get_as(event_key(tenant_id, event_id), true).await
    }

    async fn mark_fanned_out(&self, tenant_id: &str, event_id: &str) -> StoreResult<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(event_key(tenant_id, event_id)))
            .update_expression("SET fanned_out = :yes REMOVE #gsi3pk, #due")
            .expression_attribute_names("#gsi3pk", GSI3_PK)
            .expression_attribute_names("#due", DUE_AT)
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn list_events(
        &self,
        tenant_id: &str,
        filter: &EventFilter,
        request: &PageRequest,
    ) -> StoreResult<Page<Event>> {
        let (lower, upper) = event_sk_range(filter.from, filter.to);
        let query = RangeQuery {
            index: None,
            pk_attr: layout::PK,
            pk: events_pk(tenant_id),
            sk_attr: layout::SK,
            lower,
            upper,
        };
        self.query_range(&query, request, |item| {
            let event = Event::try_from(item)?;
            Ok(filter.keeps(&event).then_some(event))
        })
        .await
    }
}

impl DynamoStore {
    /// Writes one chunk of records (at most 25), retrying what DynamoDB leaves unprocessed.
    async fn put_delivery_chunk(&self, chunk: &[Delivery], expires_at: i64) -> StoreResult<()> {
        let mut requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|d| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(delivery_item(d, expires_at)))
                            .build()
                            .expect("the item is set"),
                    )
                    .build()
            })
            .collect();
        let mut backoff = Duration::from_millis(50);
        for _ in 0..BATCH_ATTEMPTS {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await
                .map_err(store_error)?;
            requests = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.table))
                .unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        Err(StoreError::Unavailable("unprocessed batch writes".into()))
    }

    /// Reads up to 100 keys at once, retrying what DynamoDB leaves unprocessed.
    async fn batch_get(&self, mut keys: Vec<Item>) -> StoreResult<Vec<Item>> {
        let mut found = Vec::new();
        for _ in 0..BATCH_ATTEMPTS {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .expect("keys are set");
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(store_error)?;
            found.extend(
                out.responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default(),
            );
            keys = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if keys.is_empty() {
                return Ok(found);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(StoreError::Unavailable("unprocessed batch reads".into()))
    }

    /// A webhook's buffered count moved by `step`.
    fn count_buffered(&self, tenant_id: &str, webhook_id: &str, step: i64) -> Update {
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(buffered_count_key(tenant_id, webhook_id)))
            .update_expression("ADD #count :step")
            .expression_attribute_names("#count", BUFFERED_COUNTER)
            .expression_attribute_values(":step", n(step))
            .build()
            .expect("table, key and expression are set")
    }

    /// The sparse index's partition of a webhook's open deliveries in one status.
    fn open_deliveries_query(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        status: DeliveryStatus,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.query()
            .index_name(GSI2)
            .key_condition_expression("GSI2PK = :pk")
            .expression_attribute_values(
                ":pk",
                s(open_deliveries_gsi_pk(tenant_id, webhook_id, status)),
            )
    }

    /// Pages through a key range, newest first, keeping what `read` returns; cursors name
    /// sort keys. Examines at most [`MAX_EXAMINED`] items per request.
    async fn query_range<T: Weigh>(
        &self,
        query: &RangeQuery,
        request: &PageRequest,
        read: impl Fn(&Item) -> StoreResult<Option<T>>,
    ) -> StoreResult<Page<T>> {
        let (mut lower, mut upper) = (query.lower.clone(), query.upper.clone());
        let (forward, exclude) = match &request.position {
            Position::First => (false, None),
            Position::After(k) => {
                upper = upper.min(k.clone());
                (false, Some(k.clone()))
            }
            Position::Before(k) => {
                lower = lower.max(k.clone());
                (true, Some(k.clone()))
            }
        };
        let want = request.limit + 1;
        let mut kept: Vec<(String, T)> = Vec::new();
        let mut budget = Budget::default();
        // Full: an item was found that the page has no room for, by count or by bytes.
        let mut full = false;
        let mut examined = 0usize;
        let mut last_examined: Option<String> = None;
        let mut start = None;
        let mut exhausted = lower > upper;
        while !exhausted && !full && examined < MAX_EXAMINED {
            let mut q = self
                .query()
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
                .expression_attribute_names("#pk", query.pk_attr)
                .expression_attribute_names("#sk", query.sk_attr)
                .expression_attribute_values(":pk", s(query.pk.clone()))
                .expression_attribute_values(":lo", s(lower.clone()))
                .expression_attribute_values(":hi", s(upper.clone()))
                .scan_index_forward(forward)
                .limit((want - kept.len()).clamp(25, 500) as i32)
                .set_exclusive_start_key(start.take());
            if let Some(index) = query.index {
                q = q.index_name(index);
            }
            let out = q.send().await.map_err(store_error)?;
            for item in out.items.unwrap_or_default() {
                examined += 1;
                let sort_key = item
                    .get(query.sk_attr)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                if exclude.as_deref() == Some(sort_key.as_str()) {
                    continue;
                }
                if let Some(entry) = read(&item)? {
                    if !budget.take(&entry, request.limit) {
                        full = true;
                        break;
                    }
                    kept.push((sort_key.clone(), entry));
                }
                last_examined = Some(sort_key);
            }
            match out.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => exhausted = true,
            }
        }
        let more = full || !exhausted;
        // A request that examined its fill without filling a page still moves on; a full
        // page continues after its last item.
        let resume_key = if !full && more && kept.len() < request.limit {
            last_examined
        } else {
            None
        };
        if forward {
            kept.reverse();
        }
        let cursor_of = |entry: Option<&(String, T)>| entry.map(|(k, _)| k.clone());
        let (start_key, end_key) = if forward {
            (
                resume_key.or_else(|| cursor_of(kept.first())),
                cursor_of(kept.last()),
            )
        } else {
            (
                cursor_of(kept.first()),
                resume_key.or_else(|| cursor_of(kept.last())),
            )
        };
        let (has_previous_page, has_next_page) = match request.position {
            Position::First => (false, more),
            Position::After(_) => (true, more),
            Position::Before(_) => (more, true),
        };
        Ok(Page {
            data: kept.into_iter().map(|(_, t)| t).collect(),
            limit: request.limit,
            has_next_page,
            has_previous_page,
            start_key,
            end_key,
        })
    }
}

#[async_trait]
impl DeliveryStore for DynamoStore {
    async fn put_deliveries(&self, deliveries: &[Delivery], expires_at: i64) -> StoreResult<()> {
        for chunk in deliveries.chunks(RECORDS_PER_WRITE) {
            self.put_delivery_chunk(chunk, expires_at).await?;
        }
        Ok(())
    }

    async fn existing_deliveries(
        &self,
        tenant_id: &str,
        ids: &[String],
    ) -> StoreResult<Vec<Delivery>> {
        let mut found = Vec::new();
        for chunk in ids.chunks(100) {
            let keys = chunk.iter().map(|id| delivery_key(tenant_id, id)).collect();
            for item in self.batch_get(keys).await? {
                found.push(Delivery::try_from(&item)?);
            }
        }
        Ok(found)
    }

    async fn get_delivery(
        &self,
        tenant_id: &str,
        delivery_id: &str,
    ) -> StoreResult<Option<Delivery>> {
        self.get_as(delivery_key(tenant_id, delivery_id), true)
            .await
    }

    async fn save_delivery(
        &self,
        delivery: &Delivery,
        attempts_below: u32,
        from: DeliveryStatus,
        expires_at: i64,
    ) -> StoreResult<Saved> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(delivery_item(delivery, expires_at)))
            .condition_expression("attempts < :below AND #status = :from")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":below", n(attempts_below))
            .expression_attribute_values(":from", s(from.as_str()))
            .build()
            .expect("table, item and condition are set");
        let buffered = DeliveryStatus::Buffered;
        let step = match (from == buffered, delivery.status == buffered) {
            (true, false) => -1,
            (false, true) => 1,
            _ => 0,
        };
        let result = if step == 0 {
            self.transact_or_put(Transaction::default().put("delivery", put))
                .await
        } else {
            let count = self.count_buffered(&delivery.tenant_id, &delivery.webhook_id, step);
            self.transact(
                Transaction::default()
                    .put("delivery", put)
                    .update("counter", count),
            )
            .await
        };
        match result {
            Ok(()) => Ok(Saved::Written),
            Err(e) if e.failed("delivery") => Ok(Saved::Superseded),
            Err(e) => Err(e.unexpected()),
        }
    }

    async fn buffer_delivery(&self, delivery: &Delivery, expires_at: i64) -> StoreResult<Saved> {
        let put = self.put_if_absent(delivery_item(delivery, expires_at));
        let count = self.count_buffered(&delivery.tenant_id, &delivery.webhook_id, 1);
        let result = self
            .transact(
                Transaction::default()
                    .put("delivery", put)
                    .update("counter", count),
            )
            .await;
        match result {
            Ok(()) => Ok(Saved::Written),
            Err(e) if e.failed("delivery") => Ok(Saved::Superseded),
            Err(e) => Err(e.unexpected()),
        }
    }

    async fn open_deliveries(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        status: DeliveryStatus,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        let out = self
            .open_deliveries_query(tenant_id, webhook_id, status)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(store_error)?;
        out.items
            .unwrap_or_default()
            .iter()
            .map(|item| Delivery::try_from(item).map_err(StoreError::from))
            .collect()
    }

    async fn buffered_count(&self, tenant_id: &str, webhook_id: &str) -> StoreResult<u64> {
        let item = self
            .get(buffered_count_key(tenant_id, webhook_id), true)
            .await?;
        Ok(item
            .as_ref()
            .and_then(|i| i.get(BUFFERED_COUNTER))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
            .map_or(0, |n| n.max(0) as u64))
    }

    async fn drop_buffered_count(&self, tenant_id: &str, webhook_id: &str) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(buffered_count_key(tenant_id, webhook_id)))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn list_deliveries(
        &self,
        tenant_id: &str,
        filter: &DeliveryFilter,
        request: &PageRequest,
    ) -> StoreResult<Page<Delivery>> {
        let query = match &filter.webhook_id {
            Some(webhook_id) => {
                let (lower, upper) = webhook_deliveries_gsi_range(filter.from, filter.to);
                RangeQuery {
                    index: Some(GSI1),
                    pk_attr: layout::GSI1_PK,
                    pk: webhook_deliveries_gsi_pk(tenant_id, webhook_id),
                    sk_attr: layout::INDEX_SK,
                    lower,
                    upper,
                }
            }
            None => {
                let (lower, upper) = delivery_sk_range(filter.from, filter.to);
                RangeQuery {
                    index: None,
                    pk_attr: layout::PK,
                    pk: deliveries_pk(tenant_id),
                    sk_attr: layout::SK,
                    lower,
                    upper,
                }
            }
        };
        self.query_range(&query, request, |item| {
            let d = Delivery::try_from(item)?;
            // The partition is the tenant's own; the check is a second line, not the first.
            Ok((d.tenant_id == tenant_id && filter.keeps(&d)).then_some(d))
        })
        .await
    }

    async fn overdue_work(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<OpenWork>> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .index_name(GSI3)
                .filter_expression("#due < :before")
                .expression_attribute_names("#due", DUE_AT)
                .expression_attribute_values(":before", n(before.timestamp_millis()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(store_error)?;
            for item in out.items.unwrap_or_default() {
                let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
                let (Some(tenant_id), Some(sk)) = (text("tenant_id"), text(INDEX_SK)) else {
                    continue;
                };
                let attempts = item
                    .get("attempts")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                match OpenWorkKey::parse(&sk) {
                    Some(OpenWorkKey::Event(event_id)) => found.push(OpenWork::Event {
                        tenant_id,
                        event_id,
                    }),
                    Some(OpenWorkKey::Delivery(delivery_id)) => found.push(OpenWork::Delivery {
                        tenant_id,
                        delivery_id,
                        attempts,
                    }),
                    None => {}
                }
            }
            match out.last_evaluated_key {
                Some(last) if !last.is_empty() && found.len() < limit => start = Some(last),
                _ => break,
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    async fn delivery_counts_for_event(
        &self,
        event: &Event,
    ) -> StoreResult<HashMap<DeliveryStatus, u64>> {
        // Delivery ids carry the time of their event's id, so an event's deliveries share
        // that one millisecond.
        let id_time = event
            .id
            .strip_prefix(crate::ids::IdKind::Event.prefix())
            .and_then(|u| Ulid::from_string(u).ok())
            .and_then(|u| DateTime::<Utc>::from_timestamp_millis(u.timestamp_ms() as i64))
            .unwrap_or(event.created_at);
        let (lower, upper) = delivery_sk_range(Some(id_time), Some(id_time));
        let query = self
            .query()
            .key_condition_expression("PK = :pk AND SK BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", s(deliveries_pk(&event.tenant_id)))
            .expression_attribute_values(":lo", s(lower))
            .expression_attribute_values(":hi", s(upper));
        let mut counts = HashMap::new();
        for d in self.query_all_as::<Delivery>(query).await? {
            if d.event_id == event.id {
                *counts.entry(d.status).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }
}
