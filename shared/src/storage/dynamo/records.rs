//! Events and deliveries on DynamoDB: events stored once in their shard, batched delivery
//! writes, conditional attempt records, a webhook's open deliveries through GSI2, and the
//! merged reads of the sharded lists.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{KeysAndAttributes, Put, PutRequest, Update, WriteRequest};
use futures::future::try_join_all;

use super::items::{delivery_item, event_item, source_key_event_id, source_key_item};
use super::layout::{
    BUFFERED_COUNTER, DELIVERY_SHARDS, EVENT_SHARDS, EXPIRES_AT, GSI2, INDEX_SK, Item,
    SEND_SLOTS_COUNTER, buffered_count_key, deliveries_pk, delivery_id_range, delivery_key,
    delivery_shard, delivery_sk_range, event_key, event_sk_range, events_pk,
    failed_deliveries_gsi_pk, n, open_deliveries_gsi_pk, s, send_slots_key, source_key_key,
};
use super::lists::{ReadBudget, Shards, list_sharded};
use super::{DynamoStore, Transaction, WriteError, classify, store_error};
use crate::domain::delivery::{Delivery, DeliveryStatus, delivery_id};
use crate::domain::event::Event;
use crate::page::{Page, PageRequest};
use crate::storage::{
    DeliveryFilter, DeliveryStore, EventFilter, EventStore, FailedRange, RECORDS_PER_WRITE, Saved,
    StoreError, StoreResult, Stored,
};

/// Attempts at a batch request whose items DynamoDB leaves unprocessed.
const BATCH_ATTEMPTS: usize = 6;

/// Rounds of a source key pointing to an event that is not stored (its first writer
/// stopped between the two puts) before the message is left to come back.
const SOURCE_KEY_ROUNDS: usize = 3;

#[async_trait]
impl EventStore for DynamoStore {
    async fn store_event(
        &self,
        event: &Event,
        idempotency_key: Option<&str>,
        expires_at: i64,
    ) -> StoreResult<Stored> {
        let Some(source_id) = idempotency_key else {
            return self.put_event_once(event, expires_at).await;
        };
        // The source key first, then the event: one conditional put each (a transaction
        // of the two would cost twice both). A key whose event is missing (its writer
        // stopped between the two) is taken over by this event.
        let source_key = source_key_key(&event.tenant_id, source_id);
        for _ in 0..SOURCE_KEY_ROUNDS {
            let put_source = self.put_if_absent(source_key_item(event, source_id, expires_at));
            match self
                .transact_or_put(Transaction::default().put("source_key", put_source))
                .await
            {
                Ok(()) => return self.put_event_once(event, expires_at).await,
                Err(WriteError::Store(e)) => return Err(e),
                Err(WriteError::Condition(_)) => {}
            }
            let Some(source) = self.get(source_key.clone(), true).await? else {
                continue; // expired meanwhile: claim it again
            };
            let first_id = source_key_event_id(&source)?;
            if let Some(first) = self.get_event(&event.tenant_id, &first_id).await? {
                return Ok(Stored::Repeat(first));
            }
            let take_over = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(source_key.clone()))
                .update_expression("SET event_id = :mine")
                .condition_expression("event_id = :first")
                .expression_attribute_values(":mine", s(&event.id))
                .expression_attribute_values(":first", s(&first_id))
                .send()
                .await;
            match take_over.map_err(super::classify) {
                Ok(_) => return self.put_event_once(event, expires_at).await,
                Err(WriteError::Store(e)) => return Err(e),
                Err(WriteError::Condition(_)) => {} // another repeat took it over first
            }
        }
        Err(StoreError::Unavailable(format!(
            "the idempotency key {source_id:?} points to an event being stored"
        )))
    }

    async fn get_event(&self, tenant_id: &str, event_id: &str) -> StoreResult<Option<Event>> {
        self.get_as(event_key(tenant_id, event_id), true).await
    }

    async fn forget_event(&self, event: &Event) -> StoreResult<()> {
        let mut transaction = Transaction::default()
            .delete("event", self.delete(event_key(&event.tenant_id, &event.id)));
        if let Some(source_id) = &event.source_id {
            transaction = transaction.delete(
                "source_key",
                self.delete(source_key_key(&event.tenant_id, source_id)),
            );
        }
        self.transact(transaction)
            .await
            .map_err(WriteError::unexpected)
    }

    async fn list_events(
        &self,
        tenant_id: &str,
        filter: &EventFilter,
        request: &PageRequest,
    ) -> StoreResult<Page<Event>> {
        let (lower, upper) = event_sk_range(filter.from, filter.to);
        let shards = Shards {
            partitions: (0..EVENT_SHARDS).map(|i| events_pk(tenant_id, i)).collect(),
            lower,
            upper,
        };
        list_sharded(self, &shards, request, ReadBudget::default(), |item| {
            let event = Event::try_from(item)?;
            Ok((event.tenant_id == tenant_id && filter.keeps(&event)).then_some(event))
        })
        .await
    }
}

