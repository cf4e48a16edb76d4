//! Access tokens: JWTs per RFC 9068 (`typ: at+jwt`), signed ES256 by an asymmetric KMS key
//! (`ECC_NIST_P256`), so the private key exists nowhere but in KMS.
//!
//! Issuing costs one `kms:Sign` per token. The public key (`kms:GetPublicKey`, once per
//! process) is published as the JWKS, with its RFC 7638 thumbprint as `kid`, and verifies
//! tokens offline: the authorizer reads no table and calls no service per request.
//! Verification is jsonwebtoken's (ES256 only, so `alg: none` or an HMAC made with the
//! public key never verifies), plus the checks RFC 9068 adds: `typ`, `iss`, `aud`, `exp`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::domain::api_key::Scope;
use crate::secrets::{KeyError, kms_error};

/// The JWT `typ` of an access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// How long an access token from the token endpoint lives (SPEC §9: `expires_in`).
pub const ACCESS_TOKEN_LIFETIME_SECONDS: i64 = 3600;

/// KMS signs messages of at most this many bytes (`MessageType: RAW`).
const MAX_SIGNED_BYTES: usize = 4096;

/// The claims of an access token (RFC 9068 §2.2), with the tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The client the token was issued to.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    /// Space-separated scopes.
    pub scope: String,
    pub tenant_id: String,
}

/// Who a token is for and what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub tenant_id: String,
    pub client_id: String,
    pub scopes: Vec<Scope>,
}

/// A token just signed.
#[derive(Clone, Debug)]
pub struct Issued {
    pub token: String,
    pub claims: Claims,
}

/// Why a token is not accepted, for the log (the caller only ever sees a 401).
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error("not a JWT: {0}")]
    Malformed(String),
    #[error("typ is {0:?}, not at+jwt")]
    WrongType(Option<String>),
    #[error("signed by another key")]
    UnknownKey,
    #[error("{0}")]
    Invalid(String),
}

/// What a token check can come to besides a grant.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Not a token of ours, or no longer valid: 401.
    #[error("token rejected: {0}")]
    Rejected(#[from] Rejected),
    /// The public key could not be read: try again later, never a denial.
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// The key that signs tokens, chosen once per process. An enum, not a trait object: a
/// trait object's vtable keeps both KMS calls linked into every binary, while a match
/// lets the linker drop `Sign` (and `GetPublicKey`) wherever nothing signs or verifies.
pub enum TokenSigner {
    Kms(KmsSigner),
    /// No signing key configured (`TOKEN_KEY_ID` unset): no token is issued or accepted.
    Unset,
    #[cfg(test)]
    Memory(MemorySigner),
}

impl TokenSigner {
    /// An ECDSA P-256 SHA-256 signature of `message`, DER-encoded (as KMS returns it).
    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match self {
            // Boxed: the SDK's future is large and deep (as async_trait boxed it).
            TokenSigner::Kms(kms) => Box::pin(kms.sign(message)).await,
            TokenSigner::Unset => Err(unset()),
            #[cfg(test)]
            TokenSigner::Memory(memory) => Ok(memory.sign(message)),
        }
    }

    /// The public key as a DER SubjectPublicKeyInfo (as KMS returns it).
    async fn public_key(&self) -> Result<Vec<u8>, KeyError> {
        match self {
            TokenSigner::Kms(kms) => Box::pin(kms.public_key()).await,
            TokenSigner::Unset => Err(unset()),
            #[cfg(test)]
            TokenSigner::Memory(memory) => Ok(memory.public_key()),
        }
    }
}

fn unset() -> KeyError {
    KeyError::Unavailable("TOKEN_KEY_ID is not set".into())
}

/// The signing key in AWS KMS (the local emulator's KMS in the local stack).
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsSigner {
    pub fn new(client: aws_sdk_kms::Client, key_id: &str) -> Self {
        KmsSigner {
            client,
            key_id: key_id.to_string(),
        }
    }
}

impl KmsSigner {
    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let out = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(aws_sdk_kms::primitives::Blob::new(message))
            .message_type(aws_sdk_kms::types::MessageType::Raw)
            .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(kms_error)?;
        out.signature
            .map(|b| b.into_inner())
            .ok_or_else(|| KeyError::Unavailable("KMS returned no signature".into()))
    }

    async fn public_key(&self) -> Result<Vec<u8>, KeyError> {
        let out = self
            .client
            .get_public_key()
            .key_id(&self.key_id)
            .send()
            .await
            .map_err(kms_error)?;
        out.public_key
            .map(|b| b.into_inner())
            .ok_or_else(|| KeyError::Unavailable("KMS returned no public key".into()))
    }
}

/// The public half of the signing key, read once: as a JWK, and ready to verify.
struct PublicKey {
    kid: String,
    jwk: Value,
    decoding: DecodingKey,
}

