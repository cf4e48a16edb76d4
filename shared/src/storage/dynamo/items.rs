//! The mappings between domain types and DynamoDB items (`From` and `TryFrom`, each
//! unit-tested on its own), built on the keys of [`super::layout`].

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::layout::*;
use crate::domain::api_key::{ApiKey, KeyGrant, Scope};
use crate::domain::delivery::{Attempt, Delivery, DeliveryStatus};
use crate::domain::event::Event;
use crate::domain::event_type::EventType;
use crate::domain::filter::Filter;
use crate::domain::headers::HeaderList;
use crate::domain::oauth_client::OAuthClient;
use crate::domain::webhook::{BasicAuth, Confidential, Webhook, WebhookStatus};
use crate::domain::{format_time, parse_time};
use crate::storage::{CatalogEntry, Health};

/// An item that does not have the shape this module writes.
#[derive(Debug, PartialEq, Eq)]
pub struct ItemError {
    pub attribute: String,
    pub problem: &'static str,
}

impl std::fmt::Display for ItemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stored item: attribute {}: {}",
            self.attribute, self.problem
        )
    }
}

impl std::error::Error for ItemError {}

/// Typed reads of an item's attributes.
struct Attrs<'a>(&'a Item);

impl Attrs<'_> {
    fn error(name: &str, problem: &'static str) -> ItemError {
        ItemError {
            attribute: name.to_string(),
            problem,
        }
    }

    fn opt_string(&self, name: &str) -> Result<Option<String>, ItemError> {
        match self.0.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(text)) => Ok(Some(text.clone())),
            Some(_) => Err(Self::error(name, "expected a string")),
        }
    }

    fn string(&self, name: &str) -> Result<String, ItemError> {
        self.opt_string(name)?
            .ok_or_else(|| Self::error(name, "missing"))
    }

    fn opt_time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ItemError> {
        self.opt_string(name)?
            .map(|t| parse_time(&t).ok_or_else(|| Self::error(name, "expected an RFC 3339 time")))
            .transpose()
    }

    fn time(&self, name: &str) -> Result<DateTime<Utc>, ItemError> {
        self.opt_time(name)?
            .ok_or_else(|| Self::error(name, "missing"))
    }

    fn opt_number(&self, name: &str) -> Result<Option<u32>, ItemError> {
        match self.0.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(text)) => text
                .parse()
                .map(Some)
                .map_err(|_| Self::error(name, "expected a whole number")),
            Some(_) => Err(Self::error(name, "expected a number")),
        }
    }

    fn number(&self, name: &str) -> Result<u64, ItemError> {
        match self.0.get(name) {
            Some(AttributeValue::N(text)) => text
                .parse()
                .map_err(|_| Self::error(name, "expected a whole number")),
            None => Err(Self::error(name, "missing")),
            Some(_) => Err(Self::error(name, "expected a number")),
        }
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, ItemError> {
        match self.0.get(name) {
            Some(AttributeValue::L(list)) => list
                .iter()
                .map(|v| {
                    v.as_s()
                        .cloned()
                        .map_err(|_| Self::error(name, "expected a list of strings"))
                })
                .collect(),
            None => Ok(Vec::new()),
            Some(_) => Err(Self::error(name, "expected a list")),
        }
    }

    /// A content filter kept as its JSON text, parsed again as it was checked on the way in.
    fn opt_filter(&self, name: &str) -> Result<Option<Filter>, ItemError> {
        self.opt_string(name)?
            .map(|text| {
                serde_json::from_str(&text)
                    .ok()
                    .and_then(|value| Filter::parse(value).ok())
                    .ok_or_else(|| Self::error(name, "expected a content filter"))
            })
            .transpose()
    }

    fn string_map(&self, name: &str) -> Result<Map<String, Value>, ItemError> {
        match self.0.get(name) {
            Some(AttributeValue::M(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    AttributeValue::S(text) => Ok((k.clone(), Value::String(text.clone()))),
                    _ => Err(Self::error(name, "expected a map of strings")),
                })
                .collect(),
            None => Ok(Map::new()),
            Some(_) => Err(Self::error(name, "expected a map")),
        }
    }

    fn json(&self, name: &str) -> Result<Option<Value>, ItemError> {
        self.opt_string(name)?
            .map(|text| {
                serde_json::from_str(&text).map_err(|_| Self::error(name, "expected JSON text"))
            })
            .transpose()
    }
}

