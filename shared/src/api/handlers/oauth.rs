//! `POST /v1/oauth/token`, the OAuth2 token endpoint (client credentials, RFC 6749 §4.4),
//! and `GET /.well-known/jwks.json`, the keys that verify its tokens (RFC 7517).
//!
//! Both are outside the authorizer. The token endpoint answers RFC 6749 §5's shapes, not
//! the API's: 200 `{access_token, token_type, expires_in, scope}`, or 400/401 `{error,
//! error_description}`, always with `Cache-Control: no-store`.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lambda_http::http::{HeaderMap, HeaderValue};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::request::MAX_BODY_BYTES;
use crate::api::{error_response, json_response};
use crate::domain::api_key::Scope;
use crate::domain::oauth_client::OAuthClient;
use crate::ids::IdKind;
use crate::secrets::KeyError;
use crate::state::AppState;
use crate::storage::StoreError;
use crate::tokens::{ACCESS_TOKEN_LIFETIME_SECONDS, Grant};

/// Why a token request is refused (RFC 6749 §5.2), or could not be served now.
#[derive(Debug, PartialEq, Eq)]
pub enum OAuthError {
    InvalidRequest(String),
    /// Unknown client, wrong secret, revoked, or no client authentication: one answer for
    /// all, so a caller learns nothing about which.
    InvalidClient,
    UnsupportedGrantType,
    InvalidScope(String),
    /// Storage or KMS cannot answer now: 503, try again.
    Unavailable,
    ServerError,
}

impl OAuthError {
    fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::Unavailable => "temporarily_unavailable",
            OAuthError::ServerError => "server_error",
        }
    }

    fn status(&self) -> u16 {
        match self {
            OAuthError::InvalidClient => 401,
            OAuthError::Unavailable => 503,
            OAuthError::ServerError => 500,
            _ => 400,
        }
    }

    fn description(&self) -> String {
        match self {
            OAuthError::InvalidRequest(why) | OAuthError::InvalidScope(why) => why.clone(),
            OAuthError::InvalidClient => "client authentication failed".into(),
            OAuthError::UnsupportedGrantType => {
                "the only grant_type supported is client_credentials".into()
            }
            OAuthError::Unavailable => "try again in a few seconds".into(),
            OAuthError::ServerError => "the token could not be issued".into(),
        }
    }

    fn response(&self) -> Response<Body> {
        let body = json!({"error": self.code(), "error_description": self.description()});
        let mut response = token_response(self.status(), &body);
        let headers = response.headers_mut();
        match self {
            OAuthError::InvalidClient => {
                headers.insert(
                    "www-authenticate",
                    HeaderValue::from_static(r#"Basic realm="webhooks""#),
                );
            }
            OAuthError::Unavailable => {
                headers.insert("retry-after", HeaderValue::from_static("2"));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(why) => {
                tracing::warn!(reason = %why, "storage throttled; answering 503");
                OAuthError::Unavailable
            }
            other => {
                tracing::error!(error = %other, "storage error");
                OAuthError::ServerError
            }
        }
    }
}

impl From<KeyError> for OAuthError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Unavailable(why) => {
                tracing::warn!(reason = %why, "the signing key is unavailable; answering 503");
                OAuthError::Unavailable
            }
            other => {
                tracing::error!(error = %other, "signing failed");
                OAuthError::ServerError
            }
        }
    }
}

/// A JSON response that no cache may keep (RFC 6749 §5.1).
fn token_response(status: u16, body: &Value) -> Response<Body> {
    let mut response = json_response(status, body, None);
    let headers = response.headers_mut();
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    headers.insert("pragma", HeaderValue::from_static("no-cache"));
    response
}

/// What a well-formed token request asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct TokenRequest {
    pub client_id: String,
    pub client_secret: String,
    /// The scopes asked for, if the request names any (`None`: all of the client's).
    pub scope: Option<String>,
}

