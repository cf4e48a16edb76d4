//! API keys and their scopes. A key is shown once, at creation; only its SHA-256 is stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::ids::IdKind;

/// What a key may do (SPEC §3, Auth).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    WebhooksRead,
    WebhooksWrite,
    EventsRead,
    EventsWrite,
    EventTypesWrite,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
        Scope::EventsRead,
        Scope::EventsWrite,
        Scope::EventTypesWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::EventsRead => "events:read",
            Scope::EventsWrite => "events:write",
            Scope::EventTypesWrite => "event-types:write",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Parses a comma- or space-separated list, refusing unknown names.
    pub fn parse_list(text: &str) -> Result<Vec<Scope>, String> {
        let mut scopes = Vec::new();
        for name in text.split([',', ' ']).filter(|s| !s.is_empty()) {
            let scope = Scope::parse(name).ok_or_else(|| {
                let known: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope {name:?}; known scopes: {}", known.join(", "))
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        scopes.sort();
        Ok(scopes)
    }

    /// The space-separated form kept in storage and in the authorizer's context.
    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What is stored about a key: never the key itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub key_id: String,
    pub tenant_id: String,
    pub scopes: Vec<Scope>,
    /// Hex SHA-256 of the key.
    pub key_hash: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What the authorizer needs of a key: whose it is and what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyGrant {
    pub key_id: String,
    pub tenant_id: String,
    pub scopes: Vec<Scope>,
}

/// The prefix of every key, so a leaked key is recognisable by secret scanners.
pub const KEY_PREFIX: &str = "whk_";

/// A new random key (32 bytes from the OS, URL-safe base64) and its record.
pub fn generate_key(tenant_id: &str, scopes: Vec<Scope>) -> (String, ApiKey) {
    let key = format!(
        "{KEY_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    );
    let record = record_for_key(&key, tenant_id, scopes);
    (key, record)
}

/// The record for a key chosen by the caller (the local stack's `DEV_API_KEY`).
pub fn record_for_key(key: &str, tenant_id: &str, scopes: Vec<Scope>) -> ApiKey {
    ApiKey {
        key_id: IdKind::ApiKey.generate(),
        tenant_id: tenant_id.to_string(),
        scopes,
        key_hash: hash_key(key),
        created_at: super::now(),
        revoked_at: None,
    }
}

/// Hex SHA-256 of a key: what storage knows it by.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}

/// Checks a tenant name given to the admin command: it becomes part of storage keys.
pub fn validate_tenant_id(tenant_id: &str) -> Result<(), String> {
    let ok = !tenant_id.is_empty()
        && tenant_id.len() <= 64
        && tenant_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tenant {tenant_id:?}: use 1-64 characters of A-Z, a-z, 0-9, '-' and '_'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_from_commas_or_spaces_and_refuse_unknown_names() {
        assert_eq!(
            Scope::parse_list("webhooks:write,webhooks:read webhooks:read").unwrap(),
            vec![Scope::WebhooksRead, Scope::WebhooksWrite]
        );
        assert!(
            Scope::parse_list("webhooks:admin")
                .unwrap_err()
                .contains("webhooks:admin")
        );
        assert_eq!(
            Scope::join(&[Scope::EventsRead, Scope::EventTypesWrite]),
            "events:read event-types:write"
        );
    }

    #[test]
    fn generated_keys_are_random_and_stored_only_as_their_hash() {
        let (key, record) = generate_key("acme", vec![Scope::WebhooksRead]);
        let (other, _) = generate_key("acme", vec![Scope::WebhooksRead]);
        assert_ne!(key, other);
        assert!(key.starts_with(KEY_PREFIX));
        assert_eq!(record.key_hash, hash_key(&key));
        assert_eq!(record.key_hash.len(), 64);
        assert!(!format!("{record:?}").contains(&key));
        assert!(record.key_id.starts_with("key_"));
    }

    #[test]
    fn sha256_of_a_known_key() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn tenant_ids_are_restricted_to_safe_characters() {
        assert!(validate_tenant_id("acme-1_a").is_ok());
        for bad in ["", "a#b", "a b", &"x".repeat(65)] {
            assert!(validate_tenant_id(bad).is_err(), "{bad}");
        }
    }
}
