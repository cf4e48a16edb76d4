//! The DynamoDB key layout: every key, prefix, shard and key range. The one place that
//! knows where a record is stored; the item mappings are `items`.
//!
//! | item | PK | SK |
//! |---|---|---|
//! | API key, looked up by the authorizer | `KEY#<sha256>` | `KEY` |
//! | API key record (listing, revocation) | `KEYID#<key id>` | `KEYID` (GSI1: `T#<tenant>#KEYS` / id) |
//! | OAuth2 client, read by the token endpoint | `CLIENT#<client id>` | `CLIENT` (GSI1: `T#<tenant>#CLIENTS` / id) |
//! | webhook | `T#<tenant>` | `WH#<id>` |
//! | URL uniqueness guard | `T#<tenant>` | `URL#<sha256(url)>` |
//! | per-tenant counters (webhooks, event types) | `T#<tenant>` | `COUNT` |
//! | the tenant's version (bumped by every change of webhooks or event types) | `T#<tenant>` | `VERSION` |
//! | event type | `T#<tenant>` | `ET#<name>` |
//! | event type schema | `T#<tenant>#SCHEMA` | `ET#<name>` |
//! | webhook health (last triggered, failing since) | `T#<tenant>#H` | `WH#<id>` |
//! | buffered count of a webhook | `T#<tenant>#BUF` | `WH#<id>` |
//! | a rate-limited webhook's sends in one second (window shard) | `T#<tenant>#RATE#<webhook>` | `<unix second>#<shard>` |
//! | event | `T#<tenant>#EV#<shard>` | `EV#<id>` |
//! | source idempotency key | `T#<tenant>#SRC#<source id>` | `SRC` |
//! | delivery | `T#<tenant>#DL#<shard>` | `DL#<id>` (GSI2 while open: `T#<tenant>#WH#<webhook>#OPEN#<shard>` / id; once failed: `...#FAILED#<shard>` / id) |
//! | a request the optional smoke receiver got (`make smoke`), for a day | `SMOKE#<token>` | `<ULID>` |
//! | a tenant's API rate limit (its theoretical arrival time) | `RL#<tenant>` | `API` |
//!
//! Events spread over [`EVENT_SHARDS`] partitions per tenant and deliveries over
//! [`DELIVERY_SHARDS`], by a hash of the event id: lists read every shard and merge them
//! newest first. A delivery id carries its event's shard hint, so a delivery's partition
//! is known from its id alone, and an event's deliveries share one partition. GSI2 holds a
//! webhook's open deliveries (keys and status only), sharded the same way; a retry does not
//! touch it. It also holds a webhook's failed deliveries, apart, for a recover to find
//! without reading the successes. Every index sorts by the item's own `id` attribute.
//!
//! Every partition key of the table and of its indexes that holds a tenant's records starts
//! with `T#<tenant>`, so no query can reach another tenant's items whatever id it is given.
//! The API key and client items are the exception: the authorizer finds a key by the
//! SHA-256 of the secret itself, the token endpoint a client by the id it presents, and the
//! admin command a key record by its id; no other route reads them. A tenant's API rate
//! limit (`RL#<tenant>`) is its own partition, which every route writes. The smoke receiver's
//! items (`SMOKE#`, deployed only when the template's `SmokeReceiver` asks) hold no
//! tenant's data.
//!
//! Events, source keys and deliveries carry `expires_at` (Unix seconds) for the table's TTL.
//! No other module spells a key: they ask this one for keys, key ranges and item kinds.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use ulid::Ulid;

use crate::domain::delivery::{event_shard_hint, shard_hint};
use crate::ids::IdKind;

pub type Item = HashMap<String, AttributeValue>;

pub const PK: &str = "PK";
pub const SK: &str = "SK";
pub const GSI1: &str = "GSI1";
pub const GSI1_PK: &str = "GSI1PK";
/// Every index sorts by the item's own `id` (an id's prefix says what it is), so no item
/// carries a copy of it per index.
pub const INDEX_SK: &str = "id";
pub const GSI2: &str = "GSI2";
pub const GSI2_PK: &str = "GSI2PK";
pub const EXPIRES_AT: &str = "expires_at";

/// Partitions a tenant's events spread over (each takes 1,000 write units a second).
pub const EVENT_SHARDS: u8 = 8;
/// Partitions a tenant's deliveries spread over, and each webhook's open deliveries in GSI2.
pub const DELIVERY_SHARDS: u8 = 16;

/// The events partition an event is stored in.
pub fn event_shard(event_id: &str) -> u8 {
    event_shard_hint(event_id) % EVENT_SHARDS
}

/// The deliveries partition a delivery is stored in (its event's, from the hint its id
/// carries).
pub fn delivery_shard(delivery_id: &str) -> u8 {
    shard_hint(delivery_id).unwrap_or(0) % DELIVERY_SHARDS
}

