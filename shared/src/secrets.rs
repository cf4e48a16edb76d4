//! Secrets at rest: envelope encryption of a webhook's confidential values (signing
//! secrets, Basic passwords, `authorization` headers), so the table never holds one in
//! the clear.
//!
//! Each value is sealed with AES-256-GCM under a data key that the stack's KMS key wraps;
//! the sealed text carries the wrapped key, a random nonce and the ciphertext, and the
//! tenant and the webhook are its associated data, so a value copied into another item
//! does not open. (Not the field: a rotation moves the secret to `previous_secret` as it
//! is, without opening it.) Data keys are cached in the process: a
//! writer generates one data key (`kms:GenerateDataKey`) for many writes, and a reader
//! unwraps each data key once (`kms:Decrypt`), so a fan-out makes no KMS call per delivery
//! in steady state. Only the functions that need a clear value may decrypt.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::domain::headers::AUTHORIZATION;
use crate::domain::webhook::{Confidential, Credentials, Secret, Webhook};

/// Why a value could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// KMS throttled, unreachable or not configured: try again later.
    #[error("keys unavailable: {0}")]
    Unavailable(String),
    /// A sealed value that does not open: damaged, or moved from another item or field.
    #[error("a sealed value does not open: {0}")]
    Invalid(String),
    /// KMS refused the request for good (access denied, a disabled or unknown key): a
    /// deployment's fault, which retrying does not mend.
    #[error("KMS refused: {0}")]
    Refused(String),
}

/// A KMS error: throttling, a timeout or a 5xx is [`KeyError::Unavailable`] (try again);
/// anything else, such as a denied permission, is [`KeyError::Refused`].
pub(crate) fn kms_error<E>(
    e: aws_sdk_kms::error::SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
) -> KeyError
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_sdk_kms::error::SdkError;
    const TRANSIENT: &[&str] = &[
        "ThrottlingException",
        "KMSInternalException",
        "DependencyTimeoutException",
        "KeyUnavailableException",
    ];
    let transient = match &e {
        SdkError::ServiceError(service) => {
            service.raw().status().as_u16() >= 500
                || service.err().code().is_some_and(|c| TRANSIENT.contains(&c))
        }
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    };
    let text = aws_sdk_kms::error::DisplayErrorContext(e).to_string();
    if transient {
        KeyError::Unavailable(text)
    } else {
        KeyError::Refused(text)
    }
}

/// A data key: in the clear for this process, and wrapped by the KMS key for storage.
#[derive(Clone)]
pub struct DataKey {
    pub clear: [u8; 32],
    pub wrapped: Vec<u8>,
}

/// What sealing needs of a key service: new data keys, and the clear form of wrapped ones.
#[async_trait]
pub trait Keyring: Send + Sync {
    async fn generate(&self) -> Result<DataKey, KeyError>;
    async fn unwrap(&self, wrapped: &[u8]) -> Result<[u8; 32], KeyError>;
}

/// How long one data key seals new values, and for how many.
const SEALING_KEY_LIFE: Duration = Duration::from_secs(300);
const SEALING_KEY_USES: u32 = 10_000;
/// Unwrapped data keys kept in the process; past this the cache starts over.
const OPENED_KEYS: usize = 10_000;

const VERSION: &str = "v1";

struct SealingKey {
    key: DataKey,
    made: Instant,
    uses: u32,
}

/// Seals and opens confidential values, caching data keys both ways.
pub struct Sealer {
    keyring: Arc<dyn Keyring>,
    sealing: Mutex<Option<SealingKey>>,
    opened: Mutex<HashMap<Vec<u8>, [u8; 32]>>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

/// The associated data of a webhook's values: they open only in that webhook's item.
fn aad(webhook: &Webhook) -> String {
    format!("{}\n{}", webhook.tenant_id, webhook.id)
}

impl Sealer {
    pub fn new(keyring: Arc<dyn Keyring>) -> Self {
        Sealer {
            keyring,
            sealing: Mutex::new(None),
            opened: Mutex::new(HashMap::new()),
        }
    }

    async fn sealing_key(&self) -> Result<DataKey, KeyError> {
        {
            let mut current = self.sealing.lock();
            if let Some(k) = current.as_mut()
                && k.made.elapsed() < SEALING_KEY_LIFE
                && k.uses < SEALING_KEY_USES
            {
                k.uses += 1;
                return Ok(k.key.clone());
            }
        }
        let key = self.keyring.generate().await?;
        self.remember(&key.wrapped, key.clear);
        *self.sealing.lock() = Some(SealingKey {
            key: key.clone(),
            made: Instant::now(),
            uses: 1,
        });
        Ok(key)
    }

