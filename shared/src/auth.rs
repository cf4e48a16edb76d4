//! The Lambda authorizer's logic: a bearer credential (an API key or an OAuth2 access
//! token) to its tenant, key or client id, and scopes.
//!
//! The authorizer always answers `isAuthorized: true` and puts what it found in the context:
//! the tenant, key id and scopes for a valid credential, nothing for a missing or unknown one.
//! The route then answers 401 in the API's error shape (API Gateway's own denial is a bare
//! 403, which the spec does not allow). API Gateway caches the answer per Authorization
//! header, so a token's context also carries its expiry, which the route checks itself.
//!
//! An API key is looked up by its SHA-256 (one read); an access token is verified offline
//! against the signing key's public half, read from KMS once per process (see `tokens`).
//! When storage or the public key cannot be read, the authorizer fails soft: its context
//! says so ([`AuthorizerContext::deferred`]) and the route checks the credential itself, answering 503
//! `UNAVAILABLE` with `Retry-After` while it still cannot. A cached answer is therefore
//! never a denial of a valid credential, and never a bare 500.

use std::collections::HashMap;

use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::domain::api_key::{Scope, hash_key};
use crate::secrets::KeyError;
use crate::storage::{KeyStore, StoreError};
use crate::tokens::{Tokens, VerifyError, looks_like_token};

/// The key in an `Authorization: Bearer <key>` header.
pub fn bearer_key(header: Option<&str>) -> Option<&str> {
    let (scheme, key) = header?.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

/// Why a credential could not be checked now (never a verdict on the credential).
#[derive(Debug, thiserror::Error)]
pub enum Unchecked {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// What the authorizer hands every route, as API Gateway passes it on (string and number
/// values): the grant it found; nothing, for no valid credential; or that it could not
/// check the credential now. Written by the authorizer, read back by the routes
/// (`api::request::AuthContext`), in this one shape.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizerContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The API key's id, or the OAuth2 client's (or portal session's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
    /// An access token's expiry (Unix seconds): API Gateway may cache the authorizer's
    /// answer past it, so the route checks it too. A number, or its text should a gateway
    /// pass context values as strings.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "number_or_text"
    )]
    pub expires_at: Option<i64>,
    /// Storage or the public key could not be read: the route checks the credential itself.
    #[serde(
        default,
        rename = "auth_deferred",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub deferred: bool,
}

impl AuthorizerContext {
    fn grant(tenant_id: String, key_id: String, scopes: String) -> Self {
        AuthorizerContext {
            tenant_id: Some(tenant_id),
            key_id: Some(key_id),
            scopes: Some(scopes),
            ..Self::default()
        }
    }

    fn deferred() -> Self {
        AuthorizerContext {
            deferred: true,
            ..Self::default()
        }
    }

    /// Whether it names no caller (and defers nothing).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Reads the context a route was handed. What cannot be read (an expiry that is not a
    /// number, say) names no caller.
    pub fn from_fields(fields: &HashMap<String, Value>) -> Self {
        let object = Value::Object(fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        serde_json::from_value(object).unwrap_or_default()
    }

    /// As API Gateway's simple response carries it.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| Value::Object(Default::default()))
    }
}

fn number_or_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => text.parse().map(Some).map_err(serde::de::Error::custom),
        Some(other) => other
            .as_i64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("an expiry is a whole number")),
    }
}

/// The authorizer context for an Authorization header: the credential's grant, or empty.
pub async fn authorize(
    store: &dyn KeyStore,
    tokens: &Tokens,
    authorization: Option<&str>,
) -> Result<AuthorizerContext, Unchecked> {
    let Some(credential) = bearer_key(authorization) else {
        return Ok(AuthorizerContext::default());
    };
    if looks_like_token(credential) {
        return match tokens.verify(credential).await {
            Ok(claims) => {
                tracing::debug!(client_id = %claims.client_id, tenant_id = %claims.tenant_id, "access token accepted");
                let mut context =
                    AuthorizerContext::grant(claims.tenant_id, claims.client_id, claims.scope);
                context.expires_at = Some(claims.exp);
                Ok(context)
            }
            Err(VerifyError::Rejected(why)) => {
                tracing::info!(reason = %why, "access token rejected");
                Ok(AuthorizerContext::default())
            }
            Err(VerifyError::Keys(e)) => Err(e.into()),
        };
    }
    let Some(grant) = store.find_key_grant(&hash_key(credential)).await? else {
        tracing::info!("unknown API key");
        return Ok(AuthorizerContext::default());
    };
    tracing::debug!(key_id = %grant.key_id, tenant_id = %grant.tenant_id, "API key accepted");
    Ok(AuthorizerContext::grant(
        grant.tenant_id,
        grant.key_id,
        Scope::join(&grant.scopes),
    ))
}

