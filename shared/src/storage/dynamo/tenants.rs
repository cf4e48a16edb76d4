//! What a tenant configures, on DynamoDB: API keys and OAuth2 clients, the event-type catalogue and webhooks
//! (each webhook created and deleted in one transaction with its URL guard, its health
//! item and the tenant's counter). Every change of a webhook or of the catalogue bumps the
//! tenant's version in the same transaction: the deliver function's cached view of the
//! tenant is current while the version is.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, Update};

use aws_sdk_dynamodb::types::ReturnValue;
use chrono::{DateTime, Utc};

use super::items::{
    api_key_lookup_item, catalog_entry, event_type_item, health_item, health_of, health_webhook_id,
    schema_item, schema_of, url_guard_item,
};
use super::layout::{
    self, EVENT_TYPES_COUNTER, GSI1, Item, TenantItem, VERSION_ATTR, WEBHOOKS_COUNTER,
    api_key_lookup_key, api_key_record_key, client_key, counter_key, event_type_key, health_key,
    health_pk, n, s, schema_key, tenant_clients_gsi_pk, tenant_keys_gsi_pk, tenant_pk,
    url_guard_key, version_key, webhook_key,
};
use super::{DynamoStore, Transaction, WriteError, classify};
use crate::domain::api_key::{ApiKey, KeyGrant};
use crate::domain::event_type::EventType;
use crate::domain::oauth_client::OAuthClient;
use crate::domain::webhook::Webhook;
use crate::storage::{
    CatalogEntry, CatalogStore, ChangeWebhookError, CreateEventTypeError, CreateWebhookError,
    Health, KeyStore, StoreError, StoreResult, TenantView, WebhookStore,
};
use serde_json::Value;

#[async_trait]
impl KeyStore for DynamoStore {
    async fn put_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let lookup = self.put(api_key_lookup_item(key));
        let record = self.put(Item::from(key));
        self.transact(
            Transaction::default()
                .put("lookup", lookup)
                .put("record", record),
        )
        .await
        .map_err(WriteError::unexpected)
    }

    /// A consistent read: a key used right after it is created must be found, or API
    /// Gateway would keep the authorizer's "unknown" answer for its cache's TTL.
    async fn find_key_grant(&self, key_hash: &str) -> StoreResult<Option<KeyGrant>> {
        self.get_as(api_key_lookup_key(key_hash), true).await
    }

    async fn list_api_keys(&self, tenant_id: &str) -> StoreResult<Vec<ApiKey>> {
        let query = self
            .query()
            .index_name(GSI1)
            .key_condition_expression("GSI1PK = :pk")
            .expression_attribute_values(":pk", s(tenant_keys_gsi_pk(tenant_id)));
        self.query_all_as(query).await
    }

    async fn revoke_api_key(&self, key_id: &str) -> StoreResult<Option<ApiKey>> {
        let record_key = api_key_record_key(key_id);
        let Some(mut api_key) = self.get_as::<ApiKey>(record_key.clone(), true).await? else {
            return Ok(None);
        };
        if api_key.revoked_at.is_some() {
            return Ok(Some(api_key));
        }
        let revoked_at = crate::domain::now();
        let mark = Update::builder()
            .table_name(&self.table)
            .set_key(Some(record_key))
            .update_expression("SET revoked_at = :at")
            .expression_attribute_values(":at", s(crate::domain::format_time(revoked_at)))
            .build()
            .expect("table, key and expression are set");
        let unlink = self.delete(api_key_lookup_key(&api_key.key_hash));
        self.transact(
            Transaction::default()
                .update("record", mark)
                .delete("lookup", unlink),
        )
        .await
        .map_err(WriteError::unexpected)?;
        api_key.revoked_at = Some(revoked_at);
        Ok(Some(api_key))
    }

    async fn put_client(&self, client: &OAuthClient) -> StoreResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Item::from(client)))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await
            .map_err(|e| match classify(e) {
                WriteError::Condition(_) => StoreError::Other("a client id used twice".into()),
                WriteError::Store(e) => e,
            })?;
        Ok(())
    }

    async fn find_client(&self, client_id: &str) -> StoreResult<Option<OAuthClient>> {
        self.get_as(client_key(client_id), true).await
    }

    async fn list_clients(&self, tenant_id: &str) -> StoreResult<Vec<OAuthClient>> {
        let query = self
            .query()
            .index_name(GSI1)
            .key_condition_expression("GSI1PK = :pk")
            .expression_attribute_values(":pk", s(tenant_clients_gsi_pk(tenant_id)));
        self.query_all_as(query).await
    }

    async fn revoke_client(&self, client_id: &str) -> StoreResult<Option<OAuthClient>> {
        // One conditional update: the first revocation's time stays, and an unknown id is
        // not created.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(client_key(client_id)))
            .update_expression("SET revoked_at = if_not_exists(revoked_at, :at)")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":at", s(crate::domain::format_time(crate::domain::now())))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out
                .attributes
                .as_ref()
                .map(OAuthClient::try_from)
                .transpose()?),
            Err(e) => match classify(e) {
                WriteError::Condition(_) => Ok(None),
                WriteError::Store(e) => Err(e),
            },
        }
    }
}