impl PublicKey {
    /// Reads KMS's DER SubjectPublicKeyInfo (a P-256 key, or an error).
    fn from_spki(der: &[u8]) -> Result<Self, KeyError> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        use p256::pkcs8::DecodePublicKey;
        let key = p256::PublicKey::from_public_key_der(der)
            .map_err(|e| KeyError::Invalid(format!("the signing key is not P-256: {e}")))?;
        let point = key.to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(KeyError::Invalid(
                "the signing key has no coordinates".into(),
            ));
        };
        let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
        // RFC 7638: the SHA-256 of the required members, in lexical order, no spaces.
        let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint.as_bytes()));
        let decoding = DecodingKey::from_ec_components(&x, &y)
            .map_err(|e| KeyError::Invalid(format!("the signing key: {e}")))?;
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "kid": kid, "alg": "ES256", "use": "sig",
        });
        Ok(PublicKey { kid, jwk, decoding })
    }
}

/// Issues and verifies access tokens for one issuer and audience.
pub struct Tokens {
    signer: TokenSigner,
    issuer: String,
    audience: String,
    public: OnceCell<PublicKey>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

/// Whether a bearer credential has a JWT's shape (three base64url parts, a JSON header),
/// as opposed to an API key.
pub fn looks_like_token(credential: &str) -> bool {
    credential.starts_with("eyJ") && credential.split('.').count() == 3
}

impl Tokens {
    pub fn new(signer: TokenSigner, issuer: &str, audience: &str) -> Self {
        Tokens {
            signer,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            public: OnceCell::new(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The public key, read from the signer on first use (again after a failure).
    async fn public(&self) -> Result<&PublicKey, KeyError> {
        self.public
            .get_or_try_init(|| async { PublicKey::from_spki(&self.signer.public_key().await?) })
            .await
    }

    /// The JWKS (RFC 7517) that verifies every token issued here.
    pub async fn jwks(&self) -> Result<Value, KeyError> {
        Ok(json!({ "keys": [self.public().await?.jwk.clone()] }))
    }

    /// Signs a token for `grant`, valid for `lifetime_seconds` from now.
    pub async fn issue(&self, grant: &Grant, lifetime_seconds: i64) -> Result<Issued, KeyError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: grant.client_id.clone(),
            aud: self.audience.clone(),
            exp: now + lifetime_seconds,
            iat: now,
            jti: crate::ids::new_ulid().to_string(),
            client_id: grant.client_id.clone(),
            scope: Scope::join(&grant.scopes),
            tenant_id: grant.tenant_id.clone(),
        };
        let header =
            json!({"alg": "ES256", "typ": ACCESS_TOKEN_TYPE, "kid": self.public().await?.kid});
        let token = self
            .sign(&header, &serde_json::to_value(&claims).unwrap_or_default())
            .await?;
        Ok(Issued { token, claims })
    }

    /// A compact JWS of `header` and `claims` (JSON objects), signed by the key.
    pub async fn sign(&self, header: &Value, claims: &Value) -> Result<String, KeyError> {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        if input.len() > MAX_SIGNED_BYTES {
            return Err(KeyError::Invalid(format!(
                "a token of {} bytes is past KMS's {MAX_SIGNED_BYTES}",
                input.len()
            )));
        }
        let der = self.signer.sign(input.as_bytes()).await?;
        // KMS signs in DER; JWS wants r||s, 32 bytes each (RFC 7518 §3.4).
        let signature = p256::ecdsa::Signature::from_der(&der)
            .map_err(|e| KeyError::Invalid(format!("KMS returned an unreadable signature: {e}")))?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }

    /// The claims of a token issued here and still valid; anything else is rejected.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| Rejected::Malformed(e.to_string()))?;
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
                || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(Rejected::WrongType(header.typ).into());
        }
        let public = self.public().await?;
        if header.kid.as_deref().is_some_and(|kid| kid != public.kid) {
            return Err(Rejected::UnknownKey.into());
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = 0;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &public.decoding, &validation)
            .map_err(|e| Rejected::Invalid(e.to_string()))?;
        Ok(data.claims)
    }
}

/// A P-256 key held in memory, signing as KMS does (DER): for unit tests.
#[cfg(test)]
pub struct MemorySigner(p256::ecdsa::SigningKey);

#[cfg(test)]
impl MemorySigner {
    pub fn random() -> Self {
        let bytes = crate::domain::api_key::random_bytes::<32>();
        MemorySigner(p256::ecdsa::SigningKey::from_bytes(&bytes.into()).expect("a valid scalar"))
    }
}

