//! Storage of events and deliveries: idempotent event storage, batched delivery writes,
//! conditional attempt records, and the key-range queries behind their lists.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, PutRequest, Select, TransactWriteItem, WriteRequest,
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use ulid::Ulid;

use super::items::{
    self, DELIVERY_SK_PREFIX, EVENT_SK_PREFIX, GSI1, GSI2, Item, deliveries_pk, delivery_item,
    delivery_sk, event_item, event_sk, events_pk, key, n, open_deliveries_gsi_pk, s,
    source_key_event_id, source_key_item, source_key_pk, webhook_deliveries_gsi_pk,
};
use super::{Store, StoreError, StoreResult};
use crate::api::pagination::{Page, PageRequest, Position};
use crate::domain::delivery::{Delivery, DeliveryStatus};
use crate::domain::event::Event;
use crate::domain::webhook::Webhook;

/// What storing an event found.
#[derive(Debug)]
pub enum Stored {
    /// The event is new and now stored.
    New,
    /// Its source key was seen before: the event stored then.
    Repeat(Event),
}

/// A key range over one partition (of the table or an index), for the lists.
pub struct RangeQuery {
    pub index: Option<&'static str>,
    pub pk_attr: &'static str,
    pub pk: String,
    pub sk_attr: &'static str,
    /// Inclusive bounds of the sort key.
    pub lower: String,
    pub upper: String,
}

/// BatchWriteItem requests in flight at once when recording a fan-out.
const PARALLEL_BATCH_WRITES: usize = 8;

/// Most items one list request examines before it answers with what it has.
const MAX_EXAMINED: usize = 2000;

/// A sort key bound for time `at`: the smallest (or greatest) ULID of that millisecond.
pub fn ulid_bound(prefix: &str, at: DateTime<Utc>, greatest: bool) -> String {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let random = if greatest { (1u128 << 80) - 1 } else { 0 };
    format!("{prefix}{}", Ulid::from_parts(millis, random))
}

impl Store {
    // ---- events ----