/// Builds an item, leaving out the attributes that are absent.
#[derive(Default)]
struct ItemBuilder(Item);

/// More attributes than any item has (a webhook has 22 at most).
const ITEM_CAPACITY: usize = 24;

impl ItemBuilder {
    fn new(pk: String, sk: impl Into<String>) -> Self {
        // Room for the largest item's attributes up front: no rehash while it is built.
        let mut item = Item::with_capacity(ITEM_CAPACITY);
        item.insert(PK.to_string(), s(pk));
        item.insert(SK.to_string(), s(sk));
        ItemBuilder(item)
    }

    fn set(mut self, name: &str, value: AttributeValue) -> Self {
        self.0.insert(name.to_string(), value);
        self
    }

    fn string(self, name: &str, value: impl Into<String>) -> Self {
        self.set(name, s(value))
    }

    fn opt_string(self, name: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.string(name, v),
            None => self,
        }
    }

    fn time(self, name: &str, at: DateTime<Utc>) -> Self {
        self.string(name, format_time(at))
    }

    fn opt_time(self, name: &str, at: Option<DateTime<Utc>>) -> Self {
        self.opt_string(name, at.map(format_time))
    }

    fn opt_number(self, name: &str, value: Option<u32>) -> Self {
        match value {
            Some(v) => self.set(name, n(v)),
            None => self,
        }
    }
}

// ---- API keys ----

fn scopes_from(text: &str) -> Result<Vec<Scope>, ItemError> {
    Scope::parse_list(text).map_err(|_| Attrs::error("scopes", "unknown scope"))
}

/// The lookup item the authorizer reads.
pub fn api_key_lookup_item(key: &ApiKey) -> Item {
    ItemBuilder::new(api_key_lookup_pk(&key.key_hash), API_KEY_LOOKUP_SK)
        .string("key_id", &key.key_id)
        .string("tenant_id", &key.tenant_id)
        .string("scopes", Scope::join(&key.scopes))
        .0
}

impl TryFrom<&Item> for KeyGrant {
    type Error = ItemError;
    fn try_from(item: &Item) -> Result<Self, ItemError> {
        let a = Attrs(item);
        Ok(KeyGrant {
            key_id: a.string("key_id")?,
            tenant_id: a.string("tenant_id")?,
            scopes: scopes_from(&a.string("scopes")?)?,
        })
    }
}

impl From<&ApiKey> for Item {
    /// The key's record: listing by tenant (GSI1) and revocation by id.
    fn from(key: &ApiKey) -> Item {
        ItemBuilder::new(api_key_record_pk(&key.key_id), API_KEY_RECORD_SK)
            .string(GSI1_PK, tenant_keys_gsi_pk(&key.tenant_id))
            .string(INDEX_SK, &key.key_id)
            .string("key_id", &key.key_id)
            .string("tenant_id", &key.tenant_id)
            .string("scopes", Scope::join(&key.scopes))
            .string("key_hash", &key.key_hash)
            .time("created_at", key.created_at)
            .opt_time("revoked_at", key.revoked_at)
            .0
    }
}

impl TryFrom<&Item> for ApiKey {
    type Error = ItemError;
    fn try_from(item: &Item) -> Result<Self, ItemError> {
        let a = Attrs(item);
        Ok(ApiKey {
            key_id: a.string("key_id")?,
            tenant_id: a.string("tenant_id")?,
            scopes: scopes_from(&a.string("scopes")?)?,
            key_hash: a.string("key_hash")?,
            created_at: a.time("created_at")?,
            revoked_at: a.opt_time("revoked_at")?,
        })
    }
}

// ---- OAuth2 clients ----

