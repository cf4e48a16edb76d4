//! API key and OAuth2 client management: what `webhooks-admin` and the local stack's dev
//! key use.

use shared::domain::api_key::{ApiKey, Scope, generate_key, record_for_key, validate_tenant_id};
use shared::domain::oauth_client::{OAuthClient, generate_client};
use shared::storage::{Store, StoreError};

/// Creates a key for a tenant; returns the key (shown once) and its record.
pub async fn create_key(
    store: &dyn Store,
    tenant_id: &str,
    scopes: Vec<Scope>,
) -> Result<(String, ApiKey), String> {
    validate_tenant_id(tenant_id)?;
    if scopes.is_empty() {
        return Err("a key needs at least one scope".into());
    }
    let (key, record) = generate_key(tenant_id, scopes);
    store.put_api_key(&record).await.map_err(describe)?;
    Ok((key, record))
}

/// Makes sure `key` works for `tenant_id` with every scope (the local dev key). A key that
/// is already stored is left as it is.
pub async fn ensure_key(store: &dyn Store, key: &str, tenant_id: &str) -> Result<(), String> {
    let record = record_for_key(key, tenant_id, Scope::ALL.to_vec());
    match store
        .find_key_grant(&record.key_hash)
        .await
        .map_err(describe)?
    {
        Some(grant) if grant.tenant_id == tenant_id => Ok(()),
        Some(_) => Err("DEV_API_KEY already belongs to another tenant".into()),
        None => store.put_api_key(&record).await.map_err(describe),
    }
}

pub async fn list_keys(store: &dyn Store, tenant_id: &str) -> Result<Vec<ApiKey>, String> {
    validate_tenant_id(tenant_id)?;
    store.list_api_keys(tenant_id).await.map_err(describe)
}

/// Revokes a key by id; an error if no key has that id.
pub async fn revoke_key(store: &dyn Store, key_id: &str) -> Result<ApiKey, String> {
    store
        .revoke_api_key(key_id)
        .await
        .map_err(describe)?
        .ok_or_else(|| format!("no key has the id {key_id:?}"))
}

/// Creates an OAuth2 client for a tenant; returns its secret (shown once) and its record.
pub async fn create_client(
    store: &dyn Store,
    tenant_id: &str,
    scopes: Vec<Scope>,
) -> Result<(String, OAuthClient), String> {
    validate_tenant_id(tenant_id)?;
    if scopes.is_empty() {
        return Err("a client needs at least one scope".into());
    }
    let (secret, client) = generate_client(tenant_id, scopes);
    store.put_client(&client).await.map_err(describe)?;
    Ok((secret, client))
}

pub async fn list_clients(store: &dyn Store, tenant_id: &str) -> Result<Vec<OAuthClient>, String> {
    validate_tenant_id(tenant_id)?;
    store.list_clients(tenant_id).await.map_err(describe)
}

/// Revokes a client by id; an error if no client has that id.
pub async fn revoke_client(store: &dyn Store, client_id: &str) -> Result<OAuthClient, String> {
    store
        .revoke_client(client_id)
        .await
        .map_err(describe)?
        .ok_or_else(|| format!("no client has the id {client_id:?}"))
}

fn describe(e: StoreError) -> String {
    match e {
        StoreError::Other(why) if why.contains("ResourceNotFound") => format!(
            "{why}\n(is the table created? for the local stack, start it with `make run` first)"
        ),
        other => other.to_string(),
    }
}
