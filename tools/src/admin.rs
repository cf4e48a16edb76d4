//! API key management: what `webhooks-admin` and the local stack's dev key use.

use shared::domain::api_key::{ApiKey, Scope, generate_key, record_for_key, validate_tenant_id};
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

fn describe(e: StoreError) -> String {
    match e {
        StoreError::Other(why) if why.contains("ResourceNotFound") => format!(
            "{why}\n(is the table created? for the local stack, start it with `make run` first)"
        ),
        other => other.to_string(),
    }
}

/// What a redrive of one dead-letter queue did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Redriven {
    /// Messages sent back to their queue.
    pub moved: usize,
    /// Messages left where they are: rejected as never processable, with their reasons.
    pub kept: Vec<String>,
}

/// Moves the messages of the dead-letter queue `from` back to the queue `to`, as they were
/// sent. A message rejected as never processable (it carries a `reason`) would only be
/// rejected again: it stays unless `include_rejected`. `progress` hears each batch moved.
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    from: &str,
    to: &str,
    include_rejected: bool,
    progress: impl Fn(usize),
) -> Result<Redriven, String> {
    let error = |e: &dyn std::fmt::Display| format!("redriving {from}: {e}");
    let mut done = Redriven::default();
    let mut held = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(from)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| error(&aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        let mut moved = 0;
        for m in messages {
            let receipt = m.receipt_handle.clone().unwrap_or_default();
            let reason = m
                .message_attributes
                .as_ref()
                .and_then(|a| a.get("reason"))
                .and_then(|r| r.string_value.clone());
            if let (Some(reason), false) = (reason, include_rejected) {
                done.kept.push(reason);
                held.push(receipt);
                continue;
            }
            sqs.send_message()
                .queue_url(to)
                .message_body(m.body.unwrap_or_default())
                .send()
                .await
                .map_err(|e| error(&aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            sqs.delete_message()
                .queue_url(from)
                .receipt_handle(receipt)
                .send()
                .await
                .map_err(|e| error(&aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            moved += 1;
        }
        done.moved += moved;
        if moved > 0 {
            progress(done.moved);
        }
    }
    // What stays is visible again at once, for whoever looks next.
    for receipt in held {
        sqs.change_message_visibility()
            .queue_url(from)
            .receipt_handle(receipt)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|e| error(&aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    }
    Ok(done)
}
