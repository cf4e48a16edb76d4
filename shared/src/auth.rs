//! The Lambda authorizer's logic: a bearer key to its tenant, key id and scopes.
//!
//! The authorizer always answers `isAuthorized: true` and puts what it found in the context:
//! the tenant, key id and scopes for a valid key, nothing for a missing or unknown one. The
//! route then answers 401 in the API's error shape (API Gateway's own denial is a bare 403,
//! which the spec does not allow). API Gateway caches the answer per Authorization header.
//!
//! When storage cannot be read, the authorizer fails soft: its context says so
//! ([`CONTEXT_DEFERRED`]) and the route checks the key itself, answering 503 `UNAVAILABLE`
//! with `Retry-After` while storage is still down. A cached answer is therefore never a
//! denial of a valid key, and never a bare 500.

use std::collections::HashMap;

use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use serde_json::Value;

use crate::api::request::{CONTEXT_DEFERRED, CONTEXT_KEY_ID, CONTEXT_SCOPES, CONTEXT_TENANT_ID};
use crate::domain::api_key::{Scope, hash_key};
use crate::storage::{KeyStore, StoreResult};

/// The key in an `Authorization: Bearer <key>` header.
pub fn bearer_key(header: Option<&str>) -> Option<&str> {
    let (scheme, key) = header?.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

/// The authorizer context for an Authorization header: the key's grant, or empty.
pub async fn authorize(
    store: &dyn KeyStore,
    authorization: Option<&str>,
) -> StoreResult<HashMap<String, Value>> {
    let Some(key) = bearer_key(authorization) else {
        return Ok(HashMap::new());
    };
    let Some(grant) = store.find_key_grant(&hash_key(key)).await? else {
        tracing::info!("unknown API key");
        return Ok(HashMap::new());
    };
    tracing::info!(key_id = %grant.key_id, tenant_id = %grant.tenant_id, "API key accepted");
    Ok(HashMap::from([
        (CONTEXT_TENANT_ID.to_string(), Value::from(grant.tenant_id)),
        (CONTEXT_KEY_ID.to_string(), Value::from(grant.key_id)),
        (
            CONTEXT_SCOPES.to_string(),
            Value::from(Scope::join(&grant.scopes)),
        ),
    ]))
}

/// The authorizer's context for an Authorization header: the key's grant, nothing for no
/// valid key, or, when storage fails, a context that defers the check to the route.
pub async fn authorizer_context(
    store: &dyn KeyStore,
    authorization: Option<&str>,
) -> HashMap<String, Value> {
    match authorize(store, authorization).await {
        Ok(context) => context,
        Err(e) => {
            tracing::warn!(error = %e, "authorizer: storage unavailable; the route checks the key");
            HashMap::from([(CONTEXT_DEFERRED.to_string(), Value::from(true))])
        }
    }
}

/// Answers an API Gateway (HTTP API, payload 2.0, simple responses) authorizer request.
pub async fn handle_authorizer_request(
    store: &dyn KeyStore,
    request: ApiGatewayV2CustomAuthorizerV2Request,
) -> ApiGatewayV2CustomAuthorizerSimpleResponse {
    let header = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let context = authorizer_context(store, header).await;
    let mut response = ApiGatewayV2CustomAuthorizerSimpleResponse::default();
    response.is_authorized = true;
    response.context = Value::Object(context.into_iter().collect());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn storage_trouble_defers_the_check_to_the_route_instead_of_failing() {
        use crate::domain::api_key::{Scope, generate_key};
        use crate::storage::memory::MemoryStore;
        let store = MemoryStore::new();
        let (key, record) = generate_key("acme", vec![Scope::WebhooksRead]);
        store.put_api_key(&record).await.unwrap();
        let header = format!("Bearer {key}");
        let ok = authorizer_context(&store, Some(&header)).await;
        assert_eq!(ok[CONTEXT_TENANT_ID], "acme");
        store.fail_next(1);
        let deferred = authorizer_context(&store, Some(&header)).await;
        assert_eq!(deferred.get(CONTEXT_DEFERRED), Some(&Value::from(true)));
        assert!(
            !deferred.contains_key(CONTEXT_TENANT_ID),
            "no grant, and no denial"
        );
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
