//! `GET /v1/me`: who the calling key belongs to.

use serde_json::json;

use crate::api::Reply;
use crate::api::error::ApiResult;
use crate::api::request::Call;
use crate::state::AppState;

pub async fn get_me(_state: &AppState, call: Call) -> ApiResult<Reply> {
    let scopes: Vec<&str> = call.auth.scopes.iter().map(|s| s.as_str()).collect();
    Ok(Reply::ok(json!({
        "tenant_id": call.auth.tenant_id,
        "key_id": call.auth.key_id,
        "scopes": scopes,
    })))
}
