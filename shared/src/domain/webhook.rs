//! Webhooks: their stored form, their status, their signing secret and their API shape.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::api_key::random_bytes;
use super::format_time;

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

/// HTTP Basic credentials sent with every delivery.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    // The password never reaches a log line through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
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
    pub secret: Secret,
    /// The secret before the last rotation, still signing until `previous_expires_at`.
    pub previous_secret: Option<Secret>,
    pub previous_expires_at: Option<DateTime<Utc>>,
    pub metadata: Map<String, Value>,
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
            secret,
            previous_secret: None,
            previous_expires_at: None,
            metadata: Map::new(),
            created_at: at,
            updated_at: at,
            last_triggered_at: None,
            disabled_reason: None,
            failing_since: None,
            version: 1,
        }
    }

    /// The API's webhook object. The password appears only when `show_authentication`.
    pub fn to_json(&self, show_authentication: bool) -> Value {
        let auth = self.auth.as_ref().map(|a| {
            let mut auth = json!({"type": "basic", "username": a.username});
            if show_authentication {
                auth["password"] = json!(a.password);
            }
            auth
        });
        json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "url": self.url,
            "events": self.events,
            "status": self.status.as_str(),
            "auth": auth,
            "secret_last_4": self.secret.last_4(),
            "metadata": self.metadata,
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
            "last_triggered_at": self.last_triggered_at.map(format_time),
            "disabled_reason": self.disabled_reason,
        })
    }
}

impl crate::page::Weigh for Webhook {
    /// Its metadata, plus room for the other fields and a subscription of 100 names.
    fn weight(&self) -> usize {
        crate::domain::validation::json_size(&self.metadata) * 2
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
                password: "s3cret-pw".into(),
            }),
            metadata: json!({"team": "crm"}).as_object().cloned().unwrap(),
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
    fn api_shape_masks_the_secret_and_hides_the_password_unless_asked() {
        let wh = sample();
        let out = wh.to_json(false);
        assert_eq!(out["secret_last_4"], "b7oD");
        assert!(out.get("secret").is_none());
        assert_eq!(out["auth"], json!({"type": "basic", "username": "hello"}));
        assert_eq!(out["created_at"], "2026-01-02T03:04:05.678Z");
        assert_eq!(out["last_triggered_at"], Value::Null);
        assert_eq!(out["status"], "active");
        assert!(!out.to_string().contains("s3cret-pw"));
        assert_eq!(wh.to_json(true)["auth"]["password"], "s3cret-pw");
    }

    #[test]
    fn debug_output_never_carries_secrets_or_passwords() {
        let text = format!("{:?}", sample());
        assert!(!text.contains("s3cret-pw"));
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