/// Partition of everything a tenant owns that is read together: webhooks, their URL guards,
/// the webhook counter and the event-type catalogue.
pub fn tenant_pk(tenant_id: &str) -> String {
    format!("T#{tenant_id}")
}

pub fn webhook_sk(webhook_id: &str) -> String {
    format!("WH#{webhook_id}")
}
pub const WEBHOOK_SK_PREFIX: &str = "WH#";

pub fn url_guard_sk(url: &str) -> String {
    format!("URL#{}", hex::encode(Sha256::digest(url.as_bytes())))
}

pub const COUNTER_SK: &str = "COUNT";
/// The tenant's version: one small item, bumped in the same transaction as every change of
/// its webhooks or event types, so a cached view of the tenant is checked with one read.
pub const VERSION_SK: &str = "VERSION";
pub const VERSION_ATTR: &str = "version";
/// The counter item's attributes: webhooks and event types of the tenant.
pub const WEBHOOKS_COUNTER: &str = "webhooks";
pub const EVENT_TYPES_COUNTER: &str = "event_types";

pub fn event_type_sk(name: &str) -> String {
    format!("ET#{name}")
}
pub const EVENT_TYPE_SK_PREFIX: &str = "ET#";

/// Partition of a tenant's event-type schemas (apart from the catalogue the fan-out reads).
pub fn schemas_pk(tenant_id: &str) -> String {
    format!("T#{tenant_id}#SCHEMA")
}

pub fn schema_key(tenant_id: &str, name: &str) -> Item {
    key(schemas_pk(tenant_id), event_type_sk(name))
}

/// One of a tenant's event partitions.
pub fn events_pk(tenant_id: &str, shard: u8) -> String {
    format!("T#{tenant_id}#EV#{shard}")
}

pub fn event_sk(event_id: &str) -> String {
    format!("EV#{event_id}")
}
pub const EVENT_SK_PREFIX: &str = "EV#";

pub fn source_key_pk(tenant_id: &str, source_id: &str) -> String {
    format!("T#{tenant_id}#SRC#{source_id}")
}
pub const SOURCE_KEY_SK: &str = "SRC";

/// One of a tenant's delivery partitions.
pub fn deliveries_pk(tenant_id: &str, shard: u8) -> String {
    format!("T#{tenant_id}#DL#{shard}")
}

pub fn delivery_sk(delivery_id: &str) -> String {
    format!("DL#{delivery_id}")
}
pub const DELIVERY_SK_PREFIX: &str = "DL#";

/// GSI2 (sparse) partition of one shard of a webhook's open deliveries, under its tenant.
pub fn open_deliveries_gsi_pk(tenant_id: &str, webhook_id: &str, shard: u8) -> String {
    format!("T#{tenant_id}#WH#{webhook_id}#OPEN#{shard}")
}

/// GSI2 (sparse) partition of one shard of a webhook's failed deliveries, under its tenant.
pub fn failed_deliveries_gsi_pk(tenant_id: &str, webhook_id: &str, shard: u8) -> String {
    format!("T#{tenant_id}#WH#{webhook_id}#FAILED#{shard}")
}

/// The GSI2 sort key range (delivery ids) of deliveries created in `[since, until)`.
pub fn delivery_id_range(since: DateTime<Utc>, until: DateTime<Utc>) -> (String, String) {
    let before = until - chrono::Duration::milliseconds(1);
    id_range(IdKind::Delivery.prefix(), Some(since), Some(before))
}

/// Partition of a tenant's webhook health items.
pub fn health_pk(tenant_id: &str) -> String {
    format!("T#{tenant_id}#H")
}

pub fn health_key(tenant_id: &str, webhook_id: &str) -> Item {
    key(health_pk(tenant_id), webhook_sk(webhook_id))
}

pub fn version_key(tenant_id: &str) -> Item {
    key(tenant_pk(tenant_id), VERSION_SK)
}

/// A webhook's buffered count: how many of its deliveries wait for an unpause, kept in the
/// writes that buffer and release them (an unpause answers it without reading the backlog).
pub fn buffered_count_key(tenant_id: &str, webhook_id: &str) -> Item {
    key(format!("T#{tenant_id}#BUF"), webhook_sk(webhook_id))
}
pub const BUFFERED_COUNTER: &str = "buffered";

/// One second's window (or a shard of it) of a rate-limited webhook's sends: a counter
/// that expires a few minutes later (TTL).
pub fn send_slots_key(tenant_id: &str, webhook_id: &str, second: i64, shard: u32) -> Item {
    key(
        format!("T#{tenant_id}#RATE#{webhook_id}"),
        format!("{second}#{shard}"),
    )
}
pub const SEND_SLOTS_COUNTER: &str = "sent";

pub fn api_key_lookup_pk(key_hash: &str) -> String {
    format!("KEY#{key_hash}")
}
pub const API_KEY_LOOKUP_SK: &str = "KEY";

