//! `POST /v1/portal-sessions` (SPEC §3, §10): a link that signs a browser into the tenant
//! portal until it expires.
//!
//! A session is an access token of the OAuth2 kind (same signer, issuer and audience), so
//! the authorizer accepts it on every route with the session's scopes and the portal is a
//! plain client of the API. Its subject is a fresh `ps_` id. The link carries the token
//! in its fragment (`/portal#session=<token>`): browsers never send a fragment to a
//! server, so it reaches no log, and the portal takes it out of the address bar at once.

use serde_json::json;

use crate::api::Reply;
use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::request::Call;
use crate::domain::api_key::Scope;
use crate::domain::format_time;
use crate::ids::IdKind;
use crate::secrets::KeyError;
use crate::state::AppState;
use crate::tokens::{Grant, Issued, Tokens};

pub const MIN_SESSION_SECONDS: i64 = 60;
pub const MAX_SESSION_SECONDS: i64 = 86_400;
pub const DEFAULT_SESSION_SECONDS: i64 = 3_600;

/// The scopes of a session (of those, the ones its opener holds): read-only sees
/// everything, otherwise it may also change webhooks and send, retry, replay and recover
/// deliveries.
pub fn session_scopes(read_only: bool) -> Vec<Scope> {
    if read_only {
        vec![Scope::WebhooksRead, Scope::EventsRead]
    } else {
        vec![
            Scope::WebhooksRead,
            Scope::WebhooksWrite,
            Scope::EventsRead,
            Scope::EventsWrite,
        ]
    }
}

/// A session's token: a fresh `ps_` subject with `scopes`, for `lifetime` seconds.
pub async fn open_session(
    tokens: &Tokens,
    tenant_id: &str,
    scopes: Vec<Scope>,
    lifetime_seconds: i64,
) -> Result<Issued, KeyError> {
    let grant = Grant {
        tenant_id: tenant_id.to_string(),
        client_id: IdKind::PortalSession.generate(),
        scopes,
    };
    tokens.issue(&grant, lifetime_seconds).await
}

/// The link that opens the portal at `portal` with a session's token (in the fragment,
/// which browsers never send).
pub fn session_url(portal: &str, token: &str) -> String {
    format!("{portal}#session={token}")
}

pub async fn create_portal_session(state: &AppState, call: Call) -> ApiResult<Reply> {
    if crate::ids::is_portal_session(&call.auth.key_id) {
        // Otherwise a session link could renew itself for ever.
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "a portal session cannot open portal sessions; use an API key or an OAuth2 token",
        ));
    }
    let mut body = call.optional_body()?;
    let expires_in = match body.take("expires_in") {
        None => DEFAULT_SESSION_SECONDS,
        Some(value) => value
            .as_i64()
            .filter(|s| (MIN_SESSION_SECONDS..=MAX_SESSION_SECONDS).contains(s))
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "expires_in",
                    format!(
                        "expires_in must be a whole number of seconds from {MIN_SESSION_SECONDS} to {MAX_SESSION_SECONDS}"
                    ),
                )
            })?,
    };
    let read_only = body.take_bool("read_only")?.unwrap_or(false);
    body.finish("")?;
    let portal = portal_address(state, &call)?;
    // Never more than the caller holds: a key without events:write opens no session
    // that could publish, retry or replay...
    let scopes: Vec<Scope> = session_scopes(read_only)
        .into_iter()
        .filter(|s| call.auth.has(*s))
        .collect();
    if scopes.is_empty() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the caller holds none of a read-only session's scopes (webhooks:read, events:read)",
        ));
    }
    // ...nor for longer: a session opened with an access token ends when the token does.
    let lifetime = match call.auth.expires_at {
        Some(exp) => expires_in.min(exp - chrono::Utc::now().timestamp()).max(1),
        None => expires_in,
    };
    let issued = open_session(&state.tokens, call.tenant(), scopes, lifetime).await?;
    let expires_at =
        chrono::DateTime::from_timestamp(issued.claims.exp, 0).ok_or_else(ApiError::internal)?;
    tracing::info!(
        session_id = %issued.claims.sub,
        tenant_id = %issued.claims.tenant_id,
        opened_by = %call.auth.key_id,
        read_only,
        lifetime,
        "portal session opened"
    );
    Ok(Reply::created(json!({
        "url": session_url(&portal, &issued.token),
        "token": issued.token,
        "expires_at": format_time(expires_at),
        "read_only": read_only,
        "scopes": issued.claims.scope.split(' ').collect::<Vec<_>>(),
    }))
    .no_store())
}

/// The portal's address: `PORTAL_URL`, else the address this request came to (API
/// Gateway's `Host` and `X-Forwarded-Proto`, and the stage unless it is `$default`) plus
/// `/portal`.
fn portal_address(state: &AppState, call: &Call) -> ApiResult<String> {
    if let Some(url) = &state.config.portal_url {
        return Ok(url.clone());
    }
    let header = |name: &str| {
        call.req
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let host = header("host")
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .ok_or_else(|| {
            ApiError::invalid_request(
                "the request's Host header cannot make a portal link (the deployment can set PORTAL_URL)",
            )
        })?;
    let scheme = match header("x-forwarded-proto") {
        Some("http") => "http",
        _ => "https",
    };
    let base = crate::portal_files::base_path(crate::portal_files::stage(&call.req));
    Ok(format!("{scheme}://{host}{}", base.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_sessions_read_and_the_others_also_write() {
        assert_eq!(
            Scope::join(&session_scopes(true)),
            "webhooks:read events:read"
        );
        let all = session_scopes(false);
        for scope in [
            Scope::WebhooksRead,
            Scope::WebhooksWrite,
            Scope::EventsRead,
            Scope::EventsWrite,
        ] {
            assert!(all.contains(&scope));
        }
        assert!(!all.contains(&Scope::EventTypesWrite));
    }

    #[test]
    fn sessions_are_known_by_their_id() {
        assert!(crate::ids::is_portal_session(
            &IdKind::PortalSession.generate()
        ));
        assert!(!crate::ids::is_portal_session(&IdKind::Client.generate()));
        assert!(!crate::ids::is_portal_session("key_01J"));
    }
}
