//! Storage: what the handlers and the delivery pipeline need of the table, as small traits
//! (ports). [`dynamo`] implements them on DynamoDB (every deployment, the local stack and
//! the end-to-end tests); [`memory`] implements them in memory, with the same conditions
//! and orders, for fast unit tests of the pipeline's and the handlers' decisions.

pub mod dynamo;
pub mod memory;

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::api_key::{ApiKey, KeyGrant};
use crate::domain::delivery::{Delivery, DeliveryStatus};
use crate::domain::event::Event;
use crate::domain::event_type::EventType;
use crate::domain::oauth_client::OAuthClient;
use crate::domain::rate_limit::{Admission, RateLimit};
use crate::domain::webhook::Webhook;
use crate::page::{Page, PageRequest};

/// What can go wrong reaching storage, whatever is behind it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttled or briefly unavailable after the client's own retries: retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored record that does not have the shape the service writes.
    #[error("stored record: {0}")]
    Corrupt(String),
    /// Anything else: a bug or a misconfiguration.
    #[error("storage error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What the fan-out needs of a tenant.
#[derive(Clone, Debug, Default)]
pub struct TenantView {
    /// The tenant's version when the view was read: bumped by every change of its webhooks
    /// or catalogue, so a view is current as long as the version is.
    pub version: u64,
    /// Without their health (kept apart, see [`Health`]).
    pub webhooks: Vec<Webhook>,
    /// The names in the tenant's catalogue.
    pub event_types: Vec<String>,
    /// The types with a schema, each with its `sort_key` (which names its creation: the
    /// key its compiled schema is cached by).
    pub schemas: HashMap<String, String>,
}

/// What publishing needs of one catalogue entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogEntry {
    pub sort_key: String,
    pub has_schema: bool,
}

/// Why creating a webhook was refused.
#[derive(Debug, thiserror::Error)]
pub enum CreateWebhookError {
    #[error("the tenant already has a webhook with this url")]
    DuplicateUrl,
    #[error("the tenant has as many webhooks as it may")]
    LimitReached,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why adding an event type was refused.
#[derive(Debug, thiserror::Error)]
pub enum CreateEventTypeError {
    #[error("the tenant already has an event type of this name")]
    Exists,
    #[error("the tenant has as many event types as it may")]
    LimitReached,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why replacing or deleting a webhook was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeWebhookError {
    #[error("the tenant already has a webhook with this url")]
    DuplicateUrl,
    /// Changed or deleted by another request since it was read.
    #[error("the webhook changed since it was read")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A webhook's health, kept in its own small item beside the webhook: when it last got a
/// delivery, and since when its deliveries all fail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub last_triggered_at: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
}

/// What storing an event found.
#[derive(Debug)]
pub enum Stored {
    /// The event is new and now stored.
    New,
    /// Its idempotency key was seen before: the event stored then.
    Repeat(Event),
}

/// What a conditional save of a delivery did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    Written,
    /// A later attempt or a close got there first; nothing was written.
    Superseded,
}

/// The filters of the event list.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl EventFilter {
    pub fn keeps(&self, event: &Event) -> bool {
        self.event_type
            .as_ref()
            .is_none_or(|t| &event.event_type == t)
    }
}

/// The filters of the delivery log.
#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    pub webhook_id: Option<String>,
    /// One event's deliveries.
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Which of a webhook's failed deliveries to recover: created in `[since, until)` (the time
/// their ids carry, as in the deliveries list's `from` and `to`), after the delivery id
/// `after` if given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedRange {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub after: Option<String>,
}

impl FailedRange {
    /// Whether a delivery id falls in the range.
    pub fn holds(&self, delivery_id: &str) -> bool {
        let at = crate::ids::id_time(delivery_id);
        at.is_some_and(|at| self.since <= at && at < self.until)
            && self
                .after
                .as_deref()
                .is_none_or(|after| delivery_id > after)
    }
}

impl DeliveryFilter {
    /// Whether a delivery passes the filters that are not key ranges.
    pub fn keeps(&self, d: &Delivery) -> bool {
        self.status.is_none_or(|s| d.status == s)
            && self.event_type.as_ref().is_none_or(|t| &d.event_type == t)
            && self.webhook_id.as_ref().is_none_or(|w| &d.webhook_id == w)
            && self.event_id.as_ref().is_none_or(|e| &d.event_id == e)
    }
}