    fn remember(&self, wrapped: &[u8], clear: [u8; 32]) {
        let mut opened = self.opened.lock();
        if opened.len() >= OPENED_KEYS {
            opened.clear();
        }
        opened.insert(wrapped.to_vec(), clear);
    }

    async fn opening_key(&self, wrapped: &[u8]) -> Result<[u8; 32], KeyError> {
        if let Some(clear) = self.opened.lock().get(wrapped) {
            return Ok(*clear);
        }
        let clear = self.keyring.unwrap(wrapped).await?;
        self.remember(wrapped, clear);
        Ok(clear)
    }

    /// Seals `clear` for use at `aad` only.
    pub async fn seal(&self, clear: &str, aad: &str) -> Result<String, KeyError> {
        let key = self.sealing_key().await?;
        let nonce_bytes = crate::domain::api_key::random_bytes::<NONCE_LEN>();
        let mut sealed = clear.as_bytes().to_vec();
        cipher(&key.clear)?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(aad.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| KeyError::Invalid("sealing failed".into()))?;
        let mut body = nonce_bytes.to_vec();
        body.extend_from_slice(&sealed);
        Ok(format!(
            "{VERSION}.{}.{}",
            URL_SAFE_NO_PAD.encode(&key.wrapped),
            URL_SAFE_NO_PAD.encode(body)
        ))
    }

    /// Opens a value sealed for `aad`.
    pub async fn open(&self, sealed: &str, aad: &str) -> Result<String, KeyError> {
        let invalid = |why: &str| KeyError::Invalid(why.to_string());
        let mut parts = sealed.split('.');
        let (Some(VERSION), Some(wrapped), Some(body), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a sealed value"));
        };
        let wrapped = URL_SAFE_NO_PAD
            .decode(wrapped)
            .map_err(|_| invalid("damaged key"))?;
        let mut body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| invalid("damaged body"))?;
        if body.len() < NONCE_LEN {
            return Err(invalid("too short"));
        }
        let key = self.opening_key(&wrapped).await?;
        let nonce = Nonce::try_assume_unique_for_key(&body[..NONCE_LEN])
            .map_err(|_| invalid("damaged nonce"))?;
        let mut ciphertext = body.split_off(NONCE_LEN);
        let clear = cipher(&key)?
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut ciphertext)
            .map_err(|_| invalid("wrong key or item"))?;
        String::from_utf8(clear.to_vec()).map_err(|_| invalid("not text"))
    }

    async fn seal_one(&self, value: &mut Confidential, aad: &str) -> Result<(), KeyError> {
        if let Confidential::Clear(clear) = value {
            *value = Confidential::Sealed(self.seal(clear, aad).await?);
        }
        Ok(())
    }

    async fn open_one(&self, value: &Confidential, aad: &str) -> Result<String, KeyError> {
        match value {
            Confidential::Clear(clear) => Ok(clear.clone()),
            Confidential::Sealed(sealed) => self.open(sealed, aad).await,
        }
    }

    /// Seals every value of the webhook that is still in the clear (before it is stored).
    pub async fn seal_webhook(&self, wh: &mut Webhook) -> Result<(), KeyError> {
        let aad = aad(wh);
        self.seal_one(&mut wh.secret, &aad).await?;
        if let Some(value) = wh.previous_secret.as_mut() {
            self.seal_one(value, &aad).await?;
        }
        if let Some(auth) = wh.auth.as_mut() {
            self.seal_one(&mut auth.password, &aad).await?;
        }
        if let Some(value) = wh.authorization.as_mut() {
            self.seal_one(value, &aad).await?;
        }
        Ok(())
    }

    /// The custom `authorization` header's value in the clear, if the webhook has one.
    pub async fn authorization(&self, wh: &Webhook) -> Result<Option<String>, KeyError> {
        match &wh.authorization {
            Some(value) => Ok(Some(self.open_one(value, &aad(wh)).await?)),
            None => Ok(None),
        }
    }

    /// The signing secret in the clear.
    pub async fn secret(&self, wh: &Webhook) -> Result<Secret, KeyError> {
        Ok(Secret(self.open_one(&wh.secret, &aad(wh)).await?))
    }

    /// The Basic password in the clear, if the webhook has credentials.
    pub async fn password(&self, wh: &Webhook) -> Result<Option<String>, KeyError> {
        match &wh.auth {
            Some(auth) => Ok(Some(self.open_one(&auth.password, &aad(wh)).await?)),
            None => Ok(None),
        }
    }

    /// Everything a delivery to the webhook needs in the clear: the secrets in force (the
    /// previous one only while its overlap lasts) and the Basic credentials.
    pub async fn credentials(&self, wh: &Webhook) -> Result<Credentials, KeyError> {
        let previous = match (&wh.previous_secret, wh.previous_expires_at) {
            (Some(value), Some(until)) if until > crate::domain::now() => {
                Some((Secret(self.open_one(value, &aad(wh)).await?), until))
            }
            _ => None,
        };
        let auth = match &wh.auth {
            Some(auth) => Some((
                auth.username.clone(),
                self.open_one(&auth.password, &aad(wh)).await?,
            )),
            None => None,
        };
        let mut headers = wh.headers.clone();
        if let Some(value) = self.authorization(wh).await? {
            headers.0.push((AUTHORIZATION.to_string(), value));
        }
        Ok(Credentials {
            secret: self.secret(wh).await?,
            previous,
            auth,
            headers,
        })
    }
}

