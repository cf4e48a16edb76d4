//! OAuth2 client credentials end to end: a client made by `webhooks-admin`, tokens from
//! `POST /v1/oauth/token` (signed by the emulator's KMS key), the API called with them
//! through the authorizer, RFC 6749's refusals, forged and expired tokens, revocation, and
//! the token checked by an independent JOSE library against the published JWKS.

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::utils::{Client, Stack, eventually, remember_secret};

/// Runs `webhooks-admin --local` against the stack's table, which must succeed; its stdout.
fn admin(stack: &Stack, args: &[&str]) -> String {
    let output = crate::commands::admin(stack, args);
    assert!(
        output.status.success(),
        "webhooks-admin {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A client made with `webhooks-admin create-client`: its id and secret.
pub(crate) fn create_client(stack: &Stack, tenant: &str, scopes: &str) -> (String, String) {
    let text = admin(
        stack,
        &["create-client", "--tenant", tenant, "--scopes", scopes],
    );
    let client_id = text
        .lines()
        .find_map(|l| l.strip_prefix("client_id: "))
        .unwrap_or_else(|| panic!("no client_id in {text}"))
        .to_string();
    let secret = text.lines().last().unwrap().to_string();
    assert!(client_id.starts_with("cli_"), "{text}");
    assert!(
        secret.starts_with("whcs_"),
        "the secret is the last line: {text}"
    );
    remember_secret(&secret);
    (client_id, secret)
}

/// What the token endpoint answered.
pub(crate) struct TokenReply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl TokenReply {
    #[track_caller]
    pub(crate) fn token(&self) -> String {
        assert_eq!(self.status, 200, "{}", self.body);
        let token = self.body["access_token"].as_str().unwrap().to_string();
        remember_secret(&token);
        token
    }

    #[track_caller]
    fn assert_error(&self, status: u16, error: &str) {
        assert_eq!(
            (self.status, self.body["error"].as_str().unwrap_or("")),
            (status, error),
            "{}",
            self.body
        );
        assert_eq!(self.headers["cache-control"], "no-store");
    }
}

/// An access token of a new client of `tenant` holding `scopes` (a comma list).
pub(crate) async fn access_token(stack: &Stack, tenant: &str, scopes: &str) -> String {
    let (client_id, secret) = create_client(stack, tenant, scopes);
    token_request(stack, Some((&client_id, &secret)), &[GRANT], FORM)
        .await
        .token()
}

/// Posts a form to the token endpoint, with HTTP Basic credentials if given.
pub(crate) async fn token_request(
    stack: &Stack,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
    content_type: &str,
) -> TokenReply {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/oauth/token", stack.url))
        .header("content-type", content_type)
        .body(body);
    if let Some((id, secret)) = basic {
        request = request.header(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
        );
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap();
    TokenReply {
        status,
        headers,
        body,
    }
}

pub(crate) const FORM: &str = "application/x-www-form-urlencoded";
pub(crate) const GRANT: (&str, &str) = ("grant_type", "client_credentials");

/// The published key set, fetched without credentials.
async fn jwks(stack: &Stack) -> Value {
    let response = reqwest::get(format!("{}/.well-known/jwks.json", stack.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Verifies `token` with joserfc (Python), an independent JOSE implementation, against
/// `jwks`, requiring the issuer, audience and expiry; returns its header and claims.
fn verify_independently(jwks: &Value, token: &str, issuer: &str, audience: &str) -> Value {
    const SCRIPT: &str = r#"
import json, sys
from joserfc import jwt
from joserfc.jwk import KeySet
jwks, token, issuer, audience = sys.argv[1:5]
keys = KeySet.import_key_set(json.loads(jwks))
decoded = jwt.decode(token, keys, algorithms=["ES256"])
jwt.JWTClaimsRegistry(
    iss={"essential": True, "value": issuer},
    aud={"essential": True, "value": audience},
    exp={"essential": True},
    sub={"essential": True},
).validate(decoded.claims)
print(json.dumps({"header": decoded.header, "claims": decoded.claims}))
"#;
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let output = Command::new(&python)
        .args(["-c", SCRIPT, &jwks.to_string(), token, issuer, audience])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (make test installs it)", python.display()));
    assert!(
        output.status.success(),
        "joserfc refused the token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A token the stack's own KMS key signs, with `claims` changed as given: what an attacker
/// cannot make, to show what the authorizer does with each defect on its own.
async fn signed_with(stack: &Stack, header: Value, claims: Value) -> String {
    stack.state.tokens.sign(&header, &claims).await.unwrap()
}

/// `token` signed again by the stack's own key with one claim changed.
pub(crate) async fn resigned(stack: &Stack, token: &str, name: &str, value: Value) -> String {
    signed_with(stack, part_of(token, 0), claims_with(token, name, value)).await
}

/// `token` with one claim changed and its signature kept: what tampering makes.
pub(crate) fn tampered(token: &str, name: &str, value: Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let claims = URL_SAFE_NO_PAD.encode(claims_with(token, name, value).to_string());
    format!("{}.{claims}.{}", parts[0], parts[2])
}

fn claims_with(token: &str, name: &str, value: Value) -> Value {
    let mut claims = part_of(token, 1);
    claims[name] = value;
    claims
}

/// One of a token's JSON parts: 0 the header, 1 the claims.
pub(crate) fn part_of(token: &str, n: usize) -> Value {
    let part = token.split('.').nth(n).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn bearer(stack: &Stack, tenant: &str, token: &str) -> Client {
    stack.client(tenant, Some(token.to_string()))
}

#[tokio::test]
async fn a_client_gets_tokens_by_basic_or_form_and_calls_the_api_with_their_scopes() {
    let stack = Stack::start().await;
    let tenant = format!("oauth-{}", ulid::Ulid::new().to_string().to_lowercase());
    let (client_id, secret) = create_client(
        &stack,
        &tenant,
        "webhooks:read,webhooks:write,events:read,event-types:write",
    );
    // Listed through an eventually consistent index: the new client shows within moments.
    let listing = eventually(
        Duration::from_secs(5),
        || admin(&stack, &["list-clients", "--tenant", &tenant]),
        |out| out.contains(&client_id),
    );
    assert!(
        listing.contains(&client_id) && listing.contains("active"),
        "{listing}"
    );
    assert!(
        !listing.contains(&secret),
        "a listing never shows the secret"
    );

    // HTTP Basic.
    let by_basic = token_request(&stack, Some((&client_id, &secret)), &[GRANT], FORM).await;
    let token = by_basic.token();
    assert_eq!(by_basic.headers["cache-control"], "no-store");
    assert_eq!(by_basic.body["token_type"], "Bearer");
    assert_eq!(by_basic.body["expires_in"], 3600);
    assert_eq!(
        by_basic.body["scope"],
        "webhooks:read webhooks:write events:read event-types:write"
    );

    // Form fields.
    let by_form = token_request(
        &stack,
        None,
        &[GRANT, ("client_id", &client_id), ("client_secret", &secret)],
        FORM,
    )
    .await;
    let form_token = by_form.token();
    assert_ne!(form_token, token, "every token is its own (jti)");

    // The API, through the authorizer, exactly as with a key of these scopes.
    let api = bearer(&stack, &tenant, &token);
    let me = api.get("/v1/me").await;
    assert_eq!(
        me.assert_status(200),
        &json!({"tenant_id": tenant, "key_id": client_id,
                "scopes": ["webhooks:read", "webhooks:write", "events:read", "event-types:write"]})
    );
    api.event_types(&["user.created"]).await;
    let webhook = api
        .post(
            "/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/oauth", "events": ["user.created"]}),
        )
        .await;
    webhook.assert_status(201);
    let listed = bearer(&stack, &tenant, &form_token)
        .get("/v1/webhooks")
        .await;
    assert_eq!(
        listed.assert_status(200)["data"].as_array().unwrap().len(),
        1
    );
    // A scope the client lacks stays out of reach.
    api.post("/v1/events", json!({"type": "user.created", "data": {}}))
        .await
        .assert_error(403, "FORBIDDEN");

    // A narrowed token: read only.
    let narrow = token_request(
        &stack,
        Some((&client_id, &secret)),
        &[GRANT, ("scope", "webhooks:read")],
        FORM,
    )
    .await;
    assert_eq!(narrow.body["scope"], "webhooks:read");
    let reader = bearer(&stack, &tenant, &narrow.token());
    reader.get("/v1/webhooks").await.assert_status(200);
    reader
        .post(
            "/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/more", "events": "*"}),
        )
        .await
        .assert_error(403, "FORBIDDEN");

    // Checked by an independent library against the published keys.
    let keys = jwks(&stack).await;
    let issuer = stack.state.config.token_issuer.clone();
    let audience = stack.state.config.token_audience.clone();
    let checked = verify_independently(&keys, &token, &issuer, &audience);
    assert_eq!(checked["header"]["typ"], "at+jwt");
    assert_eq!(checked["header"]["alg"], "ES256");
    assert_eq!(checked["header"]["kid"], keys["keys"][0]["kid"]);
    let claims = &checked["claims"];
    assert_eq!(claims["sub"], client_id);
    assert_eq!(claims["client_id"], client_id);
    assert_eq!(claims["tenant_id"], tenant);
    assert_eq!(claims["iss"], issuer);
    assert_eq!(claims["aud"], audience);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert!(
        !keys.to_string().contains("\"d\""),
        "the JWKS holds no private part"
    );
}

#[tokio::test]
async fn the_token_endpoint_refuses_as_rfc_6749_says() {
    let stack = Stack::start().await;
    let tenant = format!("oauth-{}", ulid::Ulid::new().to_string().to_lowercase());
    let (client_id, secret) = create_client(&stack, &tenant, "webhooks:read");
    let basic = Some((client_id.as_str(), secret.as_str()));

    let wrong = token_request(&stack, Some((&client_id, "whcs_wrong")), &[GRANT], FORM).await;
    wrong.assert_error(401, "invalid_client");
    assert!(
        wrong.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    token_request(
        &stack,
        None,
        &[GRANT, ("client_id", &client_id), ("client_secret", "x")],
        FORM,
    )
    .await
    .assert_error(401, "invalid_client");
    token_request(
        &stack,
        Some(("cli_01ARZ3NDEKTSV4RRFFQ69G5FAV", &secret)),
        &[GRANT],
        FORM,
    )
    .await
    .assert_error(401, "invalid_client");
    token_request(&stack, None, &[GRANT], FORM)
        .await
        .assert_error(401, "invalid_client");

    token_request(&stack, basic, &[("grant_type", "password")], FORM)
        .await
        .assert_error(400, "unsupported_grant_type");
    token_request(&stack, basic, &[("grant_type", "authorization_code")], FORM)
        .await
        .assert_error(400, "unsupported_grant_type");
    token_request(&stack, basic, &[GRANT, ("scope", "webhooks:write")], FORM)
        .await
        .assert_error(400, "invalid_scope");
    token_request(&stack, basic, &[GRANT, ("scope", "everything")], FORM)
        .await
        .assert_error(400, "invalid_scope");

    token_request(&stack, basic, &[], FORM)
        .await
        .assert_error(400, "invalid_request");
    token_request(&stack, basic, &[GRANT, GRANT], FORM)
        .await
        .assert_error(400, "invalid_request");
    token_request(&stack, basic, &[GRANT, ("client_secret", &secret)], FORM)
        .await
        .assert_error(400, "invalid_request");
    token_request(&stack, basic, &[GRANT], "application/json")
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn forged_expired_and_revoked_credentials_are_refused() {
    let stack = Stack::start().await;
    let tenant = format!("oauth-{}", ulid::Ulid::new().to_string().to_lowercase());
    let (client_id, secret) = create_client(&stack, &tenant, "webhooks:read");
    let token = token_request(&stack, Some((&client_id, &secret)), &[GRANT], FORM)
        .await
        .token();
    bearer(&stack, &tenant, &token)
        .get("/v1/webhooks")
        .await
        .assert_status(200);

    let header = part_of(&token, 0);
    let claims = part_of(&token, 1);
    let now = chrono::Utc::now().timestamp();
    let parts: Vec<&str> = token.split('.').collect();
    let mut refused = vec![
        (
            "expired",
            resigned(&stack, &token, "exp", json!(now - 5)).await,
        ),
        (
            "wrong audience",
            resigned(&stack, &token, "aud", json!("urn:elsewhere")).await,
        ),
        (
            "wrong issuer",
            resigned(&stack, &token, "iss", json!("urn:elsewhere")).await,
        ),
        (
            "not an access token",
            signed_with(
                &stack,
                json!({"alg": "ES256", "typ": "JWT", "kid": header["kid"]}),
                claims.clone(),
            )
            .await,
        ),
        (
            "tampered",
            tampered(&token, "tenant_id", json!("someone-else")),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
                parts[1]
            ),
        ),
    ];
    // An HMAC made with the public key as its secret (the classic algorithm confusion).
    let keys = jwks(&stack).await;
    refused.push((
        "HS256 with the public key",
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"at+jwt"}"#),
            parts[1],
            URL_SAFE_NO_PAD.encode(keys.to_string())
        ),
    ));
    for (why, forged) in refused {
        let reply = bearer(&stack, &tenant, &forged).get("/v1/webhooks").await;
        assert_eq!(
            (reply.status, reply.code()),
            (401, "UNAUTHORIZED"),
            "{why}: {}",
            reply.body
        );
    }

    // Revoked: no new token. One already issued lives until it expires.
    let revoked = admin(&stack, &["revoke-client", "--client-id", &client_id]);
    assert!(revoked.contains("revoked"), "{revoked}");
    token_request(&stack, Some((&client_id, &secret)), &[GRANT], FORM)
        .await
        .assert_error(401, "invalid_client");
    bearer(&stack, &tenant, &token)
        .get("/v1/webhooks")
        .await
        .assert_status(200);
    let listing = eventually(
        Duration::from_secs(5),
        || admin(&stack, &["list-clients", "--tenant", &tenant]),
        |out| out.contains("revoked"),
    );
    assert!(listing.contains("revoked"), "{listing}");
}