/// The authorizer's context for an Authorization header: the credential's grant, nothing
/// for no valid one, or, when storage or the public key cannot be read, a context that
/// defers the check to the route.
pub async fn authorizer_context(
    store: &dyn KeyStore,
    tokens: &Tokens,
    authorization: Option<&str>,
) -> AuthorizerContext {
    match authorize(store, tokens, authorization).await {
        Ok(context) => context,
        Err(e) => {
            tracing::warn!(error = %e, "authorizer: cannot check the credential now; the route checks it");
            AuthorizerContext::deferred()
        }
    }
}

/// Answers an API Gateway (HTTP API, payload 2.0, simple responses) authorizer request.
pub async fn handle_authorizer_request(
    store: &dyn KeyStore,
    tokens: &Tokens,
    request: ApiGatewayV2CustomAuthorizerV2Request,
) -> ApiGatewayV2CustomAuthorizerSimpleResponse {
    let header = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let context = authorizer_context(store, tokens, header).await;
    let mut response = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
    response.is_authorized = true;
    response.context = context.to_value();
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::{Grant, MemorySigner, TokenSigner};

    fn no_tokens() -> Tokens {
        Tokens::new(TokenSigner::Unset, "urn:test", "urn:test:api")
    }

    #[tokio::test]
    async fn a_token_maps_to_its_tenant_client_and_scopes_with_its_expiry_and_no_read() {
        use crate::storage::memory::MemoryStore;
        let store = MemoryStore::new();
        let tokens = Tokens::new(
            TokenSigner::Memory(MemorySigner::random()),
            "urn:test",
            "urn:test:api",
        );
        let issued = tokens
            .issue(
                &Grant {
                    tenant_id: "acme".into(),
                    client_id: "cli_01J0000000000000000000000A".into(),
                    scopes: vec![Scope::EventsRead],
                },
                60,
            )
            .await
            .unwrap();
        // Storage is down, and it does not matter: a token needs no read.
        store.fail_next(10);
        let header = format!("Bearer {}", issued.token);
        let context = authorizer_context(&store, &tokens, Some(&header)).await;
        assert_eq!(context.tenant_id.as_deref(), Some("acme"));
        assert_eq!(
            context.key_id.as_deref(),
            Some("cli_01J0000000000000000000000A")
        );
        assert_eq!(context.scopes.as_deref(), Some("events:read"));
        assert_eq!(context.expires_at, Some(issued.claims.exp));
        // As API Gateway passes it on, and back.
        let value = context.to_value();
        assert_eq!(value["tenant_id"], "acme");
        assert_eq!(value["expires_at"], issued.claims.exp);
        assert!(value.get("auth_deferred").is_none());
        let fields: HashMap<String, Value> = serde_json::from_value(value).unwrap();
        assert_eq!(AuthorizerContext::from_fields(&fields), context);
        let mut tampered = issued.token.clone();
        tampered.pop();
        tampered.push(if issued.token.ends_with('A') {
            'B'
        } else {
            'A'
        });
        let header = format!("Bearer {tampered}");
        assert!(
            authorizer_context(&store, &tokens, Some(&header))
                .await
                .is_empty()
        );
        // Without the public key, a token's check is deferred, never denied.
        let header = format!("Bearer {}", issued.token);
        let deferred = authorizer_context(&store, &no_tokens(), Some(&header)).await;
        assert!(deferred.deferred);
        assert_eq!(deferred.to_value()["auth_deferred"], true);
    }

    #[tokio::test]
    async fn storage_trouble_defers_the_check_to_the_route_instead_of_failing() {
        use crate::domain::api_key::{Scope, generate_key};
        use crate::storage::memory::MemoryStore;
        let store = MemoryStore::new();
        let tokens = no_tokens();
        let (key, record) = generate_key("acme", vec![Scope::WebhooksRead]);
        store.put_api_key(&record).await.unwrap();
        let header = format!("Bearer {key}");
        let ok = authorizer_context(&store, &tokens, Some(&header)).await;
        assert_eq!(ok.tenant_id.as_deref(), Some("acme"));
        store.fail_next(1);
        let deferred = authorizer_context(&store, &tokens, Some(&header)).await;
        assert!(deferred.deferred);
        assert_eq!(deferred.to_value()["auth_deferred"], true);
        assert_eq!(deferred.tenant_id, None, "no grant, and no denial");
    }

    #[test]
    fn bearer_keys_are_read_case_insensitively_and_nothing_else_is() {
        assert_eq!(bearer_key(Some("Bearer whk_abc")), Some("whk_abc"));
        assert_eq!(bearer_key(Some("bearer   whk_abc ")), Some("whk_abc"));
        assert_eq!(bearer_key(Some("Basic dXNlcjpwdw==")), None);
        assert_eq!(bearer_key(Some("Bearer")), None);
        assert_eq!(bearer_key(Some("Bearer ")), None);
        assert_eq!(bearer_key(None), None);
    }
}