#[async_trait]
impl CatalogStore for DynamoStore {
    async fn create_event_type(
        &self,
        tenant_id: &str,
        et: &EventType,
        max: u32,
    ) -> Result<(), CreateEventTypeError> {
        let mut transaction = Transaction::default()
            .put(
                "event_type",
                self.put_if_absent(event_type_item(tenant_id, et)),
            )
            .update(
                "counter",
                self.count(tenant_id, EVENT_TYPES_COUNTER, 1, Some(max)),
            )
            .update("version", self.bump_version(tenant_id));
        if let Some(schema) = &et.schema {
            transaction =
                transaction.put("schema", self.put(schema_item(tenant_id, &et.name, schema)));
        }
        match self.transact(transaction).await {
            Ok(()) => Ok(()),
            Err(e) if e.failed("event_type") => Err(CreateEventTypeError::Exists),
            Err(e) if e.failed("counter") => Err(CreateEventTypeError::LimitReached),
            Err(e) => Err(e.unexpected().into()),
        }
    }

    async fn list_event_types(&self, tenant_id: &str) -> StoreResult<Vec<EventType>> {
        self.query_prefix_as::<EventType>(tenant_pk(tenant_id), layout::EVENT_TYPE_SK_PREFIX)
            .await
    }

    async fn event_type_schemas(
        &self,
        tenant_id: &str,
        names: &[&str],
    ) -> StoreResult<HashMap<String, Value>> {
        let mut schemas = HashMap::new();
        for chunk in names.chunks(100) {
            let keys = chunk
                .iter()
                .map(|name| schema_key(tenant_id, name))
                .collect();
            for item in self.batch_get(keys).await? {
                let (name, schema) = schema_of(&item)?;
                schemas.insert(name, schema);
            }
        }
        Ok(schemas)
    }

    async fn event_type_entry(
        &self,
        tenant_id: &str,
        name: &str,
    ) -> StoreResult<Option<CatalogEntry>> {
        let item = self.get(event_type_key(tenant_id, name), true).await?;
        Ok(item.as_ref().map(catalog_entry).transpose()?)
    }

    async fn event_type_schema(&self, tenant_id: &str, name: &str) -> StoreResult<Option<Value>> {
        let item = self.get(schema_key(tenant_id, name), true).await?;
        Ok(item.as_ref().map(schema_of).transpose()?.map(|(_, s)| s))
    }

    async fn delete_event_type(&self, tenant_id: &str, name: &str) -> StoreResult<bool> {
        let event_type = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(event_type_key(tenant_id, name)))
            .condition_expression("attribute_exists(PK)")
            .build()
            .expect("table and key are set");
        let result = self
            .transact(
                Transaction::default()
                    .delete("event_type", event_type)
                    .delete("schema", self.delete(schema_key(tenant_id, name)))
                    .update(
                        "counter",
                        self.count(tenant_id, EVENT_TYPES_COUNTER, -1, None),
                    )
                    .update("version", self.bump_version(tenant_id)),
            )
            .await;
        match result {
            Ok(()) => Ok(true),
            Err(e) if e.failed("event_type") => Ok(false),
            Err(e) => Err(e.unexpected()),
        }
    }
}

