//! The storage ports in memory, with the conditions and orders of the DynamoDB
//! implementation, for unit tests of the pipeline and the handlers. Never used by a
//! deployment, the local stack or the end-to-end tests.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, MutexGuard};
use serde_json::Value;

use super::{
    CatalogEntry, CatalogStore, ChangeWebhookError, CreateEventTypeError, CreateWebhookError,
    DeliveryFilter, DeliveryStore, EventFilter, EventStore, FailedRange, Health, KeyStore,
    LimitStore, Saved, StoreError, StoreResult, Stored, TenantView, WebhookStore,
};
use crate::domain::api_key::{ApiKey, KeyGrant};
use crate::domain::delivery::{Delivery, DeliveryStatus};
use crate::domain::event::Event;
use crate::domain::event_type::EventType;
use crate::domain::oauth_client::OAuthClient;
use crate::domain::rate_limit::{Admission, RateLimit, admit};
use crate::domain::webhook::Webhook;
use crate::page::{Page, PageRequest, paginate};

type Key = (String, String);

fn key(tenant_id: &str, id: &str) -> Key {
    (tenant_id.to_string(), id.to_string())
}

#[derive(Default)]
struct Tables {
    api_keys: BTreeMap<String, ApiKey>,
    clients: BTreeMap<String, OAuthClient>,
    event_types: BTreeMap<Key, EventType>,
    webhooks: BTreeMap<Key, Webhook>,
    events: BTreeMap<Key, Event>,
    source_keys: HashMap<Key, String>,
    deliveries: BTreeMap<Key, Delivery>,
    health: HashMap<Key, Health>,
    versions: HashMap<String, u64>,
    send_slots: HashMap<(Key, i64, u32), u32>,
    rate_tats: HashMap<String, i64>,
}

impl Tables {
    fn bump(&mut self, tenant_id: &str) {
        *self.versions.entry(tenant_id.to_string()).or_default() += 1;
    }
}

/// Every table in one map per record kind, keyed by tenant and id (ids are ULIDs, so a
/// map's order is their creation order). Set [`MemoryStore::fail_next`] to make calls
/// answer as throttled storage would.
#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    failures: Mutex<u32>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A webhook's deliveries in `status` whose ids pass `keep`, oldest first, at most
    /// `limit`.
    fn webhook_deliveries(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        status: DeliveryStatus,
        keep: impl Fn(&str) -> bool,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        Ok(self
            .tables()?
            .deliveries
            .iter()
            .filter(|((t, id), d)| {
                t == tenant_id && d.webhook_id == webhook_id && d.status == status && keep(id)
            })
            .map(|(_, d)| d.clone())
            .take(limit)
            .collect())
    }

    /// The next `n` calls fail with [`StoreError::Unavailable`].
    pub fn fail_next(&self, n: u32) {
        *self.failures.lock() = n;
    }

    fn tables(&self) -> StoreResult<MutexGuard<'_, Tables>> {
        let mut failures = self.failures.lock();
        if *failures > 0 {
            *failures -= 1;
            return Err(StoreError::Unavailable("throttled (in-memory test)".into()));
        }
        Ok(self.tables.lock())
    }

    /// Every delivery stored, in id order (for tests' assertions).
    pub fn all_deliveries(&self) -> Vec<Delivery> {
        let tables = self.tables.lock();
        tables.deliveries.values().cloned().collect()
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn put_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        self.tables()?
            .api_keys
            .insert(key.key_id.clone(), key.clone());
        Ok(())
    }

    async fn find_key_grant(&self, key_hash: &str) -> StoreResult<Option<KeyGrant>> {
        Ok(self
            .tables()?
            .api_keys
            .values()
            .find(|k| k.key_hash == key_hash && k.revoked_at.is_none())
            .map(|k| KeyGrant {
                key_id: k.key_id.clone(),
                tenant_id: k.tenant_id.clone(),
                scopes: k.scopes.clone(),
            }))
    }

    async fn list_api_keys(&self, tenant_id: &str) -> StoreResult<Vec<ApiKey>> {
        Ok(self
            .tables()?
            .api_keys
            .values()
            .filter(|k| k.tenant_id == tenant_id)
            .cloned()
            .collect())
    }

    async fn revoke_api_key(&self, key_id: &str) -> StoreResult<Option<ApiKey>> {
        let mut tables = self.tables()?;
        let Some(key) = tables.api_keys.get_mut(key_id) else {
            return Ok(None);
        };
        key.revoked_at.get_or_insert_with(crate::domain::now);
        Ok(Some(key.clone()))
    }

    async fn put_client(&self, client: &OAuthClient) -> StoreResult<()> {
        self.tables()?
            .clients
            .insert(client.client_id.clone(), client.clone());
        Ok(())
    }

    async fn find_client(&self, client_id: &str) -> StoreResult<Option<OAuthClient>> {
        Ok(self.tables()?.clients.get(client_id).cloned())
    }

    async fn list_clients(&self, tenant_id: &str) -> StoreResult<Vec<OAuthClient>> {
        Ok(self
            .tables()?
            .clients
            .values()
            .filter(|c| c.tenant_id == tenant_id)
            .cloned()
            .collect())
    }

    async fn revoke_client(&self, client_id: &str) -> StoreResult<Option<OAuthClient>> {
        let mut tables = self.tables()?;
        let Some(client) = tables.clients.get_mut(client_id) else {
            return Ok(None);
        };
        client.revoked_at.get_or_insert_with(crate::domain::now);
        Ok(Some(client.clone()))
    }
}