fn cipher(key: &[u8; 32]) -> Result<LessSafeKey, KeyError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| KeyError::Invalid("bad data key".into()))
}

/// The keyring of a process that was given no KMS key: every use says so.
pub struct NoKeyring;

#[async_trait]
impl Keyring for NoKeyring {
    async fn generate(&self) -> Result<DataKey, KeyError> {
        Err(KeyError::Unavailable("SECRETS_KEY_ID is not set".into()))
    }

    async fn unwrap(&self, _wrapped: &[u8]) -> Result<[u8; 32], KeyError> {
        Err(KeyError::Unavailable("SECRETS_KEY_ID is not set".into()))
    }
}

/// Data keys from AWS KMS (the local emulator's KMS in the local stack).
pub struct KmsKeyring {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsKeyring {
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        KmsKeyring {
            client,
            key_id: key_id.into(),
        }
    }
}

fn thirty_two(bytes: &[u8]) -> Result<[u8; 32], KeyError> {
    bytes
        .try_into()
        .map_err(|_| KeyError::Invalid("a data key is not 32 bytes".into()))
}

#[async_trait]
impl Keyring for KmsKeyring {
    async fn generate(&self) -> Result<DataKey, KeyError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .send()
            .await
            .map_err(kms_error)?;
        let clear = out
            .plaintext
            .ok_or_else(|| KeyError::Unavailable("KMS returned no data key".into()))?;
        let wrapped = out
            .ciphertext_blob
            .ok_or_else(|| KeyError::Unavailable("KMS returned no wrapped key".into()))?;
        Ok(DataKey {
            clear: thirty_two(clear.as_ref())?,
            wrapped: wrapped.into_inner(),
        })
    }

    async fn unwrap(&self, wrapped: &[u8]) -> Result<[u8; 32], KeyError> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(wrapped))
            .send()
            .await
            .map_err(kms_error)?;
        let clear = out
            .plaintext
            .ok_or_else(|| KeyError::Unavailable("KMS returned no plaintext".into()))?;
        thirty_two(clear.as_ref())
    }
}

/// A keyring held in memory (unit tests): wraps data keys under a key of its own and counts
/// its calls, as KMS would bill them.
#[cfg(test)]
pub mod testing {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    pub struct MemoryKeyring {
        master: [u8; 32],
        pub generated: AtomicU32,
        pub unwrapped: AtomicU32,
    }

    impl Default for MemoryKeyring {
        fn default() -> Self {
            Self::new()
        }
    }

    impl MemoryKeyring {
        pub fn new() -> Self {
            MemoryKeyring {
                master: crate::domain::api_key::random_bytes::<32>(),
                generated: AtomicU32::new(0),
                unwrapped: AtomicU32::new(0),
            }
        }

        pub fn calls(&self) -> (u32, u32) {
            (
                self.generated.load(Ordering::SeqCst),
                self.unwrapped.load(Ordering::SeqCst),
            )
        }
    }

