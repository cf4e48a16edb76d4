//! Storage on DynamoDB: every call the service makes to its one table.

pub mod events;
pub mod items;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use crate::domain::api_key::ApiKey;
use crate::domain::event_type::EventType;
use crate::domain::webhook::Webhook;
use crate::error::ApiError;
use items::{
    COUNTER_ATTR, COUNTER_SK, EVENT_TYPE_SK_PREFIX, GSI1, Item, ItemError, KeyGrant,
    WEBHOOK_SK_PREFIX, api_key_lookup_item, api_key_lookup_pk, api_key_record_pk, event_type_sk,
    key, n, s, tenant_keys_gsi_pk, tenant_pk, url_guard_item, url_guard_sk, webhook_sk,
};

/// What can go wrong talking to the table.
#[derive(Debug)]
pub enum StoreError {
    /// Throttled or briefly unavailable after the SDK's own retries: the client may retry.
    Unavailable(String),
    /// A conditional write found the item not as expected. For a transaction, which of its
    /// items failed their condition, in order.
    ConditionFailed(Vec<bool>),
    /// An item that does not have the shape the service writes.
    Corrupt(ItemError),
    /// Anything else: a bug or a misconfiguration.
    Other(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(why) => write!(f, "storage unavailable: {why}"),
            StoreError::ConditionFailed(which) => write!(f, "condition failed: {which:?}"),
            StoreError::Corrupt(e) => write!(f, "{e}"),
            StoreError::Other(why) => write!(f, "storage error: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<ItemError> for StoreError {
    fn from(e: ItemError) -> Self {
        StoreError::Corrupt(e)
    }
}

/// Error codes DynamoDB answers when it is throttling or briefly unable to serve.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
    "TransactionConflict",
];

impl<E: ProvideErrorMetadata + std::fmt::Debug> From<SdkError<E, HttpResponse>> for StoreError {
    fn from(err: SdkError<E, HttpResponse>) -> Self {
        match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                StoreError::Unavailable("no answer from DynamoDB".into())
            }
            SdkError::ServiceError(service) if service.raw().status().as_u16() >= 500 => {
                StoreError::Unavailable(format!(
                    "DynamoDB answered {}",
                    service.raw().status().as_u16()
                ))
            }
            _ => {
                let code = err.code().unwrap_or("unknown");
                let message = err.message().unwrap_or("");
                if code == "ConditionalCheckFailedException" {
                    StoreError::ConditionFailed(vec![true])
                } else if TRANSIENT_CODES.contains(&code) {
                    StoreError::Unavailable(code.to_string())
                } else {
                    StoreError::Other(format!("{code}: {message}"))
                }
            }
        }
    }
}

/// Classifies a cancelled transaction by its per-item reasons ("None",
/// "ConditionalCheckFailed", "ThrottlingError", ...): a throttled or conflicting item makes
/// the whole transaction retryable; otherwise it says which conditions failed.
fn transaction_cancelled(reasons: &[&str]) -> StoreError {
    if reasons.iter().any(|r| {
        r.contains("Throttl")
            || r.contains("TransactionConflict")
            || r.contains("ProvisionedThroughput")
    }) {
        return StoreError::Unavailable("transaction cancelled by throttling".into());
    }
    let failed: Vec<bool> = reasons
        .iter()
        .map(|r| *r == "ConditionalCheckFailed")
        .collect();
    if failed.iter().any(|f| *f) {
        StoreError::ConditionFailed(failed)
    } else {
        StoreError::Other(format!("transaction cancelled: {reasons:?}"))
    }
}