/// API keys and OAuth2 clients: the admin command writes them; the authorizer reads keys,
/// the token endpoint clients.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a new key (its hash, never the key).
    async fn put_api_key(&self, key: &ApiKey) -> StoreResult<()>;
    /// The tenant and scopes of a key, by the key's hash; `None` for unknown or revoked.
    async fn find_key_grant(&self, key_hash: &str) -> StoreResult<Option<KeyGrant>>;
    /// A tenant's keys, revoked ones included, oldest first.
    async fn list_api_keys(&self, tenant_id: &str) -> StoreResult<Vec<ApiKey>>;
    /// Revokes a key; `None` if no key has this id. Revoking twice is harmless.
    async fn revoke_api_key(&self, key_id: &str) -> StoreResult<Option<ApiKey>>;
    /// Stores a new OAuth2 client (its secret's hash, never the secret).
    async fn put_client(&self, client: &OAuthClient) -> StoreResult<()>;
    /// A client by id, revoked or not, read consistently (a revocation holds at once).
    async fn find_client(&self, client_id: &str) -> StoreResult<Option<OAuthClient>>;
    /// A tenant's clients, revoked ones included, oldest first.
    async fn list_clients(&self, tenant_id: &str) -> StoreResult<Vec<OAuthClient>>;
    /// Revokes a client; `None` if no client has this id. Revoking twice is harmless.
    async fn revoke_client(&self, client_id: &str) -> StoreResult<Option<OAuthClient>>;
}

/// The tenant's event-type catalogue.
#[async_trait]
pub trait CatalogStore: Send + Sync {
    /// Adds an event type (with its schema) unless the tenant has one of that name or
    /// `max_event_types` already.
    async fn create_event_type(
        &self,
        tenant_id: &str,
        et: &EventType,
        max_event_types: u32,
    ) -> Result<(), CreateEventTypeError>;
    /// The catalogue without the schemas (up to 1,000 of 64 KiB each), in no particular
    /// order: what a subscription is checked against, and what a list pages through.
    async fn list_event_types(&self, tenant_id: &str) -> StoreResult<Vec<EventType>>;
    /// The schemas of these event types (those that have one), for a page of the list.
    async fn event_type_schemas(
        &self,
        tenant_id: &str,
        names: &[&str],
    ) -> StoreResult<HashMap<String, Value>>;
    /// The catalogue's entry for this type, read consistently; `None` if it has none.
    async fn event_type_entry(
        &self,
        tenant_id: &str,
        name: &str,
    ) -> StoreResult<Option<CatalogEntry>>;
    /// An event type's schema (one read, apart from the catalogue).
    async fn event_type_schema(&self, tenant_id: &str, name: &str) -> StoreResult<Option<Value>>;
    /// Removes an event type; `false` if there was none of that name.
    async fn delete_event_type(&self, tenant_id: &str, name: &str) -> StoreResult<bool>;
}

/// Webhooks, each changed only if unchanged since it was read (its `version`).
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Creates a webhook unless its URL is taken or the tenant has `max_webhooks`.
    async fn create_webhook(
        &self,
        wh: &Webhook,
        max_webhooks: u32,
    ) -> Result<(), CreateWebhookError>;
    /// One webhook of a tenant with its health, read consistently.
    async fn get_webhook(&self, tenant_id: &str, id: &str) -> StoreResult<Option<Webhook>>;
    /// All of a tenant's webhooks with their health, oldest first.
    async fn list_webhooks(&self, tenant_id: &str) -> StoreResult<Vec<Webhook>>;
    /// The tenant's version, webhooks (without health) and catalogue names, read
    /// consistently; the version is read first, so a change made meanwhile makes the view
    /// look older than it is, never newer.
    async fn load_tenant(&self, tenant_id: &str) -> StoreResult<TenantView>;
    /// The tenant's version, read consistently (one small item): a cached view whose
    /// version it still is, is current.
    async fn tenant_version(&self, tenant_id: &str) -> StoreResult<u64>;
    /// Replaces `old` with `new` (`new.version == old.version + 1`) if nobody changed it.
    /// A `new` without `failing_since` where `old` had one restarts its failure clock.
    async fn replace_webhook(&self, old: &Webhook, new: &Webhook)
    -> Result<(), ChangeWebhookError>;
    /// Deletes a webhook (and its health) if unchanged since it was read.
    async fn delete_webhook(&self, wh: &Webhook) -> Result<(), ChangeWebhookError>;
    /// Records attempts made at `at`: `last_triggered_at` becomes `at`; a success stops the
    /// failure clock, a failure starts it unless it runs. Returns the health as stored, or
    /// `None` if the webhook is gone.
    async fn record_health(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        at: DateTime<Utc>,
        succeeded: bool,
    ) -> StoreResult<Option<Health>>;
}