impl DynamoStore {
    fn webhook_write_if_version(&self, wh: &Webhook, expected_version: u64) -> StoreResult<Put> {
        Ok(Put::builder()
            .table_name(&self.table)
            .set_item(Some(Item::try_from(wh)?))
            .condition_expression("attribute_exists(PK) AND version = :expected")
            .expression_attribute_values(":expected", n(expected_version))
            .build()
            .expect("table and item are set"))
    }

    /// One of the tenant's counters moved by `step`; with `max`, only while below it.
    fn count(&self, tenant_id: &str, counter: &str, step: i64, max: Option<u32>) -> Update {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(counter_key(tenant_id)))
            .update_expression("ADD #count :step")
            .expression_attribute_names("#count", counter)
            .expression_attribute_values(":step", n(step));
        if let Some(max) = max {
            update = update
                .condition_expression("attribute_not_exists(#count) OR #count < :max")
                .expression_attribute_values(":max", n(max));
        }
        update.build().expect("table, key and expression are set")
    }

    /// The tenant's version moved on by one (created at 1).
    fn bump_version(&self, tenant_id: &str) -> Update {
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(version_key(tenant_id)))
            .update_expression("ADD #version :one")
            .expression_attribute_names("#version", VERSION_ATTR)
            .expression_attribute_values(":one", n(1))
            .build()
            .expect("table, key and expression are set")
    }

    /// Every health item of a tenant, by webhook id.
    async fn tenant_health(&self, tenant_id: &str) -> StoreResult<HashMap<String, Health>> {
        let query = self
            .query()
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s(health_pk(tenant_id)));
        let mut found = HashMap::new();
        for item in self.query_all(query).await? {
            if let Some(id) = health_webhook_id(&item) {
                found.insert(id.to_string(), health_of(&item)?);
            }
        }
        Ok(found)
    }
}

/// A webhook with its health filled in.
fn with_health(mut wh: Webhook, health: Option<Health>) -> Webhook {
    let health = health.unwrap_or_default();
    wh.last_triggered_at = health.last_triggered_at;
    wh.failing_since = health.failing_since;
    wh
}