pub fn api_key_record_pk(key_id: &str) -> String {
    format!("KEYID#{key_id}")
}
pub const API_KEY_RECORD_SK: &str = "KEYID";

pub fn tenant_keys_gsi_pk(tenant_id: &str) -> String {
    format!("T#{tenant_id}#KEYS")
}

/// The primary key of an item.
pub fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s(sk.into()))])
}

/// A tenant's API rate-limit state: its own partition, apart from the tenant's data, so
/// every route may write it (and no read route may write the tenant's data).
pub fn api_rate_key(tenant_id: &str) -> Item {
    key(format!("RL#{tenant_id}"), "API")
}
pub const RATE_TAT: &str = "tat";

/// The partition of the requests the smoke receiver got at one unguessable path: only the
/// smoke receiver reads or writes it (no tenant's data).
pub fn smoke_pk(token: &str) -> String {
    format!("SMOKE#{token}")
}

pub fn client_pk(client_id: &str) -> String {
    format!("CLIENT#{client_id}")
}
pub const CLIENT_SK: &str = "CLIENT";

pub fn tenant_clients_gsi_pk(tenant_id: &str) -> String {
    format!("T#{tenant_id}#CLIENTS")
}

pub fn client_key(client_id: &str) -> Item {
    key(client_pk(client_id), CLIENT_SK)
}

pub fn api_key_lookup_key(key_hash: &str) -> Item {
    key(api_key_lookup_pk(key_hash), API_KEY_LOOKUP_SK)
}

pub fn api_key_record_key(key_id: &str) -> Item {
    key(api_key_record_pk(key_id), API_KEY_RECORD_SK)
}

pub fn counter_key(tenant_id: &str) -> Item {
    key(tenant_pk(tenant_id), COUNTER_SK)
}

pub fn event_type_key(tenant_id: &str, name: &str) -> Item {
    key(tenant_pk(tenant_id), event_type_sk(name))
}

pub fn webhook_key(tenant_id: &str, webhook_id: &str) -> Item {
    key(tenant_pk(tenant_id), webhook_sk(webhook_id))
}

pub fn url_guard_key(tenant_id: &str, url: &str) -> Item {
    key(tenant_pk(tenant_id), url_guard_sk(url))
}

pub fn event_key(tenant_id: &str, event_id: &str) -> Item {
    key(
        events_pk(tenant_id, event_shard(event_id)),
        event_sk(event_id),
    )
}

pub fn source_key_key(tenant_id: &str, source_id: &str) -> Item {
    key(source_key_pk(tenant_id, source_id), SOURCE_KEY_SK)
}

pub fn delivery_key(tenant_id: &str, delivery_id: &str) -> Item {
    key(
        deliveries_pk(tenant_id, delivery_shard(delivery_id)),
        delivery_sk(delivery_id),
    )
}

/// What an item of a tenant's partition (`T#<tenant>`) is, by its sort key.
#[derive(Debug, PartialEq, Eq)]
pub enum TenantItem {
    Webhook,
    /// An event type, with its name.
    EventType(String),
    /// The tenant's version.
    Version,
    /// A URL guard or the counter.
    Other,
}

impl TenantItem {
    pub fn classify(item: &Item) -> Self {
        let sk = item
            .get(SK)
            .and_then(|v| v.as_s().ok())
            .map_or("", String::as_str);
        if sk.starts_with(WEBHOOK_SK_PREFIX) {
            TenantItem::Webhook
        } else if let Some(name) = sk.strip_prefix(EVENT_TYPE_SK_PREFIX) {
            TenantItem::EventType(name.to_string())
        } else if sk == VERSION_SK {
            TenantItem::Version
        } else {
            TenantItem::Other
        }
    }
}

/// A sort key bound for time `at`: the smallest (or greatest) ULID of that millisecond,
/// after `prefix`.
fn ulid_bound(prefix: &str, at: DateTime<Utc>, greatest: bool) -> String {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let random = if greatest { (1u128 << 80) - 1 } else { 0 };
    format!("{prefix}{}", Ulid::from_parts(millis, random))
}

/// An inclusive range of sort keys `<prefix><id kind><ULID>` between two times; open ends
/// run to the first and last key of that kind.
fn id_range(
    prefix: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> (String, String) {
    (
        from.map_or_else(|| prefix.to_string(), |t| ulid_bound(prefix, t, false)),
        to.map_or_else(|| format!("{prefix}~"), |t| ulid_bound(prefix, t, true)),
    )
}

/// The range of event sort keys created between `from` and `to` (in every shard).
pub fn event_sk_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> (String, String) {
    id_range(
        &format!("{EVENT_SK_PREFIX}{}", IdKind::Event.prefix()),
        from,
        to,
    )
}

/// The range of delivery sort keys created between `from` and `to` (in every shard).
pub fn delivery_sk_range(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> (String, String) {
    id_range(
        &format!("{DELIVERY_SK_PREFIX}{}", IdKind::Delivery.prefix()),
        from,
        to,
    )
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}