#[async_trait]
impl CatalogStore for MemoryStore {
    async fn create_event_type(
        &self,
        tenant_id: &str,
        et: &EventType,
        max: u32,
    ) -> Result<(), CreateEventTypeError> {
        let mut tables = self.tables()?;
        let key = key(tenant_id, &et.name);
        if tables.event_types.contains_key(&key) {
            return Err(CreateEventTypeError::Exists);
        }
        let count = tables
            .event_types
            .keys()
            .filter(|(t, _)| t == tenant_id)
            .count();
        if count >= max as usize {
            return Err(CreateEventTypeError::LimitReached);
        }
        tables.event_types.insert(key, et.clone());
        tables.bump(tenant_id);
        Ok(())
    }

    async fn list_event_types(&self, tenant_id: &str) -> StoreResult<Vec<EventType>> {
        Ok(self
            .tables()?
            .event_types
            .iter()
            .filter(|((t, _), _)| t == tenant_id)
            .map(|(_, et)| EventType {
                schema: None,
                ..et.clone()
            })
            .collect())
    }

    async fn event_type_schemas(
        &self,
        tenant_id: &str,
        names: &[&str],
    ) -> StoreResult<HashMap<String, Value>> {
        let t = self.tables()?;
        Ok(names
            .iter()
            .filter_map(|name| {
                let et = t.event_types.get(&key(tenant_id, name))?;
                Some((et.name.clone(), et.schema.clone()?))
            })
            .collect())
    }

    async fn event_type_entry(
        &self,
        tenant_id: &str,
        name: &str,
    ) -> StoreResult<Option<CatalogEntry>> {
        Ok(self
            .tables()?
            .event_types
            .get(&key(tenant_id, name))
            .map(|et| CatalogEntry {
                sort_key: et.sort_key.clone(),
                has_schema: et.schema.is_some(),
            }))
    }

    async fn event_type_schema(&self, tenant_id: &str, name: &str) -> StoreResult<Option<Value>> {
        Ok(self
            .tables()?
            .event_types
            .get(&key(tenant_id, name))
            .and_then(|et| et.schema.clone()))
    }

    async fn delete_event_type(&self, tenant_id: &str, name: &str) -> StoreResult<bool> {
        let mut tables = self.tables()?;
        let removed = tables.event_types.remove(&key(tenant_id, name)).is_some();
        if removed {
            tables.bump(tenant_id);
        }
        Ok(removed)
    }
}