impl From<&OAuthClient> for Item {
    /// The client: read by id at the token endpoint, listed by tenant (GSI1).
    fn from(client: &OAuthClient) -> Item {
        ItemBuilder::new(client_pk(&client.client_id), CLIENT_SK)
            .string(GSI1_PK, tenant_clients_gsi_pk(&client.tenant_id))
            .string(INDEX_SK, &client.client_id)
            .string("client_id", &client.client_id)
            .string("tenant_id", &client.tenant_id)
            .string("scopes", Scope::join(&client.scopes))
            .string("secret_hash", &client.secret_hash)
            .time("created_at", client.created_at)
            .opt_time("revoked_at", client.revoked_at)
            .0
    }
}

impl TryFrom<&Item> for OAuthClient {
    type Error = ItemError;
    fn try_from(item: &Item) -> Result<Self, ItemError> {
        let a = Attrs(item);
        Ok(OAuthClient {
            client_id: a.string("client_id")?,
            tenant_id: a.string("tenant_id")?,
            scopes: scopes_from(&a.string("scopes")?)?,
            secret_hash: a.string("secret_hash")?,
            created_at: a.time("created_at")?,
            revoked_at: a.opt_time("revoked_at")?,
        })
    }
}

// ---- event types ----

/// An event type belongs to a tenant's partition, so its item needs the tenant too. The
/// schema lives in an item of its own ([`schema_item`]): the fan-out reads the tenant's
/// partition once per batch and must not drag every schema along.
pub fn event_type_item(tenant_id: &str, et: &EventType) -> Item {
    let mut builder = ItemBuilder::new(tenant_pk(tenant_id), event_type_sk(&et.name))
        .string("name", &et.name)
        .string("description", &et.description)
        .time("created_at", et.created_at)
        .string("sort_key", &et.sort_key);
    if et.schema.is_some() {
        // The schema itself is apart (schema_item): the catalogue says only that it has one.
        builder = builder.set(HAS_SCHEMA, AttributeValue::Bool(true));
    }
    builder.0
}

/// The attribute of an event type item that says it has a schema.
const HAS_SCHEMA: &str = "has_schema";

/// What publishing needs of an event type item.
pub fn catalog_entry(item: &Item) -> Result<CatalogEntry, ItemError> {
    Ok(CatalogEntry {
        sort_key: Attrs(item).string("sort_key")?,
        has_schema: matches!(item.get(HAS_SCHEMA), Some(AttributeValue::Bool(true))),
    })
}

/// An event type's schema, beside the catalogue.
pub fn schema_item(tenant_id: &str, name: &str, schema: &Value) -> Item {
    ItemBuilder::new(schemas_pk(tenant_id), event_type_sk(name))
        .string("name", name)
        .string("schema", schema.to_string())
        .0
}

/// The event type a schema item belongs to, and the schema.
pub fn schema_of(item: &Item) -> Result<(String, Value), ItemError> {
    let a = Attrs(item);
    let schema = a
        .json("schema")?
        .ok_or_else(|| Attrs::error("schema", "missing"))?;
    Ok((a.string("name")?, schema))
}

impl TryFrom<&Item> for EventType {
    type Error = ItemError;
    fn try_from(item: &Item) -> Result<Self, ItemError> {
        let a = Attrs(item);
        Ok(EventType {
            name: a.string("name")?,
            description: a.opt_string("description")?.unwrap_or_default(),
            schema: None,
            created_at: a.time("created_at")?,
            sort_key: a.string("sort_key")?,
        })
    }
}

// ---- webhooks ----

/// A confidential value as stored: only ever sealed. A value still in the clear is refused
/// (a bug upstream), so nothing secret can reach the table in clear.
fn sealed<'a>(name: &str, value: &'a Confidential) -> Result<&'a str, ItemError> {
    match value {
        Confidential::Sealed(text) => Ok(text),
        Confidential::Clear(_) => Err(Attrs::error(name, "a confidential value was not sealed")),
    }
}