impl From<StoreError> for ApiError {
    /// Storage trouble never reaches the client in detail: throttling is a 503 to retry,
    /// anything else a 500, and both are logged here.
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::Unavailable(why) => {
                tracing::warn!(reason = %why, "storage throttled; answering 503");
                ApiError::unavailable()
            }
            other => {
                tracing::error!(error = %other, "storage error");
                ApiError::internal()
            }
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What the fan-out needs of a tenant.
#[derive(Clone, Debug, Default)]
pub struct TenantView {
    pub webhooks: Vec<Webhook>,
    /// The names in the tenant's catalogue.
    pub event_types: Vec<String>,
}

/// Why creating a webhook was refused.
#[derive(Debug)]
pub enum CreateWebhookError {
    DuplicateUrl,
    LimitReached,
    Store(StoreError),
}

/// Why replacing or deleting a webhook was refused.
#[derive(Debug)]
pub enum ChangeWebhookError {
    DuplicateUrl,
    /// Changed or deleted by another request since it was read.
    Conflict,
    Store(StoreError),
}

/// The table and the client that reaches it.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) client: Client,
    pub(crate) table: String,
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Store {
            client,
            table: table.into(),
        }
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// The DynamoDB client (provisioning the local table).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn put(&self, item: Item) -> Put {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .expect("table and item are set")
    }

    /// A put that fails its condition if the item already exists.
    pub(crate) fn put_if_absent(&self, item: Item) -> Put {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .expect("table and item are set")
    }

    fn delete(&self, key: Item) -> Delete {
        Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .build()
            .expect("table and key are set")
    }

    pub(crate) async fn get(&self, key: Item, consistent: bool) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(consistent)
            .send()
            .await?;
        Ok(out.item)
    }

    /// Every item a query matches, following its pages.
    pub(crate) async fn query_all(&self, query: QueryFluentBuilder) -> StoreResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = query.clone().set_exclusive_start_key(start).send().await?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(items),
            }
        }
    }

    /// Every item of a partition whose sort key starts with `prefix`, in key order.
    async fn query_prefix(&self, pk: String, prefix: &str) -> StoreResult<Vec<Item>> {
        self.query_all(
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":prefix", s(prefix)),
        )
        .await
    }

    pub(crate) async fn transact(&self, writes: Vec<TransactWriteItem>) -> StoreResult<()> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => match e.err() {
                TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                    let reasons: Vec<&str> = cancelled
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or("None"))
                        .collect();
                    Err(transaction_cancelled(&reasons))
                }
                _ => Err(SdkError::ServiceError(e).into()),
            },
            Err(other) => Err(other.into()),
        }
    }

    // ---- API keys ----

    /// Stores a new key: the lookup item under its hash and its record.
    pub async fn put_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let lookup = self.put(api_key_lookup_item(key));
        let record = self.put(Item::from(key));
        self.transact(vec![
            TransactWriteItem::builder().put(lookup).build(),
            TransactWriteItem::builder().put(record).build(),
        ])
        .await
    }

    /// The tenant and scopes of a key, by the key's hash; `None` for unknown or revoked keys.
    pub async fn find_key_grant(&self, key_hash: &str) -> StoreResult<Option<KeyGrant>> {
        let item = self
            .get(
                key(api_key_lookup_pk(key_hash), items::API_KEY_LOOKUP_SK),
                false,
            )
            .await?;
        Ok(item.as_ref().map(KeyGrant::try_from).transpose()?)
    }

    /// A tenant's keys, revoked ones included, oldest first.
    pub async fn list_api_keys(&self, tenant_id: &str) -> StoreResult<Vec<ApiKey>> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("GSI1PK = :pk")
            .expression_attribute_values(":pk", s(tenant_keys_gsi_pk(tenant_id)));
        self.query_all(query)
            .await?
            .iter()
            .map(|item| ApiKey::try_from(item).map_err(StoreError::from))
            .collect()
    }

    /// Revokes a key: its lookup item goes, its record keeps `revoked_at`. `None` if no key
    /// has this id. Revoking twice is harmless.
    pub async fn revoke_api_key(&self, key_id: &str) -> StoreResult<Option<ApiKey>> {
        let record_key = key(api_key_record_pk(key_id), items::API_KEY_RECORD_SK);
        let Some(item) = self.get(record_key.clone(), true).await? else {
            return Ok(None);
        };
        let mut api_key = ApiKey::try_from(&item)?;
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
        let unlink = self.delete(key(
            api_key_lookup_pk(&api_key.key_hash),
            items::API_KEY_LOOKUP_SK,
        ));
        self.transact(vec![
            TransactWriteItem::builder().update(mark).build(),
            TransactWriteItem::builder().delete(unlink).build(),
        ])
        .await?;
        api_key.revoked_at = Some(revoked_at);
        Ok(Some(api_key))
    }

    // ---- event types ----

    /// Adds an event type; `ConditionFailed` if the tenant already has one of that name.
    pub async fn create_event_type(&self, tenant_id: &str, et: &EventType) -> StoreResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(items::event_type_item(tenant_id, et)))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await?;
        Ok(())
    }

    pub async fn list_event_types(&self, tenant_id: &str) -> StoreResult<Vec<EventType>> {
        self.query_prefix(tenant_pk(tenant_id), EVENT_TYPE_SK_PREFIX)
            .await?
            .iter()
            .map(|item| EventType::try_from(item).map_err(StoreError::from))
            .collect()
    }

    /// Whether the tenant's catalogue has this event type (read consistently: a type
    /// created a moment ago is there).
    pub async fn event_type_exists(&self, tenant_id: &str, name: &str) -> StoreResult<bool> {
        Ok(self
            .get(key(tenant_pk(tenant_id), event_type_sk(name)), true)
            .await?
            .is_some())
    }

    /// Removes an event type; `false` if there was none of that name.
    pub async fn delete_event_type(&self, tenant_id: &str, name: &str) -> StoreResult<bool> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(tenant_pk(tenant_id), event_type_sk(name))))
            .condition_expression("attribute_exists(PK)")
            .send()
            .await;
        match result.map_err(StoreError::from) {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    // ---- webhooks ----

    /// Creates a webhook as one transaction: the webhook, its URL guard (which must not
    /// exist) and the tenant's counter (which must stay within `max_webhooks`).
    pub async fn create_webhook(
        &self,
        wh: &Webhook,
        max_webhooks: u32,
    ) -> Result<(), CreateWebhookError> {
        let webhook = self.put_if_absent(Item::from(wh));
        let guard = self.put_if_absent(url_guard_item(wh));
        let count = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(tenant_pk(&wh.tenant_id), COUNTER_SK)))
            .update_expression("ADD #count :one")
            .condition_expression("attribute_not_exists(#count) OR #count < :max")
            .expression_attribute_names("#count", COUNTER_ATTR)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max_webhooks))
            .build()
            .expect("table, key and expression are set");
        let result = self
            .transact(vec![
                TransactWriteItem::builder().put(webhook).build(),
                TransactWriteItem::builder().put(guard).build(),
                TransactWriteItem::builder().update(count).build(),
            ])
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed(failed)) if failed.get(1) == Some(&true) => {
                Err(CreateWebhookError::DuplicateUrl)
            }
            Err(StoreError::ConditionFailed(failed)) if failed.get(2) == Some(&true) => {
                Err(CreateWebhookError::LimitReached)
            }
            Err(e) => Err(CreateWebhookError::Store(e)),
        }
    }

    /// One webhook of a tenant, read consistently (updates read then write).
    pub async fn get_webhook(&self, tenant_id: &str, id: &str) -> StoreResult<Option<Webhook>> {
        let item = self
            .get(key(tenant_pk(tenant_id), webhook_sk(id)), true)
            .await?;
        Ok(item.as_ref().map(Webhook::try_from).transpose()?)
    }

    /// A tenant's webhooks and event-type catalogue in one query (the fan-out reads this
    /// once per tenant per batch). Read consistently, so a webhook registered before an
    /// event was published receives it.
    pub async fn load_tenant(&self, tenant_id: &str) -> StoreResult<TenantView> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s(tenant_pk(tenant_id)));
        let mut view = TenantView::default();
        for item in self.query_all(query).await? {
            let sk = item
                .get(items::SK)
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                .unwrap_or("");
            if sk.starts_with(WEBHOOK_SK_PREFIX) {
                view.webhooks.push(Webhook::try_from(&item)?);
            } else if let Some(name) = sk.strip_prefix(EVENT_TYPE_SK_PREFIX) {
                view.event_types.push(name.to_string());
            }
        }
        Ok(view)
    }

    /// All of a tenant's webhooks, oldest first (ids are ULIDs).
    pub async fn list_webhooks(&self, tenant_id: &str) -> StoreResult<Vec<Webhook>> {
        self.query_prefix(tenant_pk(tenant_id), WEBHOOK_SK_PREFIX)
            .await?
            .iter()
            .map(|item| Webhook::try_from(item).map_err(StoreError::from))
            .collect()
    }

    fn webhook_write_if_version(&self, wh: &Webhook, expected_version: u64) -> Put {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(Item::from(wh)))
            .condition_expression("attribute_exists(PK) AND version = :expected")
            .expression_attribute_values(":expected", n(expected_version))
            .build()
            .expect("table and item are set")
    }

    /// Replaces `old` with `new` if nobody changed it since it was read, moving the URL
    /// guard when the URL changes. `new.version` must be `old.version + 1`.
    pub async fn replace_webhook(
        &self,
        old: &Webhook,
        new: &Webhook,
    ) -> Result<(), ChangeWebhookError> {
        let write = self.webhook_write_if_version(new, old.version);
        let result = if old.url == new.url {
            self.transact(vec![TransactWriteItem::builder().put(write).build()])
                .await
        } else {
            let add_guard = self.put_if_absent(url_guard_item(new));
            let drop_guard = self.delete(key(tenant_pk(&old.tenant_id), url_guard_sk(&old.url)));
            self.transact(vec![
                TransactWriteItem::builder().put(write).build(),
                TransactWriteItem::builder().put(add_guard).build(),
                TransactWriteItem::builder().delete(drop_guard).build(),
            ])
            .await
        };
        match result {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed(failed)) if failed.get(1) == Some(&true) => {
                Err(ChangeWebhookError::DuplicateUrl)
            }
            Err(StoreError::ConditionFailed(_)) => Err(ChangeWebhookError::Conflict),
            Err(e) => Err(ChangeWebhookError::Store(e)),
        }
    }

    /// Deletes a webhook, its URL guard and its place in the counter, if unchanged since read.
    pub async fn delete_webhook(&self, wh: &Webhook) -> Result<(), ChangeWebhookError> {
        let webhook = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(tenant_pk(&wh.tenant_id), webhook_sk(&wh.id))))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", n(wh.version))
            .build()
            .expect("table and key are set");
        let guard = self.delete(key(tenant_pk(&wh.tenant_id), url_guard_sk(&wh.url)));
        let count = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(tenant_pk(&wh.tenant_id), COUNTER_SK)))
            .update_expression("ADD #count :minus_one")
            .expression_attribute_names("#count", COUNTER_ATTR)
            .expression_attribute_values(":minus_one", n(-1))
            .build()
            .expect("table, key and expression are set");
        let result = self
            .transact(vec![
                TransactWriteItem::builder().delete(webhook).build(),
                TransactWriteItem::builder().delete(guard).build(),
                TransactWriteItem::builder().update(count).build(),
            ])
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed(_)) => Err(ChangeWebhookError::Conflict),
            Err(e) => Err(ChangeWebhookError::Store(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancellation_reasons_say_which_condition_failed() {
        match transaction_cancelled(&["None", "ConditionalCheckFailed", "None"]) {
            StoreError::ConditionFailed(which) => assert_eq!(which, vec![false, true, false]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn throttled_transactions_are_retryable() {
        assert!(matches!(
            transaction_cancelled(&["None", "ThrottlingError", "None"]),
            StoreError::Unavailable(_)
        ));
    }

    #[test]
    fn throttling_becomes_503_and_other_errors_500() {
        assert_eq!(
            ApiError::from(StoreError::Unavailable("x".into())).status(),
            503
        );
        assert_eq!(ApiError::from(StoreError::Other("x".into())).status(), 500);
    }
}