impl DynamoStore {
    /// Puts an event unless one of its id is stored: then that one is the answer.
    async fn put_event_once(&self, event: &Event, expires_at: i64) -> StoreResult<Stored> {
        let put = self.put_if_absent(event_item(event, expires_at));
        match self
            .transact_or_put(Transaction::default().put("event", put))
            .await
        {
            Ok(()) => Ok(Stored::New),
            Err(WriteError::Store(e)) => Err(e),
            Err(WriteError::Condition(_)) => {
                match self.get_event(&event.tenant_id, &event.id).await? {
                    Some(first) => Ok(Stored::Repeat(first)),
                    None => Err(StoreError::Unavailable(format!(
                        "event {} was there and is not",
                        event.id
                    ))),
                }
            }
        }
    }

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
    pub(super) async fn batch_get(&self, mut keys: Vec<Item>) -> StoreResult<Vec<Item>> {
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

    /// One GSI2 partition (a shard of a webhook's open or failed deliveries): the keys of
    /// the oldest `limit` in `status`, with ids in `range` (inclusive) if given (the index
    /// holds keys and status only).
    async fn index_keys(
        &self,
        partition: String,
        status: DeliveryStatus,
        range: Option<(String, String)>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Item)>> {
        let mut found = Vec::new();
        let mut query = self
            .query()
            .index_name(GSI2)
            .expression_attribute_values(":pk", s(partition))
            .limit(i32::try_from(limit.clamp(25, 1000)).unwrap_or(1000));
        query = match range {
            None => query.key_condition_expression("GSI2PK = :pk"),
            Some((low, high)) => query
                .key_condition_expression("GSI2PK = :pk AND #id BETWEEN :low AND :high")
                .expression_attribute_names("#id", INDEX_SK)
                .expression_attribute_values(":low", s(low))
                .expression_attribute_values(":high", s(high)),
        };
        let mut start = None;
        loop {
            let out = query
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(store_error)?;
            for item in out.items.unwrap_or_default() {
                let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
                if text("status").as_deref() != Some(status.as_str()) {
                    continue;
                }
                if let (Some(id), Some(pk), Some(sk)) = (text(INDEX_SK), text("PK"), text("SK")) {
                    found.push((id, super::layout::key(pk, sk)));
                }
            }
            match out.last_evaluated_key {
                Some(next) if !next.is_empty() && found.len() < limit => start = Some(next),
                _ => return Ok(found),
            }
        }
    }

    /// The records of the oldest `limit` of `keys` (id, key) that are still in `status`
    /// and the webhook's (the index trails the table: what changed since is left out),
    /// oldest first.
    async fn indexed_records(
        &self,
        mut keys: Vec<(String, Item)>,
        tenant_id: &str,
        webhook_id: &str,
        status: DeliveryStatus,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        keys.truncate(limit);
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let items = self
                .batch_get(chunk.iter().map(|(_, key)| key.clone()).collect())
                .await?;
            for item in &items {
                let d = Delivery::try_from(item)?;
                if d.status == status && d.tenant_id == tenant_id && d.webhook_id == webhook_id {
                    found.push(d);
                }
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
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
        // The oldest `limit` of each shard hold the oldest `limit` of all.
        let shards = try_join_all((0..DELIVERY_SHARDS).map(|shard| {
            let partition = open_deliveries_gsi_pk(tenant_id, webhook_id, shard);
            self.index_keys(partition, status, None, limit)
        }))
        .await?;
        let keys = shards.into_iter().flatten().collect();
        self.indexed_records(keys, tenant_id, webhook_id, status, limit)
            .await
    }

    async fn failed_deliveries(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        range: &FailedRange,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        let (mut low, high) = delivery_id_range(range.since, range.until);
        if let Some(after) = range.after.as_ref().filter(|after| **after > low) {
            low.clone_from(after); // inclusive: `after` itself is dropped below
        }
        if low > high {
            return Ok(Vec::new());
        }
        let failed = DeliveryStatus::Failed;
        let shards = try_join_all((0..DELIVERY_SHARDS).map(|shard| {
            let partition = failed_deliveries_gsi_pk(tenant_id, webhook_id, shard);
            self.index_keys(
                partition,
                failed,
                Some((low.clone(), high.clone())),
                limit + 1,
            )
        }))
        .await?;
        let keys = shards
            .into_iter()
            .flatten()
            .filter(|(id, _)| range.holds(id))
            .collect();
        self.indexed_records(keys, tenant_id, webhook_id, failed, limit)
            .await
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

    async fn take_send_slot(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        second: i64,
        shard: u32,
        allowance: u32,
    ) -> StoreResult<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(send_slots_key(tenant_id, webhook_id, second, shard)))
            .update_expression("ADD #n :one SET #ttl = :expires")
            .condition_expression("attribute_not_exists(#n) OR #n < :allowance")
            .expression_attribute_names("#n", SEND_SLOTS_COUNTER)
            .expression_attribute_names("#ttl", EXPIRES_AT)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":allowance", n(allowance))
            .expression_attribute_values(":expires", n(second + 300))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match classify(e) {
                WriteError::Condition(_) => Ok(false),
                WriteError::Store(e) => Err(e),
            },
        }
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
        let shards = match filter
            .event_id
            .as_deref()
            .and_then(|id| crate::ids::id_time(id).map(|at| (id, at)))
        {
            // One event's deliveries share its shard and its id's millisecond: one
            // partition, one narrow range.
            Some((event_id, at)) => {
                let (lower, upper) = delivery_sk_range(
                    Some(filter.from.map_or(at, |f| f.max(at))),
                    Some(filter.to.map_or(at, |t| t.min(at))),
                );
                Shards {
                    partitions: vec![deliveries_pk(
                        tenant_id,
                        delivery_shard(&delivery_id(event_id, "")),
                    )],
                    lower,
                    upper,
                }
            }
            None => {
                let (lower, upper) = delivery_sk_range(filter.from, filter.to);
                Shards {
                    partitions: (0..DELIVERY_SHARDS)
                        .map(|i| deliveries_pk(tenant_id, i))
                        .collect(),
                    lower,
                    upper,
                }
            }
        };
        list_sharded(self, &shards, request, ReadBudget::default(), |item| {
            let d = Delivery::try_from(item)?;
            // The partitions are the tenant's own; the check is a second line, not the first.
            Ok((d.tenant_id == tenant_id && filter.keeps(&d)).then_some(d))
        })
        .await
    }

    async fn delivery_counts_for_event(
        &self,
        event: &Event,
    ) -> StoreResult<HashMap<DeliveryStatus, u64>> {
        // An event's deliveries share one partition (their ids carry its shard hint) and
        // the millisecond of its id.
        let any = delivery_id(&event.id, "");
        let id_time = crate::ids::id_time(&event.id).unwrap_or(event.created_at);
        let (lower, upper) = delivery_sk_range(Some(id_time), Some(id_time));
        let query = self
            .query()
            .key_condition_expression("PK = :pk AND SK BETWEEN :lo AND :hi")
            .expression_attribute_values(
                ":pk",
                s(deliveries_pk(&event.tenant_id, delivery_shard(&any))),
            )
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