/// A webhook with its health filled in.
fn with_health(tables: &Tables, wh: &Webhook) -> Webhook {
    let health = tables
        .health
        .get(&key(&wh.tenant_id, &wh.id))
        .copied()
        .unwrap_or_default();
    let mut wh = wh.clone();
    wh.last_triggered_at = health.last_triggered_at;
    wh.failing_since = health.failing_since;
    wh
}

/// A webhook as the table holds it: its health is kept apart.
fn without_health(wh: &Webhook) -> Webhook {
    let mut wh = wh.clone();
    wh.last_triggered_at = None;
    wh.failing_since = None;
    wh
}

fn tenant_webhooks<'a>(
    tables: &'a Tables,
    tenant_id: &'a str,
) -> impl Iterator<Item = &'a Webhook> {
    tables
        .webhooks
        .iter()
        .filter(move |((t, _), _)| t == tenant_id)
        .map(|(_, wh)| wh)
}

#[async_trait]
impl WebhookStore for MemoryStore {
    async fn create_webhook(&self, wh: &Webhook, max: u32) -> Result<(), CreateWebhookError> {
        let mut tables = self.tables()?;
        let mut count = 0u32;
        for other in tenant_webhooks(&tables, &wh.tenant_id) {
            if other.url == wh.url {
                return Err(CreateWebhookError::DuplicateUrl);
            }
            count += 1;
        }
        if count >= max {
            return Err(CreateWebhookError::LimitReached);
        }
        let k = key(&wh.tenant_id, &wh.id);
        tables.webhooks.insert(k.clone(), without_health(wh));
        tables.health.insert(k, Health::default());
        tables.bump(&wh.tenant_id);
        Ok(())
    }

    async fn get_webhook(&self, tenant_id: &str, id: &str) -> StoreResult<Option<Webhook>> {
        let tables = self.tables()?;
        Ok(tables
            .webhooks
            .get(&key(tenant_id, id))
            .map(|wh| with_health(&tables, wh)))
    }

    async fn list_webhooks(&self, tenant_id: &str) -> StoreResult<Vec<Webhook>> {
        let tables = self.tables()?;
        Ok(tenant_webhooks(&tables, tenant_id)
            .map(|wh| with_health(&tables, wh))
            .collect())
    }

    async fn tenant_version(&self, tenant_id: &str) -> StoreResult<u64> {
        Ok(self.tables()?.versions.get(tenant_id).copied().unwrap_or(0))
    }

    async fn load_tenant(&self, tenant_id: &str) -> StoreResult<TenantView> {
        let tables = self.tables()?;
        Ok(TenantView {
            version: tables.versions.get(tenant_id).copied().unwrap_or(0),
            webhooks: tenant_webhooks(&tables, tenant_id).cloned().collect(),
            event_types: tables
                .event_types
                .keys()
                .filter(|(t, _)| t == tenant_id)
                .map(|(_, name)| name.clone())
                .collect(),
            schemas: tables
                .event_types
                .iter()
                .filter(|((t, _), et)| t == tenant_id && et.schema.is_some())
                .map(|((_, name), et)| (name.clone(), et.sort_key.clone()))
                .collect(),
        })
    }

    async fn replace_webhook(
        &self,
        old: &Webhook,
        new: &Webhook,
    ) -> Result<(), ChangeWebhookError> {
        let mut tables = self.tables()?;
        let current = tables.webhooks.get(&key(&old.tenant_id, &old.id));
        if current.is_none_or(|c| c.version != old.version) {
            return Err(ChangeWebhookError::Conflict);
        }
        if old.url != new.url
            && tenant_webhooks(&tables, &old.tenant_id).any(|w| w.id != old.id && w.url == new.url)
        {
            return Err(ChangeWebhookError::DuplicateUrl);
        }
        let k = key(&new.tenant_id, &new.id);
        if old.failing_since.is_some()
            && new.failing_since.is_none()
            && let Some(health) = tables.health.get_mut(&k)
        {
            health.failing_since = None;
        }
        tables.webhooks.insert(k, without_health(new));
        tables.bump(&new.tenant_id);
        Ok(())
    }