#[async_trait]
impl WebhookStore for DynamoStore {
    async fn create_webhook(&self, wh: &Webhook, max: u32) -> Result<(), CreateWebhookError> {
        let item = Item::try_from(wh).map_err(StoreError::from)?;
        let result = self
            .transact(
                Transaction::default()
                    .put("webhook", self.put_if_absent(item))
                    .put("url_guard", self.put_if_absent(url_guard_item(wh)))
                    .put("health", self.put(health_item(wh)))
                    .update(
                        "counter",
                        self.count(&wh.tenant_id, WEBHOOKS_COUNTER, 1, Some(max)),
                    )
                    .update("version", self.bump_version(&wh.tenant_id)),
            )
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.failed("url_guard") => Err(CreateWebhookError::DuplicateUrl),
            Err(e) if e.failed("counter") => Err(CreateWebhookError::LimitReached),
            Err(e) => Err(e.unexpected().into()),
        }
    }

    async fn get_webhook(&self, tenant_id: &str, id: &str) -> StoreResult<Option<Webhook>> {
        let (webhook, health) = tokio::try_join!(
            self.get_as::<Webhook>(webhook_key(tenant_id, id), true),
            self.get(health_key(tenant_id, id), true),
        )?;
        let health = health.as_ref().map(health_of).transpose()?;
        Ok(webhook.map(|wh| with_health(wh, health)))
    }

    async fn load_tenant(&self, tenant_id: &str) -> StoreResult<TenantView> {
        // The version first: a change landing during the query leaves the view looking
        // older than it is (read again at the next batch), never newer.
        let version = self.tenant_version(tenant_id).await?;
        let query = self
            .query()
            .consistent_read(true)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s(tenant_pk(tenant_id)));
        let mut view = TenantView {
            version,
            ..TenantView::default()
        };
        for item in self.query_all(query).await? {
            match TenantItem::classify(&item) {
                TenantItem::Webhook => view.webhooks.push(Webhook::try_from(&item)?),
                TenantItem::EventType(name) => {
                    let entry = catalog_entry(&item)?;
                    if entry.has_schema {
                        view.schemas.insert(name.clone(), entry.sort_key);
                    }
                    view.event_types.push(name);
                }
                TenantItem::Version | TenantItem::Other => {}
            }
        }
        Ok(view)
    }

    async fn tenant_version(&self, tenant_id: &str) -> StoreResult<u64> {
        let item = self.get(version_key(tenant_id), true).await?;
        Ok(item
            .as_ref()
            .and_then(|i| i.get(VERSION_ATTR))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    async fn list_webhooks(&self, tenant_id: &str) -> StoreResult<Vec<Webhook>> {
        let (webhooks, mut health) = tokio::try_join!(
            self.query_prefix_as::<Webhook>(tenant_pk(tenant_id), layout::WEBHOOK_SK_PREFIX),
            self.tenant_health(tenant_id),
        )?;
        Ok(webhooks
            .into_iter()
            .map(|wh| {
                let h = health.remove(&wh.id);
                with_health(wh, h)
            })
            .collect())
    }

    async fn replace_webhook(
        &self,
        old: &Webhook,
        new: &Webhook,
    ) -> Result<(), ChangeWebhookError> {
        let mut transaction = Transaction::default()
            .put("webhook", self.webhook_write_if_version(new, old.version)?)
            .update("version", self.bump_version(&new.tenant_id));
        if old.failing_since.is_some() && new.failing_since.is_none() {
            let restart = Update::builder()
                .table_name(&self.table)
                .set_key(Some(health_key(&new.tenant_id, &new.id)))
                .update_expression("REMOVE failing_since")
                .condition_expression("attribute_exists(PK)")
                .build()
                .expect("table, key and expression are set");
            transaction = transaction.update("health", restart);
        }
        if old.url != new.url {
            transaction = transaction
                .put("url_guard", self.put_if_absent(url_guard_item(new)))
                .delete(
                    "old_url_guard",
                    self.delete(url_guard_key(&old.tenant_id, &old.url)),
                );
        }
        match self.transact(transaction).await {
            Ok(()) => Ok(()),
            Err(e) if e.failed("url_guard") => Err(ChangeWebhookError::DuplicateUrl),
            Err(e) if e.failed("webhook") => Err(ChangeWebhookError::Conflict),
            Err(e) => Err(e.unexpected().into()),
        }
    }

    async fn delete_webhook(&self, wh: &Webhook) -> Result<(), ChangeWebhookError> {
        let webhook = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(webhook_key(&wh.tenant_id, &wh.id)))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", n(wh.version))
            .build()
            .expect("table and key are set");
        let result = self
            .transact(
                Transaction::default()
                    .delete("webhook", webhook)
                    .delete(
                        "url_guard",
                        self.delete(url_guard_key(&wh.tenant_id, &wh.url)),
                    )
                    .delete("health", self.delete(health_key(&wh.tenant_id, &wh.id)))
                    .update(
                        "counter",
                        self.count(&wh.tenant_id, WEBHOOKS_COUNTER, -1, None),
                    )
                    .update("version", self.bump_version(&wh.tenant_id)),
            )
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.failed("webhook") => Err(ChangeWebhookError::Conflict),
            Err(e) => Err(e.unexpected().into()),
        }
    }

    async fn record_health(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        at: DateTime<Utc>,
        succeeded: bool,
    ) -> StoreResult<Option<Health>> {
        let expression = if succeeded {
            "SET last_triggered_at = :at REMOVE failing_since"
        } else {
            "SET last_triggered_at = :at, failing_since = if_not_exists(failing_since, :at)"
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(health_key(tenant_id, webhook_id)))
            .update_expression(expression)
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":at", s(crate::domain::format_time(at)))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(health_of(&out.attributes.unwrap_or_default())?)),
            Err(e) => match classify(e) {
                WriteError::Condition(_) => Ok(None),
                WriteError::Store(e) => Err(e),
            },
        }
    }
}
