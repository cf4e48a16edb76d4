//! Signing deliveries: the Standard Webhooks scheme (`webhook-signature: v1,<base64>`) and
//! the simple hex scheme (`X-Webhook-Signature`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::domain::webhook::{SECRET_PREFIX, Secret};

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The key bytes of a `whsec_` secret: the base64 after the prefix.
fn standard_key(secret: &Secret) -> Vec<u8> {
    let encoded = secret
        .as_str()
        .strip_prefix(SECRET_PREFIX)
        .unwrap_or(secret.as_str());
    // Secrets are validated on the way in; a stored secret that is not base64 signs with
    // its raw bytes rather than failing the delivery.
    STANDARD
        .decode(encoded)
        .unwrap_or_else(|_| encoded.as_bytes().to_vec())
}

/// One Standard Webhooks signature: `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
pub fn standard_signature(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let mac = hmac(
        &standard_key(secret),
        &[msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    format!("v1,{}", STANDARD.encode(mac))
}

/// The `webhook-signature` header: one signature per secret in force, space-separated
/// (two during a rotation's overlap).
pub fn standard_signature_header(
    secrets: &[&Secret],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|s| standard_signature(s, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `X-Webhook-Signature`: hex HMAC-SHA256 of the raw body, keyed by the whole secret string.
pub fn hex_signature(secret: &Secret, body: &[u8]) -> String {
    hex::encode(hmac(secret.as_str().as_bytes(), &[body]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const MSG_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TIMESTAMP: i64 = 1649367553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;

    #[test]
    fn the_standard_webhooks_test_vector() {
        assert_eq!(
            standard_signature(&Secret(SECRET.into()), MSG_ID, TIMESTAMP, BODY),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn a_rotation_signs_with_both_secrets() {
        let old = Secret(SECRET.into());
        let new = Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        let header = standard_signature_header(&[&new, &old], MSG_ID, TIMESTAMP, BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn the_hex_signature_is_keyed_by_the_whole_secret_string() {
        // Reference: python3 -c "import hmac,hashlib; print(hmac.new(b'whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD',
        //   b'{\"email\":\"test@example.com\",\"username\":\"test_user\"}', hashlib.sha256).hexdigest())"
        assert_eq!(hex_signature(&Secret(SECRET.into()), BODY), EXPECTED_HEX);
    }

    const EXPECTED_HEX: &str = "e0fc16c6d4a28f39a6e0935569f05d86e87367db24a4b6d9271215c603e49f6a";
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// For any key, id, timestamp and body, the official Standard Webhooks library computes
        /// the same signature.
        #[test]
        fn signatures_agree_with_the_official_library(
            key in proptest::collection::vec(any::<u8>(), 24..64),
            id in "[a-z_0-9]{1,40}",
            timestamp in 1_000_000_000i64..4_000_000_000,
            body in "\\PC{0,400}",
        ) {
            let secret = Secret(format!("whsec_{}", STANDARD.encode(&key)));
            let official = standardwebhooks::Webhook::new(secret.as_str()).unwrap();
            prop_assert_eq!(
                standard_signature(&secret, &id, timestamp, body.as_bytes()),
                official.sign(&id, timestamp, body.as_bytes()).unwrap()
            );
        }
    }
}
