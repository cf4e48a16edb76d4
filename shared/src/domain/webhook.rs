//! Webhooks: their stored form, their status, their signing secret and their API shape.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::api_key::random_bytes;
use super::filter::Filter;
use super::format_time;
use super::headers::{AUTHORIZATION, HeaderList, MASKED};

/// Whether a webhook receives deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookStatus {
    /// Delivers.
    Active,
    /// Deliveries are buffered and sent on unpause.
    Paused,
    /// Nothing is delivered or buffered.
    Disabled,
}

impl WebhookStatus {
    pub const ALL: [WebhookStatus; 3] = [
        WebhookStatus::Active,
        WebhookStatus::Paused,
        WebhookStatus::Disabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookStatus::Active => "active",
            WebhookStatus::Paused => "paused",
            WebhookStatus::Disabled => "disabled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A confidential value of a webhook (a signing secret, a Basic password): in the clear
/// only while the service holds it; at rest always sealed (see `secrets`), so the table
/// never holds it in clear. Neither form ever reaches a log line through Debug.
#[derive(Clone, PartialEq, Eq)]
pub enum Confidential {
    Clear(String),
    /// Sealed text, opaque to the domain.
    Sealed(String),
}

impl std::fmt::Debug for Confidential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Confidential::Clear(_) => f.write_str("Clear(<redacted>)"),
            Confidential::Sealed(text) => write!(f, "Sealed({} bytes)", text.len()),
        }
    }
}

/// HTTP Basic credentials sent with every delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuth {
    pub username: String,
    pub password: Confidential,
}

/// A webhook's confidential values in the clear, as a delivery needs them: the secret, the
/// previous one while its rotation overlap lasts, the Basic credentials, and the custom
/// headers (the `authorization` one opened).
pub struct Credentials {
    pub secret: Secret,
    pub previous: Option<(Secret, DateTime<Utc>)>,
    /// Username and password.
    pub auth: Option<(String, String)>,
    /// Name and value of every custom header.
    pub headers: HeaderList,
}

/// A signing secret: `whsec_` plus the base64 of the key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(..{})", self.last_4())
    }
}

pub const SECRET_PREFIX: &str = "whsec_";

impl Secret {
    /// 32 random bytes, the size Standard Webhooks recommends.
    pub fn generate() -> Self {
        Secret(format!(
            "{SECRET_PREFIX}{}",
            STANDARD.encode(random_bytes::<32>())
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last four characters: enough to tell secrets apart, too few to use.
    pub fn last_4(&self) -> &str {
        let start = self.0.len().saturating_sub(4);
        self.0.get(start..).unwrap_or_default()
    }
}

/// A webhook as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub tenant_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub url: String,
    pub events: Vec<String>,
    pub status: WebhookStatus,
    pub auth: Option<BasicAuth>,
    pub secret: Confidential,
    /// The last four characters of the secret, kept apart to show without opening it.
    pub secret_last_4: String,
    /// The secret before the last rotation, still signing until `previous_expires_at`.
    pub previous_secret: Option<Confidential>,
    pub previous_expires_at: Option<DateTime<Utc>>,
    pub metadata: Map<String, Value>,
    /// Custom headers sent with every delivery, but `authorization`.
    pub headers: HeaderList,
    /// The custom `authorization` header's value: a credential, sealed at rest.
    pub authorization: Option<Confidential>,
    /// At most this many attempts per second, across every instance (`None`: no limit).
    pub rate_limit: Option<u32>,
    /// The content filter events must match to reach it (after the type subscription).
    pub filter: Option<Filter>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_triggered_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    /// When its deliveries started failing without a success since (auto-disable clock).
    pub failing_since: Option<DateTime<Utc>>,
    /// Bumped on every write: an update is conditional on the version it read.
    pub version: u64,
}

impl Webhook {
    /// A new active webhook: no name, credentials or metadata yet, first version.
    pub fn new(tenant_id: &str, url: String, events: Vec<String>, secret: Secret) -> Self {
        let at = super::now();
        Webhook {
            id: crate::ids::IdKind::Webhook.generate(),
            tenant_id: tenant_id.to_string(),
            name: None,
            description: None,
            url,
            events,
            status: WebhookStatus::Active,
            auth: None,
            secret_last_4: secret.last_4().to_string(),
            secret: Confidential::Clear(secret.0),
            previous_secret: None,
            previous_expires_at: None,
            metadata: Map::new(),
            headers: HeaderList::default(),
            authorization: None,
            rate_limit: None,
            filter: None,
            created_at: at,
            updated_at: at,
            last_triggered_at: None,
            disabled_reason: None,
            failing_since: None,
            version: 1,
        }
    }

    /// Checks what no single field can: Basic credentials and an `authorization` header
    /// exclude each other.
    pub fn check(&self) -> super::invalid::Checked<()> {
        if self.auth.is_some() && self.authorization.is_some() {
            return Err(super::headers::conflicts_with_basic_auth());
        }
        Ok(())
    }

    /// Sets a new signing secret (in the clear until it is sealed).
    pub fn set_secret(&mut self, secret: Secret) {
        self.secret_last_4 = secret.last_4().to_string();
        self.secret = Confidential::Clear(secret.0);
    }

    /// The custom headers as the API shows them: the `authorization` value masked (a route
    /// that may show it opens it and puts it in place).
    pub fn headers_json(&self) -> Map<String, Value> {
        let mut out: Map<String, Value> = self
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect();
        if self.authorization.is_some() {
            out.insert(AUTHORIZATION.into(), Value::String(MASKED.into()));
        }
        out
    }

    /// The API's webhook object. The password never appears here: a route that may show it
    /// opens it and adds it.
    pub fn to_json(&self) -> Value {
        let auth = self
            .auth
            .as_ref()
            .map(|a| json!({"type": "basic", "username": a.username}));
        json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "url": self.url,
            "events": self.events,
            "status": self.status.as_str(),
            "auth": auth,
            "secret_last_4": self.secret_last_4,
            "metadata": self.metadata,
            "headers": self.headers_json(),
            "rate_limit": self.rate_limit,
            "filter": self.filter.as_ref().map(Filter::as_json),
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
            "last_triggered_at": self.last_triggered_at.map(format_time),
            "disabled_reason": self.disabled_reason,
        })
    }
}