impl TryFrom<&Webhook> for Item {
    type Error = ItemError;
    fn try_from(wh: &Webhook) -> Result<Item, ItemError> {
        let metadata = wh
            .metadata
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|text| (k.clone(), s(text))))
            .collect();
        let password = match &wh.auth {
            Some(auth) => Some(sealed("auth_password", &auth.password)?),
            None => None,
        };
        let previous = match &wh.previous_secret {
            Some(value) => Some(sealed("previous_secret", value)?),
            None => None,
        };
        let authorization = match &wh.authorization {
            Some(value) => Some(sealed("authorization_header", value)?),
            None => None,
        };
        let headers = wh
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), s(value)))
            .collect();
        Ok(
            ItemBuilder::new(tenant_pk(&wh.tenant_id), webhook_sk(&wh.id))
                .string("id", &wh.id)
                .string("tenant_id", &wh.tenant_id)
                .opt_string("name", wh.name.as_deref())
                .opt_string("description", wh.description.as_deref())
                .string("url", &wh.url)
                .set(
                    "events",
                    AttributeValue::L(wh.events.iter().map(s).collect()),
                )
                .string("status", wh.status.as_str())
                .opt_string("auth_username", wh.auth.as_ref().map(|a| &a.username))
                .opt_string("auth_password", password)
                .string("secret", sealed("secret", &wh.secret)?)
                .string("secret_last_4", &wh.secret_last_4)
                .opt_string("previous_secret", previous)
                .opt_time("previous_expires_at", wh.previous_expires_at)
                .set("metadata", AttributeValue::M(metadata))
                .set("headers", AttributeValue::M(headers))
                .opt_string("authorization_header", authorization)
                .opt_number("rate_limit", wh.rate_limit)
                .opt_string(
                    "filter",
                    wh.filter.as_ref().map(|f| f.as_json().to_string()),
                )
                .time("created_at", wh.created_at)
                .time("updated_at", wh.updated_at)
                .opt_string("disabled_reason", wh.disabled_reason.as_deref())
                .set("version", n(wh.version))
                .0,
        )
    }
}

impl TryFrom<&Item> for Webhook {
    type Error = ItemError;
    fn try_from(item: &Item) -> Result<Self, ItemError> {
        let a = Attrs(item);
        let status = a.string("status")?;
        let auth = match (
            a.opt_string("auth_username")?,
            a.opt_string("auth_password")?,
        ) {
            (Some(username), Some(password)) => Some(BasicAuth {
                username,
                password: Confidential::Sealed(password),
            }),
            _ => None,
        };
        Ok(Webhook {
            id: a.string("id")?,
            tenant_id: a.string("tenant_id")?,
            name: a.opt_string("name")?,
            description: a.opt_string("description")?,
            url: a.string("url")?,
            events: a.strings("events")?,
            status: WebhookStatus::parse(&status)
                .ok_or_else(|| Attrs::error("status", "unknown status"))?,
            auth,
            secret: Confidential::Sealed(a.string("secret")?),
            secret_last_4: a.string("secret_last_4")?,
            previous_secret: a.opt_string("previous_secret")?.map(Confidential::Sealed),
            previous_expires_at: a.opt_time("previous_expires_at")?,
            metadata: a.string_map("metadata")?,
            headers: HeaderList(
                a.string_map("headers")?
                    .into_iter()
                    .map(|(name, value)| (name, value.as_str().unwrap_or_default().to_string()))
                    .collect(),
            ),
            authorization: a
                .opt_string("authorization_header")?
                .map(Confidential::Sealed),
            rate_limit: a.opt_number("rate_limit")?,
            filter: a.opt_filter("filter")?,
            created_at: a.time("created_at")?,
            updated_at: a.time("updated_at")?,
            // Health lives in its own item (see `health_item`): read beside the webhook.
            last_triggered_at: None,
            disabled_reason: a.opt_string("disabled_reason")?,
            failing_since: None,
            version: a.number("version")?,
        })
    }
}

/// A new webhook's health item: nothing tried yet. It exists exactly as long as its
/// webhook (created and deleted in the same transactions), so recording health never
/// brings back a deleted webhook's.
pub fn health_item(wh: &Webhook) -> Item {
    ItemBuilder::new(health_pk(&wh.tenant_id), webhook_sk(&wh.id)).0
}