    async fn delete_webhook(&self, wh: &Webhook) -> Result<(), ChangeWebhookError> {
        let mut tables = self.tables()?;
        let key = key(&wh.tenant_id, &wh.id);
        match tables.webhooks.get(&key) {
            Some(current) if current.version == wh.version => {
                tables.webhooks.remove(&key);
                tables.health.remove(&key);
                tables.bump(&wh.tenant_id);
                Ok(())
            }
            _ => Err(ChangeWebhookError::Conflict),
        }
    }

    async fn record_health(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        at: DateTime<Utc>,
        succeeded: bool,
    ) -> StoreResult<Option<Health>> {
        let mut tables = self.tables()?;
        let Some(health) = tables.health.get_mut(&key(tenant_id, webhook_id)) else {
            return Ok(None);
        };
        health.last_triggered_at = Some(at);
        if succeeded {
            health.failing_since = None;
        } else {
            health.failing_since.get_or_insert(at);
        }
        Ok(Some(*health))
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn store_event(
        &self,
        event: &Event,
        idempotency_key: Option<&str>,
        _expires_at: i64,
    ) -> StoreResult<Stored> {
        let mut tables = self.tables()?;
        if let Some(source) = idempotency_key {
            let source = key(&event.tenant_id, source);
            let first = tables
                .source_keys
                .get(&source)
                .and_then(|first| tables.events.get(&key(&event.tenant_id, first)));
            if let Some(first) = first {
                return Ok(Stored::Repeat(first.clone()));
            }
            tables.source_keys.insert(source, event.id.clone());
        }
        let k = key(&event.tenant_id, &event.id);
        if let Some(first) = tables.events.get(&k) {
            return Ok(Stored::Repeat(first.clone()));
        }
        tables.events.insert(k, event.clone());
        Ok(Stored::New)
    }

    async fn get_event(&self, tenant_id: &str, event_id: &str) -> StoreResult<Option<Event>> {
        Ok(self
            .tables()?
            .events
            .get(&key(tenant_id, event_id))
            .cloned())
    }

    async fn forget_event(&self, event: &Event) -> StoreResult<()> {
        let mut tables = self.tables()?;
        tables.events.remove(&key(&event.tenant_id, &event.id));
        if let Some(source) = &event.source_id {
            tables.source_keys.remove(&key(&event.tenant_id, source));
        }
        Ok(())
    }

    async fn list_events(
        &self,
        tenant_id: &str,
        filter: &EventFilter,
        request: &PageRequest,
    ) -> StoreResult<Page<Event>> {
        let events: Vec<Event> = self
            .tables()?
            .events
            .iter()
            .filter(|((t, _), e)| {
                t == tenant_id
                    && filter.keeps(e)
                    && filter.from.is_none_or(|f| e.created_at >= f)
                    && filter.to.is_none_or(|to| e.created_at <= to)
            })
            .map(|(_, e)| e.clone())
            .collect();
        Ok(paginate(events, |e| e.id.as_str(), request))
    }
}

#[async_trait]
impl LimitStore for MemoryStore {
    async fn admit_request(
        &self,
        tenant_id: &str,
        limit: &RateLimit,
        now: i64,
        _hint: Option<i64>,
    ) -> StoreResult<Admission> {
        let mut t = self.tables()?;
        let admission = admit(limit, t.rate_tats.get(tenant_id).copied(), now);
        if let Admission::Admitted { tat } = admission {
            t.rate_tats.insert(tenant_id.to_string(), tat);
        }
        Ok(admission)
    }
}

#[async_trait]
impl DeliveryStore for MemoryStore {
    async fn put_deliveries(&self, deliveries: &[Delivery], _expires_at: i64) -> StoreResult<()> {
        let mut tables = self.tables()?;
        for d in deliveries {
            tables
                .deliveries
                .insert(key(&d.tenant_id, &d.id), d.clone());
        }
        Ok(())
    }