impl crate::page::Weigh for Webhook {
    /// Its metadata and filter as Lambda sends them (escaped inside the response's body),
    /// plus room for the other fields and a subscription of 100 names.
    fn weight(&self) -> usize {
        crate::json::escaped_json_size(&self.metadata)
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 8)
                .sum::<usize>()
            + self
                .filter
                .as_ref()
                .map_or(0, |f| crate::json::escaped_json_size(f.as_json()))
            + self.events.iter().map(|e| e.len() + 3).sum::<usize>()
            + 4096
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample() -> Webhook {
        let at = crate::domain::parse_time("2026-01-02T03:04:05.678Z").unwrap();
        Webhook {
            id: "wh_01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
            name: Some("Billing Events".into()),
            auth: Some(BasicAuth {
                username: "hello".into(),
                password: Confidential::Clear("s3cret-pw".into()),
            }),
            metadata: json!({"team": "crm"}).as_object().cloned().unwrap(),
            headers: HeaderList(vec![("X-Team".into(), "crm".into())]),
            authorization: Some(Confidential::Clear("Bearer h3ader-t0ken".into())),
            created_at: at,
            updated_at: at,
            ..Webhook::new(
                "acme",
                "https://example.com/hooks".into(),
                vec!["user.created".into(), "data.*".into()],
                Secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".into()),
            )
        }
    }

    #[test]
    fn api_shape_masks_the_secret_and_never_shows_the_password() {
        let wh = sample();
        let out = wh.to_json();
        assert_eq!(out["secret_last_4"], "b7oD");
        assert!(out.get("secret").is_none());
        assert_eq!(out["auth"], json!({"type": "basic", "username": "hello"}));
        assert_eq!(out["created_at"], "2026-01-02T03:04:05.678Z");
        assert_eq!(out["last_triggered_at"], Value::Null);
        assert_eq!(out["status"], "active");
        assert_eq!(out["filter"], Value::Null);
        assert_eq!(
            out["headers"],
            json!({"X-Team": "crm", "Authorization": "********"})
        );
        assert!(!out.to_string().contains("s3cret-pw"));
        assert!(!out.to_string().contains("h3ader-t0ken"));
    }

    #[test]
    fn debug_output_never_carries_secrets_or_passwords() {
        let text = format!("{:?}", sample());
        assert!(!text.contains("s3cret-pw"));
        assert!(!text.contains("h3ader-t0ken"));
        assert!(!text.contains("C2FVsBQIhrscChlQIMV"));
    }

    #[test]
    fn generated_secrets_decode_to_32_bytes() {
        let s = Secret::generate();
        let key = STANDARD
            .decode(s.as_str().strip_prefix(SECRET_PREFIX).unwrap())
            .unwrap();
        assert_eq!(key.len(), 32);
        assert_ne!(s, Secret::generate());
    }
}