/// A webhook's health: when it last got a delivery, and since when its deliveries all fail.
pub fn health_of(item: &Item) -> Result<Health, ItemError> {
    let a = Attrs(item);
    Ok(Health {
        last_triggered_at: a.opt_time("last_triggered_at")?,
        failing_since: a.opt_time("failing_since")?,
    })
}

/// The webhook id a health item belongs to.
pub fn health_webhook_id(item: &Item) -> Option<&str> {
    item.get(SK)?.as_s().ok()?.strip_prefix(WEBHOOK_SK_PREFIX)
}

// ---- events ----

/// An event item, expiring at `expires_at` (Unix seconds): written once, never changed.
pub fn event_item(event: &Event, expires_at: i64) -> Item {
    ItemBuilder::new(
        events_pk(&event.tenant_id, event_shard(&event.id)),
        event_sk(&event.id),
    )
    .string("id", &event.id)
    .string("tenant_id", &event.tenant_id)
    .string("type", &event.event_type)
    .string("data", Value::Object(event.data.clone()).to_string())
    .opt_string("source_id", event.source_id.as_deref())
    .time("created_at", event.created_at)
    .set(EXPIRES_AT, n(expires_at))
    .0
}

impl TryFrom<&Item> for Event {
    type Error = ItemError;
    fn try_from(item: &Item) -> Result<Self, ItemError> {
        let a = Attrs(item);
        let data = match a.json("data")? {
            Some(Value::Object(map)) => map,
            _ => return Err(Attrs::error("data", "expected a JSON object")),
        };
        Ok(Event {
            id: a.string("id")?,
            tenant_id: a.string("tenant_id")?,
            event_type: a.string("type")?,
            data,
            source_id: a.opt_string("source_id")?,
            created_at: a.time("created_at")?,
        })
    }
}

/// Remembers a source's idempotency key: which event it produced.
pub fn source_key_item(event: &Event, source_id: &str, expires_at: i64) -> Item {
    ItemBuilder::new(source_key_pk(&event.tenant_id, source_id), SOURCE_KEY_SK)
        .string("event_id", &event.id)
        .set(EXPIRES_AT, n(expires_at))
        .0
}

/// The event id a source key points to.
pub fn source_key_event_id(item: &Item) -> Result<String, ItemError> {
    Attrs(item).string("event_id")
}

// ---- deliveries ----

fn attempt_from_json(v: &Value) -> Option<Attempt> {
    Some(Attempt {
        at: parse_time(v.get("at")?.as_str()?)?,
        status_code: v
            .get("status_code")?
            .as_u64()
            .and_then(|c| u16::try_from(c).ok()),
        response_time: v.get("response_time")?.as_u64()?,
        error: v.get("error")?.as_str().map(str::to_string),
        response_excerpt: v.get("response_excerpt")?.as_str().map(str::to_string),
    })
}

/// A delivery item, expiring at `expires_at`, in its event's shard. An open delivery
/// (pending, buffered) also sits in GSI2 under its webhook (keys and status only, so a
/// retry that leaves it pending does not write the index), and a failed one too, apart
/// (for a recover); a succeeded or cancelled one leaves it.
pub fn delivery_item(d: &Delivery, expires_at: i64) -> Item {
    // Strings, numbers and nulls only: serializing cannot fail.
    let log = serde_json::to_string(&d.attempt_log).unwrap_or_else(|_| "[]".to_string());
    let shard = delivery_shard(&d.id);
    let mut builder = ItemBuilder::new(deliveries_pk(&d.tenant_id, shard), delivery_sk(&d.id))
        .string("id", &d.id)
        .string("tenant_id", &d.tenant_id)
        .string("event_id", &d.event_id)
        .string("webhook_id", &d.webhook_id)
        .string("event_type", &d.event_type)
        .string("status", d.status.as_str())
        .set("attempts", n(d.attempts))
        .opt_number(
            "manual_attempts",
            (d.manual_attempts > 0).then_some(d.manual_attempts),
        )
        .time("created_at", d.created_at)
        .time("updated_at", d.updated_at)
        .opt_time("next_attempt_at", d.next_attempt_at)
        .string("attempt_log", log)
        .set(EXPIRES_AT, n(expires_at));
    if d.status.is_open() {
        builder = builder.string(
            GSI2_PK,
            open_deliveries_gsi_pk(&d.tenant_id, &d.webhook_id, shard),
        );
    } else if d.status == DeliveryStatus::Failed {
        builder = builder.string(
            GSI2_PK,
            failed_deliveries_gsi_pk(&d.tenant_id, &d.webhook_id, shard),
        );
    }
    builder.0
}