#[cfg(test)]
impl MemorySigner {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer as _;
        let signature: p256::ecdsa::Signature = self.0.sign(message);
        signature.to_der().as_bytes().to_vec()
    }

    fn public_key(&self) -> Vec<u8> {
        use p256::pkcs8::EncodePublicKey;
        p256::PublicKey::from(self.0.verifying_key())
            .to_public_key_der()
            .expect("a P-256 key encodes")
            .as_bytes()
            .to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "urn:webhooks:test";
    const AUDIENCE: &str = "urn:webhooks:test:api";

    fn tokens() -> Tokens {
        Tokens::new(
            TokenSigner::Memory(MemorySigner::random()),
            ISSUER,
            AUDIENCE,
        )
    }

    fn grant() -> Grant {
        Grant {
            tenant_id: "acme".into(),
            client_id: "cli_01J0000000000000000000000A".into(),
            scopes: vec![Scope::WebhooksRead, Scope::EventsWrite],
        }
    }

    fn part(token: &str, n: usize) -> Value {
        let text = token.split('.').nth(n).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn an_issued_token_carries_the_rfc_9068_claims_and_verifies() {
        let tokens = tokens();
        let issued = tokens.issue(&grant(), 3600).await.unwrap();
        assert!(looks_like_token(&issued.token));
        let header = part(&issued.token, 0);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["typ"], "at+jwt");
        let jwks = tokens.jwks().await.unwrap();
        assert_eq!(header["kid"], jwks["keys"][0]["kid"]);
        let claims = part(&issued.token, 1);
        for name in [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "jti",
            "client_id",
            "scope",
            "tenant_id",
        ] {
            assert!(claims.get(name).is_some(), "{name}");
        }
        assert_eq!(claims["scope"], "webhooks:read events:write");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            3600
        );
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(issued.token.rsplit('.').next().unwrap())
                .unwrap()
                .len(),
            64,
            "a raw r||s signature, not DER"
        );
        let verified = tokens.verify(&issued.token).await.unwrap();
        assert_eq!(verified, issued.claims);
        assert_eq!(verified.tenant_id, "acme");
    }

    /// Signs `claims` with `header` by the same key, to forge what a client might send.
    async fn forged(tokens: &Tokens, header: Value, claims: Value) -> String {
        tokens.sign(&header, &claims).await.unwrap()
    }

    #[tokio::test]
    async fn expired_tampered_foreign_untyped_and_unsigned_tokens_are_rejected() {
        let tokens = tokens();
        let issued = tokens.issue(&grant(), 3600).await.unwrap();
        let kid = part(&issued.token, 0)["kid"].clone();
        let good = serde_json::to_value(&issued.claims).unwrap();
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": kid});
        let now = chrono::Utc::now().timestamp();

        let mut expired = good.clone();
        expired["exp"] = json!(now - 1);
        let mut other_audience = good.clone();
        other_audience["aud"] = json!("urn:elsewhere");
        let mut other_issuer = good.clone();
        other_issuer["iss"] = json!("urn:elsewhere");
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        let untyped = json!({"alg": "ES256", "kid": kid});
        let id_token = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        let other_kid = json!({"alg": "ES256", "typ": "at+jwt", "kid": "elsewhere"});

        let mut refused = vec![
            ("expired", forged(&tokens, header.clone(), expired).await),
            (
                "wrong audience",
                forged(&tokens, header.clone(), other_audience).await,
            ),
            (
                "wrong issuer",
                forged(&tokens, header.clone(), other_issuer).await,
            ),
            ("no exp", forged(&tokens, header.clone(), no_exp).await),
            ("no typ", forged(&tokens, untyped, good.clone()).await),
            ("typ JWT", forged(&tokens, id_token, good.clone()).await),
            ("other kid", forged(&tokens, other_kid, good.clone()).await),
        ];
        // Claims changed after signing.
        let mut more = good.clone();
        more["scope"] = json!("webhooks:read webhooks:write events:write");
        let parts: Vec<&str> = issued.token.split('.').collect();
        refused.push((
            "tampered",
            format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode(more.to_string()),
                parts[2]
            ),
        ));
        // alg none, with and without a signature.
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#);
        refused.push(("alg none", format!("{none}.{}.", parts[1])));
        refused.push((
            "alg none signed",
            format!("{none}.{}.{}", parts[1], parts[2]),
        ));
        // A token of another key with the same claims.
        let stranger = Tokens::new(
            TokenSigner::Memory(MemorySigner::random()),
            ISSUER,
            AUDIENCE,
        );
        refused.push(("another key", stranger.sign(&header, &good).await.unwrap()));
        refused.push(("garbage", "eyJ.x.y".into()));
        for (why, token) in refused {
            match tokens.verify(&token).await {
                Err(VerifyError::Rejected(_)) => {}
                other => panic!("{why}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn without_a_key_nothing_is_issued_and_checks_wait_instead_of_denying() {
        let tokens = Tokens::new(TokenSigner::Unset, ISSUER, AUDIENCE);
        assert!(matches!(
            tokens.issue(&grant(), 60).await,
            Err(KeyError::Unavailable(_))
        ));
        let issued = self::tokens().issue(&grant(), 60).await.unwrap();
        assert!(matches!(
            tokens.verify(&issued.token).await,
            Err(VerifyError::Keys(KeyError::Unavailable(_)))
        ));
    }

    #[test]
    fn api_keys_do_not_look_like_tokens() {
        assert!(!looks_like_token("whk_abc.def.ghi"));
        assert!(!looks_like_token("eyJabc.def"));
        assert!(looks_like_token("eyJabc.def.ghi"));
    }
}