/// Reads a token request: the form body, the grant type and the client's credentials, by
/// HTTP Basic or form fields but not both. Touches nothing.
pub fn read_token_request(headers: &HeaderMap, body: &[u8]) -> Result<TokenRequest, OAuthError> {
    let invalid = |why: &str| OAuthError::InvalidRequest(why.to_string());
    let form_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(invalid(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(invalid("the body is larger than 200 KiB"));
    }
    let mut form: HashMap<String, String> = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(body) {
        // RFC 6749 §3.1: a parameter without a value is as if it were omitted; none may
        // be given twice.
        if value.is_empty() {
            continue;
        }
        if form.insert(name.to_string(), value.into_owned()).is_some() {
            return Err(OAuthError::InvalidRequest(format!(
                "{name} is given more than once"
            )));
        }
    }
    match form.get("grant_type").map(String::as_str) {
        None => return Err(invalid("grant_type is required")),
        Some("client_credentials") => {}
        Some(_) => return Err(OAuthError::UnsupportedGrantType),
    }
    let basic = headers
        .get("authorization")
        .map(|v| basic_credentials(v.to_str().unwrap_or("")))
        .transpose()?;
    let (client_id, client_secret) = match basic {
        Some((id, secret)) => {
            if form.contains_key("client_secret") {
                return Err(invalid(
                    "authenticate with HTTP Basic or with client_id and client_secret, not both",
                ));
            }
            if form.get("client_id").is_some_and(|form_id| *form_id != id) {
                return Err(invalid(
                    "client_id differs from the one in the Authorization header",
                ));
            }
            (id, secret)
        }
        None => match (form.remove("client_id"), form.remove("client_secret")) {
            (Some(id), Some(secret)) => (id, secret),
            _ => return Err(OAuthError::InvalidClient),
        },
    };
    Ok(TokenRequest {
        client_id,
        client_secret,
        scope: form.remove("scope"),
    })
}

/// The client id and secret of an `Authorization: Basic` header (RFC 6749 §2.3.1: each
/// form-encoded, then joined by a colon and base64-encoded). Any other scheme, or a value
/// that does not decode, fails client authentication.
fn basic_credentials(header: &str) -> Result<(String, String), OAuthError> {
    let (scheme, encoded) = header.trim().split_once(' ').unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::InvalidClient);
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(OAuthError::InvalidClient)?;
    let (id, secret) = decoded.split_once(':').ok_or(OAuthError::InvalidClient)?;
    let form_decode = |text: &str| -> String {
        url::form_urlencoded::parse(format!("x={text}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (id, secret) = (form_decode(id), form_decode(secret));
    if id.is_empty() || secret.is_empty() {
        return Err(OAuthError::InvalidClient);
    }
    Ok((id, secret))
}

/// The scopes a token gets: those asked for, each one the client holds, or all of them.
pub fn granted_scopes(client: &OAuthClient, asked: Option<&str>) -> Result<Vec<Scope>, OAuthError> {
    let Some(asked) = asked else {
        return Ok(client.scopes.clone());
    };
    let mut scopes = Vec::new();
    for name in asked.split(' ').filter(|s| !s.is_empty()) {
        let scope = Scope::parse(name)
            .filter(|s| client.scopes.contains(s))
            .ok_or_else(|| {
                OAuthError::InvalidScope(format!(
                    "{name:?} is not a scope of this client (it has: {})",
                    Scope::join(&client.scopes)
                ))
            })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err(OAuthError::InvalidScope("scope names no scope".into()));
    }
    scopes.sort();
    Ok(scopes)
}

/// `POST /v1/oauth/token`.
pub async fn issue_token(state: &AppState, req: Request) -> Response<Body> {
    match token(state, &req).await {
        Ok(body) => token_response(200, &body),
        Err(e) => {
            tracing::info!(error = e.code(), "token refused");
            e.response()
        }
    }
}

async fn token(state: &AppState, req: &Request) -> Result<Value, OAuthError> {
    let request = read_token_request(req.headers(), req.body().as_ref())?;
    if !IdKind::Client.is_valid(&request.client_id) {
        return Err(OAuthError::InvalidClient);
    }
    let client = state
        .store
        .find_client(&request.client_id)
        .await?
        .filter(|c| c.secret_matches(&request.client_secret))
        .ok_or(OAuthError::InvalidClient)?;
    if !client.is_active() {
        tracing::info!(client_id = %client.client_id, "a revoked client asked for a token");
        return Err(OAuthError::InvalidClient);
    }
    let scopes = granted_scopes(&client, request.scope.as_deref())?;
    let grant = Grant {
        tenant_id: client.tenant_id.clone(),
        client_id: client.client_id.clone(),
        scopes,
    };
    let issued = state
        .tokens
        .issue(&grant, ACCESS_TOKEN_LIFETIME_SECONDS)
        .await?;
    tracing::info!(
        client_id = %grant.client_id,
        tenant_id = %grant.tenant_id,
        jti = %issued.claims.jti,
        scope = %issued.claims.scope,
        "access token issued"
    );
    Ok(json!({
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_LIFETIME_SECONDS,
        "scope": issued.claims.scope,
    }))
}

/// `GET /.well-known/jwks.json`: cacheable for five minutes.
pub async fn get_jwks(state: &AppState, _req: Request) -> Response<Body> {
    match state.tokens.jwks().await {
        Ok(jwks) => {
            let mut response = json_response(200, &jwks, None);
            response.headers_mut().insert(
                "cache-control",
                HeaderValue::from_static("public, max-age=300"),
            );
            response
        }
        Err(e) => error_response(&ApiError::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::oauth_client::generate_client;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                lambda_http::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn credentials_come_from_basic_or_the_form_but_not_both() {
        let by_form = read_token_request(
            &headers(&[FORM]),
            b"grant_type=client_credentials&client_id=cli_1&client_secret=s%2B1&scope=events%3Aread",
        )
        .unwrap();
        assert_eq!(
            by_form,
            TokenRequest {
                client_id: "cli_1".into(),
                client_secret: "s+1".into(),
                scope: Some("events:read".into())
            }
        );
        let auth = basic("cli_1", "s%2B1");
        let by_basic = read_token_request(
            &headers(&[FORM, ("authorization", &auth)]),
            b"grant_type=client_credentials&scope=events%3Aread",
        )
        .unwrap();
        assert_eq!(by_basic, by_form);
        // The same client id in the form beside Basic is harmless; a secret is not.
        assert!(
            read_token_request(
                &headers(&[FORM, ("authorization", &auth)]),
                b"grant_type=client_credentials&client_id=cli_1",
            )
            .is_ok()
        );
        for body in [
            &b"grant_type=client_credentials&client_secret=s"[..],
            b"grant_type=client_credentials&client_id=cli_2",
        ] {
            assert!(matches!(
                read_token_request(&headers(&[FORM, ("authorization", &auth)]), body),
                Err(OAuthError::InvalidRequest(_))
            ));
        }
    }

    #[test]
    fn malformed_requests_are_each_refused_with_their_rfc_6749_error() {
        let auth = basic("cli_1", "s");
        // (headers, body, the error)
        type Case<'a> = (Vec<(&'a str, &'a str)>, &'a [u8], &'a str);
        let cases: Vec<Case> = vec![
            (vec![], b"grant_type=client_credentials", "invalid_request"),
            (
                vec![("content-type", "application/json")],
                b"{\"grant_type\":\"client_credentials\"}",
                "invalid_request",
            ),
            (vec![FORM], b"client_id=a&client_secret=b", "invalid_request"),
            (
                vec![FORM],
                b"grant_type=client_credentials&grant_type=client_credentials&client_id=a&client_secret=b",
                "invalid_request",
            ),
            (vec![FORM], b"grant_type=password&client_id=a&client_secret=b", "unsupported_grant_type"),
            (vec![FORM], b"grant_type=client_credentials", "invalid_client"),
            (vec![FORM], b"grant_type=client_credentials&client_id=a", "invalid_client"),
            (vec![FORM, ("authorization", "Bearer x")], b"grant_type=client_credentials", "invalid_client"),
            (vec![FORM, ("authorization", "Basic !!!")], b"grant_type=client_credentials", "invalid_client"),
            (
                vec![FORM, ("authorization", "Basic bm9jb2xvbg==")],
                b"grant_type=client_credentials",
                "invalid_client",
            ),
            (vec![FORM, ("authorization", &auth)], b"\xff\xfe=\x00", "invalid_request"),
        ];
        for (pairs, body, code) in cases {
            let error = read_token_request(&headers(&pairs), body).unwrap_err();
            assert_eq!(
                error.code(),
                code,
                "{pairs:?} {:?}",
                String::from_utf8_lossy(body)
            );
            let response = error.response();
            assert_eq!(response.headers()["cache-control"], "no-store");
            let json: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
            assert_eq!(json["error"], code);
            assert_eq!(
                response.headers().contains_key("www-authenticate"),
                code == "invalid_client"
            );
            assert_eq!(
                response.status(),
                if code == "invalid_client" { 401 } else { 400 }
            );
        }
        let huge = vec![b'a'; MAX_BODY_BYTES + 1];
        assert!(matches!(
            read_token_request(&headers(&[FORM]), &huge),
            Err(OAuthError::InvalidRequest(_))
        ));
    }

    #[test]
    fn a_scope_narrows_within_the_clients_and_no_further() {
        let (_, client) = generate_client("acme", vec![Scope::WebhooksRead, Scope::EventsWrite]);
        assert_eq!(granted_scopes(&client, None).unwrap(), client.scopes);
        assert_eq!(
            granted_scopes(&client, Some("events:write  events:write")).unwrap(),
            vec![Scope::EventsWrite]
        );
        for asked in [
            "webhooks:write",
            "admin",
            "events:write webhooks:write",
            " ",
        ] {
            assert_eq!(
                granted_scopes(&client, Some(asked)).unwrap_err().code(),
                "invalid_scope",
                "{asked:?}"
            );
        }
    }
}