impl TryFrom<&Item> for Delivery {
    type Error = ItemError;
    fn try_from(item: &Item) -> Result<Self, ItemError> {
        let a = Attrs(item);
        let status = a.string("status")?;
        let log = match a.json("attempt_log")? {
            Some(Value::Array(entries)) => entries
                .iter()
                .map(|e| {
                    attempt_from_json(e)
                        .ok_or_else(|| Attrs::error("attempt_log", "malformed attempt"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
            Some(_) => return Err(Attrs::error("attempt_log", "expected a list")),
        };
        Ok(Delivery {
            id: a.string("id")?,
            tenant_id: a.string("tenant_id")?,
            event_id: a.string("event_id")?,
            webhook_id: a.string("webhook_id")?,
            event_type: a.string("event_type")?,
            status: DeliveryStatus::parse(&status)
                .ok_or_else(|| Attrs::error("status", "unknown status"))?,
            attempts: u32::try_from(a.number("attempts")?)
                .map_err(|_| Attrs::error("attempts", "too large"))?,
            manual_attempts: a.opt_number("manual_attempts")?.unwrap_or(0),
            created_at: a.time("created_at")?,
            updated_at: a.time("updated_at")?,
            next_attempt_at: a.opt_time("next_attempt_at")?,
            attempt_log: log,
        })
    }
}

/// The guard that makes a URL unique within a tenant: its key names the URL's hash.
pub fn url_guard_item(wh: &Webhook) -> Item {
    ItemBuilder::new(tenant_pk(&wh.tenant_id), url_guard_sk(&wh.url))
        .string("webhook_id", &wh.id)
        .0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::webhook::tests::sample;
    use serde_json::json;

    /// The sample webhook as it is stored: its confidential values sealed.
    fn stored() -> Webhook {
        let mut wh = sample();
        wh.secret = Confidential::Sealed("v1.sealed.secret".into());
        if let Some(auth) = wh.auth.as_mut() {
            auth.password = Confidential::Sealed("v1.sealed.password".into());
        }
        wh.authorization = Some(Confidential::Sealed("v1.sealed.authorization".into()));
        wh
    }

    #[test]
    fn a_clear_value_is_never_written() {
        let error = Item::try_from(&sample()).unwrap_err();
        assert_eq!(error.problem, "a confidential value was not sealed");
        let mut wh = stored();
        wh.previous_secret = Some(Confidential::Clear("whsec_old".into()));
        assert_eq!(
            Item::try_from(&wh).unwrap_err().attribute,
            "previous_secret"
        );
    }

    #[test]
    fn a_webhook_survives_the_round_trip_through_an_item() {
        let mut wh = stored();
        wh.previous_secret = Some(Confidential::Sealed("v1.sealed.old".into()));
        wh.previous_expires_at = Some(wh.created_at);
        wh.disabled_reason = Some("failing".into());
        wh.headers = HeaderList(vec![("X-Team".into(), "crm".into())]);
        wh.rate_limit = Some(50);
        wh.filter = Some(
            crate::domain::filter::Filter::parse(
                serde_json::json!({"data": {"amount": {"$gte": 100}}}),
            )
            .unwrap(),
        );
        let item = Item::try_from(&wh).unwrap();
        assert_eq!(item[PK], s("T#acme"));
        assert_eq!(item[SK], s(format!("WH#{}", wh.id)));
        assert_eq!(item["version"], n(1));
        assert!(!item.contains_key("description"));
        assert_eq!(Webhook::try_from(&item).unwrap(), wh);
    }

    #[test]
    fn a_webhook_without_auth_or_metadata_round_trips() {
        let mut wh = stored();
        wh.auth = None;
        wh.metadata = Map::new();
        wh.name = None;
        wh.headers = HeaderList::default();
        wh.authorization = None;
        assert_eq!(
            Webhook::try_from(&Item::try_from(&wh).unwrap()).unwrap(),
            wh
        );
    }

    #[test]
    fn a_damaged_item_names_the_attribute() {
        let mut item = Item::try_from(&stored()).unwrap();
        item.insert("status".into(), s("sleeping"));
        assert_eq!(Webhook::try_from(&item).unwrap_err().attribute, "status");
        item.remove("url");
        assert_eq!(Webhook::try_from(&item).unwrap_err().attribute, "url");
        let mut item = Item::try_from(&stored()).unwrap();
        item.insert("version".into(), s("1"));
        assert_eq!(Webhook::try_from(&item).unwrap_err().attribute, "version");
    }

    #[test]
    fn api_keys_are_stored_by_hash_and_listed_by_tenant() {
        let (_, key) = crate::domain::api_key::generate_key(
            "acme",
            vec![Scope::WebhooksRead, Scope::EventsWrite],
        );
        let lookup = api_key_lookup_item(&key);
        assert_eq!(lookup[PK], s(format!("KEY#{}", key.key_hash)));
        assert_eq!(
            KeyGrant::try_from(&lookup).unwrap(),
            KeyGrant {
                key_id: key.key_id.clone(),
                tenant_id: "acme".into(),
                scopes: key.scopes.clone()
            }
        );
        let record = Item::from(&key);
        assert_eq!(record[GSI1_PK], s("T#acme#KEYS"));
        assert_eq!(ApiKey::try_from(&record).unwrap(), key);
    }

    #[test]
    fn clients_are_stored_by_id_without_their_secret_and_listed_by_tenant() {
        let (secret, mut client) =
            crate::domain::oauth_client::generate_client("acme", vec![Scope::EventsWrite]);
        let item = Item::from(&client);
        assert_eq!(item[PK], s(format!("CLIENT#{}", client.client_id)));
        assert_eq!(item[GSI1_PK], s("T#acme#CLIENTS"));
        assert!(!format!("{item:?}").contains(&secret));
        assert_eq!(OAuthClient::try_from(&item).unwrap(), client);
        client.revoked_at = Some(client.created_at);
        assert_eq!(OAuthClient::try_from(&Item::from(&client)).unwrap(), client);
    }

    #[test]
    fn event_types_round_trip_and_keep_their_schema_apart() {
        let mut et = EventType {
            name: "user.created".into(),
            description: "A user signed up".into(),
            schema: None,
            created_at: crate::domain::now(),
            sort_key: ulid::Ulid::new().to_string(),
        };
        let item = event_type_item("acme", &et);
        assert_eq!(item[SK], s("ET#user.created"));
        assert_eq!(EventType::try_from(&item).unwrap(), et);
        et.schema = Some(json!({"type": "object"}));
        assert!(!event_type_item("acme", &et).contains_key("schema"));
        let schema = schema_item("acme", &et.name, &json!({"type": "object"}));
        assert_eq!(schema[PK], s("T#acme#SCHEMA"));
        assert_eq!(
            schema_of(&schema).unwrap(),
            ("user.created".to_string(), json!({"type": "object"}))
        );
    }

    #[test]
    fn events_round_trip_expire_and_spread_over_shards() {
        let event = Event {
            id: "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
            tenant_id: "acme".into(),
            event_type: "user.created".into(),
            data: json!({"email": "a@example.com", "n": [1, 2]})
                .as_object()
                .cloned()
                .unwrap(),
            source_id: Some("src-1".into()),
            created_at: crate::domain::now(),
        };
        let item = event_item(&event, 1_900_000_000);
        assert_eq!(item[PK], s(format!("T#acme#EV#{}", event_shard(&event.id))));
        assert_eq!(item[EXPIRES_AT], n(1_900_000_000));
        assert_eq!(Event::try_from(&item).unwrap(), event);
        let source = source_key_item(&event, "src-1", 5);
        assert_eq!(source[PK], s("T#acme#SRC#src-1"));
        assert_eq!(source_key_event_id(&source).unwrap(), event.id);
        let shards: std::collections::HashSet<u8> = (0..200)
            .map(|_| event_shard(&crate::ids::IdKind::Event.generate()))
            .collect();
        assert_eq!(shards.len(), EVENT_SHARDS as usize, "every shard is used");
    }

    #[test]
    fn deliveries_round_trip_and_sit_in_gsi2_while_open_or_failed() {
        let at = crate::domain::now();
        let mut d = Delivery::new(
            "acme",
            "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "wh_01ARZ3NDEKTSV4RRFFQ69G5FAW",
            "user.created",
            DeliveryStatus::Pending,
            at,
        );
        d.record(
            1,
            Attempt {
                at,
                status_code: Some(503),
                response_time: 12,
                error: Some("HTTP 503".into()),
                response_excerpt: Some("busy".into()),
            },
            DeliveryStatus::Pending,
            Some(at),
        );
        d.record(
            2,
            Attempt {
                at,
                status_code: None,
                response_time: 5000,
                error: Some("timed out".into()),
                response_excerpt: None,
            },
            DeliveryStatus::Pending,
            Some(at),
        );
        let item = delivery_item(&d, 7);
        let shard = delivery_shard(&d.id);
        assert_eq!(item[PK], s(format!("T#acme#DL#{shard}")));
        assert_eq!(
            item[GSI2_PK],
            s(format!(
                "T#acme#WH#wh_01ARZ3NDEKTSV4RRFFQ69G5FAW#OPEN#{shard}"
            ))
        );
        assert_eq!(Delivery::try_from(&item).unwrap(), d);
        d.status = DeliveryStatus::Failed;
        assert_eq!(
            delivery_item(&d, 7)[GSI2_PK],
            s(format!(
                "T#acme#WH#wh_01ARZ3NDEKTSV4RRFFQ69G5FAW#FAILED#{shard}"
            ))
        );
        for done in [DeliveryStatus::Succeeded, DeliveryStatus::Cancelled] {
            d.status = done;
            let closed = delivery_item(&d, 7);
            assert!(!closed.contains_key(GSI2_PK));
            assert_eq!(Delivery::try_from(&closed).unwrap(), d);
        }
    }

    #[test]
    fn a_first_attempt_fits_in_one_write_unit() {
        let at = crate::domain::now();
        let mut d = Delivery::new(
            "tenant-with-a-long-name",
            &crate::ids::IdKind::Event.generate(),
            &crate::ids::IdKind::Webhook.generate(),
            "customer.subscription.updated",
            DeliveryStatus::Pending,
            at,
        );
        d.record(
            1,
            Attempt {
                at,
                status_code: Some(500),
                response_time: 15000,
                error: Some("HTTP 500".into()),
                response_excerpt: Some("x".repeat(256)),
            },
            DeliveryStatus::Pending,
            Some(at),
        );
        let item = delivery_item(&d, 1_900_000_000);
        let size: usize = item
            .iter()
            .map(|(k, v)| {
                k.len()
                    + match v {
                        AttributeValue::S(s) => s.len(),
                        AttributeValue::N(n) => n.len(),
                        _ => 1,
                    }
            })
            .sum();
        assert!(size <= 1024, "{size} bytes");
    }

    #[test]
    fn url_guards_key_on_the_urls_hash() {
        let wh = sample();
        let guard = url_guard_item(&wh);
        assert_eq!(guard[SK], s(url_guard_sk("https://example.com/hooks")));
        assert_ne!(
            url_guard_sk("https://a.example/"),
            url_guard_sk("https://b.example/")
        );
        assert_eq!(guard["webhook_id"], s(wh.id));
    }
}
