//! OAuth2 clients (the client credentials grant, SPEC §9). A client's secret is shown
//! once, at creation; only its SHA-256 is stored, and a presented secret is compared with
//! it in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;

use super::api_key::{Scope, hash_key, random_bytes};
use crate::ids::IdKind;

/// What is stored about a client: never its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthClient {
    pub client_id: String,
    pub tenant_id: String,
    /// The most a token of this client may carry.
    pub scopes: Vec<Scope>,
    /// Hex SHA-256 of the secret.
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The prefix of every client secret, so a leaked one is recognisable by secret scanners.
pub const CLIENT_SECRET_PREFIX: &str = "whcs_";

impl OAuthClient {
    /// Whether `secret` is this client's, compared in constant time (the hashes are, so
    /// the time taken says nothing about how much of a guess was right).
    pub fn secret_matches(&self, secret: &str) -> bool {
        hash_key(secret)
            .as_bytes()
            .ct_eq(self.secret_hash.as_bytes())
            .into()
    }

    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// A new client for a tenant: its secret (32 bytes from the OS, URL-safe base64) and its
/// record.
pub fn generate_client(tenant_id: &str, scopes: Vec<Scope>) -> (String, OAuthClient) {
    let secret = format!(
        "{CLIENT_SECRET_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    );
    let record = OAuthClient {
        client_id: IdKind::Client.generate(),
        tenant_id: tenant_id.to_string(),
        scopes,
        secret_hash: hash_key(&secret),
        created_at: super::now(),
        revoked_at: None,
    };
    (secret, record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_stored_without_its_secret_and_knows_it_again() {
        let (secret, client) = generate_client("acme", vec![Scope::WebhooksRead]);
        let (other, _) = generate_client("acme", vec![Scope::WebhooksRead]);
        assert_ne!(secret, other);
        assert!(secret.starts_with(CLIENT_SECRET_PREFIX));
        assert!(IdKind::Client.is_valid(&client.client_id));
        assert!(client.client_id.starts_with("cli_"));
        assert!(!format!("{client:?}").contains(&secret));
        assert!(client.secret_matches(&secret));
        assert!(!client.secret_matches(&other));
        assert!(!client.secret_matches(""));
        assert!(!client.secret_matches(&secret[..secret.len() - 1]));
        assert!(client.is_active());
    }
}