/// Events, each stored once and never rewritten.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores an event once: an event of that id stored before, or with an idempotency key
    /// an event of that key, answers as a repeat with the event stored first.
    async fn store_event(
        &self,
        event: &Event,
        idempotency_key: Option<&str>,
        expires_at: i64,
    ) -> StoreResult<Stored>;
    async fn get_event(&self, tenant_id: &str, event_id: &str) -> StoreResult<Option<Event>>;
    /// Removes an event whose task could not be queued (the publish answers 503), and its
    /// idempotency key with it.
    async fn forget_event(&self, event: &Event) -> StoreResult<()>;
    /// The tenant's events, newest first.
    async fn list_events(
        &self,
        tenant_id: &str,
        filter: &EventFilter,
        request: &PageRequest,
    ) -> StoreResult<Page<Event>>;
}

/// Delivery records: one per (event, webhook), every attempt recorded.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Writes new delivery records (at most [`RECORDS_PER_WRITE`] per call is cheapest).
    async fn put_deliveries(&self, deliveries: &[Delivery], expires_at: i64) -> StoreResult<()>;
    /// The deliveries among `ids` that exist (a resumed fan-out skips them).
    async fn existing_deliveries(
        &self,
        tenant_id: &str,
        ids: &[String],
    ) -> StoreResult<Vec<Delivery>>;
    async fn get_delivery(
        &self,
        tenant_id: &str,
        delivery_id: &str,
    ) -> StoreResult<Option<Delivery>>;
    /// Writes a delivery's new state if it is still in status `from` with fewer attempts
    /// than `attempts_below`. Moving into or out of `buffered` moves the webhook's
    /// buffered count in the same write.
    async fn save_delivery(
        &self,
        delivery: &Delivery,
        attempts_below: u32,
        from: DeliveryStatus,
        expires_at: i64,
    ) -> StoreResult<Saved>;
    /// Writes a new buffered delivery (unless its record exists) and counts it in its
    /// webhook's buffered count, in one write.
    async fn buffer_delivery(&self, delivery: &Delivery, expires_at: i64) -> StoreResult<Saved>;
    /// Open deliveries of a webhook in one status, oldest first, at most `limit`. Found
    /// through an index, which trails the table by a moment; each record is then read
    /// consistently.
    async fn open_deliveries(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        status: DeliveryStatus,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>>;
    /// A webhook's failed deliveries in `range`, oldest first, at most `limit`. Found through
    /// an index like the open ones (a delivery sits there from its failure until it
    /// expires), each record then read consistently.
    async fn failed_deliveries(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        range: &FailedRange,
        limit: usize,
    ) -> StoreResult<Vec<Delivery>>;
    /// How many deliveries a webhook holds buffered: one read, however large the backlog.
    async fn buffered_count(&self, tenant_id: &str, webhook_id: &str) -> StoreResult<u64>;
    /// Takes one of a webhook's `allowance` send slots for `second` (Unix seconds) in its
    /// rate window `shard`, if one is left: one conditional write, shared by every
    /// instance. False when that window is full.
    async fn take_send_slot(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        second: i64,
        shard: u32,
        allowance: u32,
    ) -> StoreResult<bool>;
    /// Forgets a deleted webhook's buffered count, once its deliveries are all closed.
    async fn drop_buffered_count(&self, tenant_id: &str, webhook_id: &str) -> StoreResult<()>;
    /// The tenant's deliveries, newest first.
    async fn list_deliveries(
        &self,
        tenant_id: &str,
        filter: &DeliveryFilter,
        request: &PageRequest,
    ) -> StoreResult<Page<Delivery>>;
    /// How many of an event's deliveries are in each status.
    async fn delivery_counts_for_event(
        &self,
        event: &Event,
    ) -> StoreResult<HashMap<DeliveryStatus, u64>>;
}

/// Delivery records written per request (DynamoDB's BatchWriteItem limit).
pub const RECORDS_PER_WRITE: usize = 25;

/// The per-tenant API rate limit's state (`domain::rate_limit`): one small item per tenant,
/// shared by every instance.
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Admits one API request of `tenant_id` at `now` (Unix microseconds), or says how long
    /// to wait: one conditional write, two when `hint` (the TAT this instance saw last)
    /// guessed wrong which of the two to try.
    async fn admit_request(
        &self,
        tenant_id: &str,
        limit: &RateLimit,
        now: i64,
        hint: Option<i64>,
    ) -> StoreResult<Admission>;
}

/// Everything the service stores.
pub trait Store:
    KeyStore + CatalogStore + WebhookStore + EventStore + DeliveryStore + LimitStore
{
}

impl<T: KeyStore + CatalogStore + WebhookStore + EventStore + DeliveryStore + LimitStore> Store
    for T
{
}