    async fn existing_deliveries(
        &self,
        tenant_id: &str,
        ids: &[String],
    ) -> StoreResult<Vec<Delivery>> {
        let tables = self.tables()?;
        Ok(ids
            .iter()
            .filter_map(|id| tables.deliveries.get(&key(tenant_id, id)).cloned())
            .collect())
    }

    async fn get_delivery(
        &self,
        tenant_id: &str,
        delivery_id: &str,
    ) -> StoreResult<Option<Delivery>> {
        Ok(self
            .tables()?
            .deliveries
            .get(&key(tenant_id, delivery_id))
            .cloned())
    }

    async fn save_delivery(
        &self,
        delivery: &Delivery,
        attempts_below: u32,
        from: DeliveryStatus,
        _expires_at: i64,
    ) -> StoreResult<Saved> {
        let mut tables = self.tables()?;
        let key = key(&delivery.tenant_id, &delivery.id);
        match tables.deliveries.get(&key) {
            Some(current) if current.attempts < attempts_below && current.status == from => {
                tables.deliveries.insert(key, delivery.clone());
                Ok(Saved::Written)
            }
            _ => Ok(Saved::Superseded),
        }
    }

    async fn buffer_delivery(&self, delivery: &Delivery, _expires_at: i64) -> StoreResult<Saved> {
        let mut tables = self.tables()?;
        let key = key(&delivery.tenant_id, &delivery.id);
        if tables.deliveries.contains_key(&key) {
            return Ok(Saved::Superseded);
        }
        tables.deliveries.insert(key, delivery.clone());
        Ok(Saved::Written)
    }

    async fn open_deliveries(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        status: DeliveryStatus,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        self.webhook_deliveries(tenant_id, webhook_id, status, |_| true, limit)
    }

    async fn failed_deliveries(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        range: &FailedRange,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>> {
        let failed = DeliveryStatus::Failed;
        self.webhook_deliveries(tenant_id, webhook_id, failed, |id| range.holds(id), limit)
    }

    /// Counted from the records themselves: exact by construction.
    async fn buffered_count(&self, tenant_id: &str, webhook_id: &str) -> StoreResult<u64> {
        Ok(self
            .open_deliveries(tenant_id, webhook_id, DeliveryStatus::Buffered, usize::MAX)
            .await?
            .len() as u64)
    }

    async fn take_send_slot(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        second: i64,
        shard: u32,
        allowance: u32,
    ) -> StoreResult<bool> {
        let mut tables = self.tables()?;
        let sent = tables
            .send_slots
            .entry((key(tenant_id, webhook_id), second, shard))
            .or_default();
        if *sent >= allowance {
            return Ok(false);
        }
        *sent += 1;
        Ok(true)
    }

    async fn drop_buffered_count(&self, _tenant_id: &str, _webhook_id: &str) -> StoreResult<()> {
        Ok(())
    }

    async fn list_deliveries(
        &self,
        tenant_id: &str,
        filter: &DeliveryFilter,
        request: &PageRequest,
    ) -> StoreResult<Page<Delivery>> {
        let deliveries: Vec<Delivery> = self
            .tables()?
            .deliveries
            .iter()
            .filter(|((t, _), d)| {
                t == tenant_id
                    && filter.keeps(d)
                    && filter.from.is_none_or(|f| d.created_at >= f)
                    && filter.to.is_none_or(|to| d.created_at <= to)
            })
            .map(|(_, d)| d.clone())
            .collect();
        Ok(paginate(deliveries, |d| d.id.as_str(), request))
    }

    async fn delivery_counts_for_event(
        &self,
        event: &Event,
    ) -> StoreResult<HashMap<DeliveryStatus, u64>> {
        let mut counts = HashMap::new();
        for d in self.tables()?.deliveries.values() {
            if d.tenant_id == event.tenant_id && d.event_id == event.id {
                *counts.entry(d.status).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }
}