    /// Stores an event once. With an idempotency key (the source's `id`, or the SQS
    /// message's id), the key and the event are written in one transaction; a key seen
    /// before answers with the event it produced.
    pub async fn store_event(
        &self,
        event: &Event,
        idempotency_key: Option<&str>,
        expires_at: i64,
    ) -> StoreResult<Stored> {
        let put_event = self.put_if_absent(event_item(event, expires_at));
        let Some(source_id) = idempotency_key else {
            self.transact(vec![TransactWriteItem::builder().put(put_event).build()])
                .await?;
            return Ok(Stored::New);
        };
        let put_source = self.put_if_absent(source_key_item(event, source_id, expires_at));
        let result = self
            .transact(vec![
                TransactWriteItem::builder().put(put_source).build(),
                TransactWriteItem::builder().put(put_event).build(),
            ])
            .await;
        match result {
            Ok(()) => Ok(Stored::New),
            Err(StoreError::ConditionFailed(_)) => {
                let source = self
                    .get(
                        key(
                            source_key_pk(&event.tenant_id, source_id),
                            items::SOURCE_KEY_SK,
                        ),
                        true,
                    )
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
            Err(e) => Err(e),
        }
    }

    pub async fn get_event(&self, tenant_id: &str, event_id: &str) -> StoreResult<Option<Event>> {
        let item = self
            .get(key(events_pk(tenant_id), event_sk(event_id)), true)
            .await?;
        Ok(item.as_ref().map(Event::try_from).transpose()?)
    }

    /// Marks an event as fanned out: every matching webhook has its delivery record.
    pub async fn mark_fanned_out(&self, tenant_id: &str, event_id: &str) -> StoreResult<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(events_pk(tenant_id), event_sk(event_id))))
            .update_expression("SET fanned_out = :yes")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await?;
        Ok(())
    }

    pub async fn list_events(
        &self,
        tenant_id: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        request: &PageRequest,
        keep: impl Fn(&Event) -> bool,
    ) -> StoreResult<Page<Event>> {
        let query = RangeQuery {
            index: None,
            pk_attr: items::PK,
            pk: events_pk(tenant_id),
            sk_attr: items::SK,
            lower: from.map_or_else(
                || EVENT_SK_PREFIX.to_string(),
                |t| ulid_bound("EV#evt_", t, false),
            ),
            upper: to.map_or_else(
                || format!("{EVENT_SK_PREFIX}~"),
                |t| ulid_bound("EV#evt_", t, true),
            ),
        };
        self.query_range(&query, request, |item| {
            let event = Event::try_from(item)?;
            Ok(keep(&event).then_some(event))
        })
        .await
    }

    // ---- deliveries ----

    /// Writes delivery records, 25 to a request and several requests at once, retrying
    /// what DynamoDB leaves unprocessed.
    pub async fn put_deliveries(
        &self,
        deliveries: &[Delivery],
        expires_at: i64,
    ) -> StoreResult<()> {
        // Futures collected first: a lazily mapped stream trips the compiler's Send check
        // inside spawned tasks.
        let mut writes = Vec::new();
        for chunk in deliveries.chunks(25) {
            writes.push(self.put_delivery_chunk(chunk, expires_at));
        }
        let results: Vec<StoreResult<()>> = futures::stream::iter(writes)
            .buffer_unordered(PARALLEL_BATCH_WRITES)
            .collect()
            .await;
        results.into_iter().collect()
    }

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
        for _ in 0..6 {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests)
                .send()
                .await?;
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

    /// The deliveries among `ids` that exist (a repeated fan-out skips them).
    pub async fn existing_deliveries(
        &self,
        tenant_id: &str,
        ids: &[String],
    ) -> StoreResult<Vec<Delivery>> {
        let mut found = Vec::new();
        for chunk in ids.chunks(100) {
            let mut keys: Vec<Item> = chunk
                .iter()
                .map(|id| key(deliveries_pk(tenant_id), delivery_sk(id)))
                .collect();
            for _ in 0..6 {
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
                    .await?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    found.push(Delivery::try_from(&item)?);
                }
                keys = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if keys.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if !keys.is_empty() {
                return Err(StoreError::Unavailable("unprocessed batch reads".into()));
            }
        }
        Ok(found)
    }

    pub async fn get_delivery(
        &self,
        tenant_id: &str,
        delivery_id: &str,
    ) -> StoreResult<Option<Delivery>> {
        let item = self
            .get(
                key(deliveries_pk(tenant_id), delivery_sk(delivery_id)),
                true,
            )
            .await?;
        Ok(item.as_ref().map(Delivery::try_from).transpose()?)
    }

    /// Writes a delivery's new state unless a later attempt was recorded meanwhile or its
    /// status moved on: `ConditionFailed` when its attempts reached `attempts_below` or its
    /// status is not one of `expect_status`.
    pub async fn save_delivery(
        &self,
        delivery: &Delivery,
        attempts_below: u32,
        expect_status: &[DeliveryStatus],
        expires_at: i64,
    ) -> StoreResult<()> {
        let placeholders: Vec<String> =
            (0..expect_status.len()).map(|i| format!(":s{i}")).collect();
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(delivery_item(delivery, expires_at)))
            .condition_expression(format!(
                "attempts < :below AND #status IN ({})",
                placeholders.join(", ")
            ))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":below", n(attempts_below));
        for (placeholder, status) in placeholders.iter().zip(expect_status) {
            request = request.expression_attribute_values(placeholder, s(status.as_str()));
        }
        request.send().await?;
        Ok(())
    }

    /// The sparse index's partition of a webhook's open deliveries in one status.
    fn open_deliveries_query(
        &self,
        webhook_id: &str,
        status: DeliveryStatus,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(GSI2)
            .key_condition_expression("GSI2PK = :pk")
            .expression_attribute_values(":pk", s(open_deliveries_gsi_pk(webhook_id, status)))
    }

    /// Open deliveries of a webhook in one status, oldest first, at most `limit`.
    pub async fn open_deliveries(
        &self,
        webhook_id: &str,
        status: DeliveryStatus,
        limit: i32,
    ) -> StoreResult<Vec<Delivery>> {
        let out = self
            .open_deliveries_query(webhook_id, status)
            .limit(limit)
            .send()
            .await?;
        out.items
            .unwrap_or_default()
            .iter()
            .map(|item| Delivery::try_from(item).map_err(StoreError::from))
            .collect()
    }

    /// How many deliveries of a webhook are in an open status.
    pub async fn count_open_deliveries(
        &self,
        webhook_id: &str,
        status: DeliveryStatus,
    ) -> StoreResult<u64> {
        let mut total = 0u64;
        let mut start = None;
        loop {
            let out = self
                .open_deliveries_query(webhook_id, status)
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await?;
            total += out.count.max(0) as u64;
            match out.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(total),
            }
        }
    }

    /// The tenant's deliveries, newest first, optionally of one webhook, in a time range.
    pub async fn list_deliveries(
        &self,
        tenant_id: &str,
        webhook_id: Option<&str>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        request: &PageRequest,
        keep: impl Fn(&Delivery) -> bool,
    ) -> StoreResult<Page<Delivery>> {
        let (index, pk_attr, pk, sk_attr, prefix) = match webhook_id {
            Some(wh) => (
                Some(GSI1),
                items::GSI1_PK,
                webhook_deliveries_gsi_pk(wh),
                items::GSI1_SK,
                "",
            ),
            None => (
                None,
                items::PK,
                deliveries_pk(tenant_id),
                items::SK,
                DELIVERY_SK_PREFIX,
            ),
        };
        let query = RangeQuery {
            index,
            pk_attr,
            pk,
            sk_attr,
            lower: from.map_or_else(
                || format!("{prefix}dlv_"),
                |t| ulid_bound(&format!("{prefix}dlv_"), t, false),
            ),
            upper: to.map_or_else(
                || format!("{prefix}dlv_~"),
                |t| ulid_bound(&format!("{prefix}dlv_"), t, true),
            ),
        };
        self.query_range(&query, request, |item| {
            let d = Delivery::try_from(item)?;
            // GSI1 also holds API key records of other partitions; the tenant check keeps
            // a webhook id from another tenant from reading anything.
            Ok((d.tenant_id == tenant_id && keep(&d)).then_some(d))
        })
        .await
    }

    /// A summary of one event's deliveries: how many in each status.
    pub async fn delivery_counts_for_event(
        &self,
        event: &Event,
    ) -> StoreResult<HashMap<DeliveryStatus, u64>> {
        // Delivery ids carry the time of their event's id, so an event's deliveries share
        // that one millisecond.
        let id_time = event
            .id
            .strip_prefix("evt_")
            .and_then(|u| Ulid::from_string(u).ok())
            .and_then(|u| DateTime::<Utc>::from_timestamp_millis(u.timestamp_ms() as i64))
            .unwrap_or(event.created_at);
        let lower = ulid_bound("DL#dlv_", id_time, false);
        let upper = ulid_bound("DL#dlv_", id_time, true);
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND SK BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", s(deliveries_pk(&event.tenant_id)))
            .expression_attribute_values(":lo", s(lower))
            .expression_attribute_values(":hi", s(upper));
        let mut counts = HashMap::new();
        for item in self.query_all(query).await? {
            let d = Delivery::try_from(&item)?;
            if d.event_id == event.id {
                *counts.entry(d.status).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// Pages through a key range, newest first, keeping what `read` returns; cursors name
    /// sort keys. Examines at most [`MAX_EXAMINED`] items per request.
    async fn query_range<T>(
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
        let mut examined = 0usize;
        let mut last_examined: Option<String> = None;
        let mut start = None;
        let mut exhausted = lower > upper;
        while !exhausted && kept.len() < want && examined < MAX_EXAMINED {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
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
            let out = q.send().await?;
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
                last_examined = Some(sort_key.clone());
                if kept.len() < want
                    && let Some(entry) = read(&item)?
                {
                    kept.push((sort_key, entry));
                }
            }
            match out.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => exhausted = true,
            }
        }
        let more = kept.len() > request.limit || !exhausted;
        kept.truncate(request.limit);
        // A request that examined its fill without filling a page still moves on.
        let resume_key = if kept.len() < request.limit && more {
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

    // ---- webhook health ----

    /// Records when a webhook last received a delivery and whether its deliveries are
    /// failing, disabling it after `disable_after` of failures with no success. Writes
    /// only when something changes; conditional on the version read.
    pub async fn record_webhook_health(
        &self,
        wh: &Webhook,
        updated: &Webhook,
    ) -> StoreResult<bool> {
        if wh == updated {
            return Ok(false);
        }
        let mut next = updated.clone();
        next.version = wh.version + 1;
        match self.replace_webhook(wh, &next).await {
            Ok(()) => Ok(true),
            // Changed by the tenant meanwhile: their change wins; health is caught up next time.
            Err(super::ChangeWebhookError::Conflict | super::ChangeWebhookError::DuplicateUrl) => {
                Ok(false)
            }
            Err(super::ChangeWebhookError::Store(e)) => Err(e),
        }
    }
}