    #[async_trait]
    impl Keyring for MemoryKeyring {
        async fn generate(&self) -> Result<DataKey, KeyError> {
            self.generated.fetch_add(1, Ordering::SeqCst);
            let clear = crate::domain::api_key::random_bytes::<32>();
            let nonce = crate::domain::api_key::random_bytes::<NONCE_LEN>();
            let mut wrapped = clear.to_vec();
            cipher(&self.master)?
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::empty(),
                    &mut wrapped,
                )
                .map_err(|_| KeyError::Invalid("wrap".into()))?;
            let mut out = nonce.to_vec();
            out.extend(wrapped);
            Ok(DataKey {
                clear,
                wrapped: out,
            })
        }

        async fn unwrap(&self, wrapped: &[u8]) -> Result<[u8; 32], KeyError> {
            self.unwrapped.fetch_add(1, Ordering::SeqCst);
            let (nonce, body) = wrapped.split_at(NONCE_LEN.min(wrapped.len()));
            let nonce = Nonce::try_assume_unique_for_key(nonce)
                .map_err(|_| KeyError::Invalid("nonce".into()))?;
            let mut body = body.to_vec();
            let clear = cipher(&self.master)?
                .open_in_place(nonce, Aad::empty(), &mut body)
                .map_err(|_| KeyError::Invalid("unwrap".into()))?;
            thirty_two(clear)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::MemoryKeyring;
    use super::*;
    use crate::domain::webhook::tests::sample;

    fn sealer() -> (Arc<MemoryKeyring>, Sealer) {
        let keyring = Arc::new(MemoryKeyring::new());
        (keyring.clone(), Sealer::new(keyring))
    }

    #[tokio::test]
    async fn a_sealed_webhook_holds_no_clear_value_and_opens_again() {
        let (_, sealer) = sealer();
        let clear = sample();
        let mut wh = clear.clone();
        sealer.seal_webhook(&mut wh).await.unwrap();
        let text = format!(
            "{:?} {:?} {:?}",
            wh.secret,
            wh.previous_secret,
            wh.auth.as_ref().map(|a| &a.password)
        );
        assert!(matches!(wh.secret, Confidential::Sealed(_)), "{text}");
        let Confidential::Sealed(sealed) = &wh.secret else {
            unreachable!()
        };
        assert!(!sealed.contains("C2FVsBQIhrscChlQIMV"));
        assert_eq!(
            sealer.secret(&wh).await.unwrap(),
            sealer.secret(&clear).await.unwrap()
        );
        assert_eq!(
            sealer.password(&wh).await.unwrap().as_deref(),
            Some("s3cret-pw")
        );
        // Sealing twice changes nothing: only clear values are sealed.
        let again = wh.clone();
        sealer.seal_webhook(&mut wh).await.unwrap();
        assert_eq!(wh, again);
    }

    #[tokio::test]
    async fn a_value_moved_to_another_webhook_does_not_open() {
        let (_, sealer) = sealer();
        let mut wh = sample();
        sealer.seal_webhook(&mut wh).await.unwrap();
        let mut other = wh.clone();
        other.id = "wh_01ARZ3NDEKTSV4RRFFQ69G5FAW".into();
        assert!(matches!(
            sealer.secret(&other).await,
            Err(KeyError::Invalid(_))
        ));
        assert!(sealer.open("v1.x.y", "a").await.is_err());
        assert!(sealer.open("plain text", "a").await.is_err());
    }

    #[tokio::test]
    async fn data_keys_are_cached_both_ways() {
        let (keyring, sealer) = sealer();
        let mut webhooks: Vec<Webhook> = (0..20)
            .map(|i| {
                let mut wh = sample();
                wh.id = format!("wh_01ARZ3NDEKTSV4RRFFQ69G5F{i:02}");
                wh
            })
            .collect();
        for wh in &mut webhooks {
            sealer.seal_webhook(wh).await.unwrap();
        }
        assert_eq!(keyring.calls(), (1, 0), "one data key seals many values");
        // Another process (a fresh cache) opens them with one unwrap for that key.
        let reader = Sealer::new(keyring.clone());
        for _ in 0..3 {
            for wh in &webhooks {
                reader.credentials(wh).await.unwrap();
            }
        }
        assert_eq!(
            keyring.calls(),
            (1, 1),
            "no KMS call per delivery in steady state"
        );
    }
}
