//! The service's settings, read once from the environment at start.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::domain::retry::RetrySchedule;
use crate::duration::parse_duration;

/// Every setting the service reads. Built once by [`Config::from_env`]; nothing else reads
/// the environment.
#[derive(Clone, Debug)]
pub struct Config {
    /// The single DynamoDB table (`TABLE_NAME`).
    pub table_name: String,
    /// Allow `http://` targets and private, loopback and link-local addresses
    /// (`ALLOW_INSECURE_TARGETS`). Off in production, on in local mode.
    pub allow_insecure_targets: bool,
    /// Send nothing anywhere but 127.0.0.1/localhost, and never ask DNS
    /// (`DELIVER_ONLY_TO_LOOPBACK`): for fuzzing and load tests, whose generated URLs must
    /// not turn into traffic.
    pub deliver_only_to_loopback: bool,
    /// Most webhooks a tenant may register (`MAX_WEBHOOKS_PER_TENANT`, default 100).
    pub max_webhooks_per_tenant: u32,
    /// Most event types in a tenant's catalogue (`MAX_EVENT_TYPES_PER_TENANT`, default
    /// 1,000).
    pub max_event_types_per_tenant: u32,
    /// Days before events and deliveries expire (`RETENTION_DAYS`, default 30).
    pub retention_days: u32,
    /// An AWS endpoint to use instead of the real one (`AWS_ENDPOINT_URL`): the local emulator.
    pub aws_endpoint_url: Option<String>,
    /// The region for the local emulator when no region is configured (`AWS_REGION`).
    pub aws_region: Option<String>,
    /// With `AWS_ENDPOINT_URL`: whom to act as on the emulator (`EMULATOR_ACCESS_KEY_ID` and
    /// `EMULATOR_SECRET_ACCESS_KEY`: a function's own principal when a test runs its
    /// binary); the emulator's administrator when unset. In AWS the default chain decides.
    pub emulator_access_key: Option<AccessKey>,
    /// The SQS ingest queue (`INGEST_QUEUE_URL`), its dead-letter queue (`INGEST_DLQ_URL`)
    /// and the delivery queue (`DELIVERY_QUEUE_URL`). Set by the template in AWS and by the
    /// local stack locally.
    pub queues: Option<QueueUrls>,
    /// The KMS key that wraps the data keys sealing webhooks' secrets (`SECRETS_KEY_ID`: a
    /// key id, ARN or alias). Set by the template in AWS and by the local stack locally.
    pub secrets_key_id: Option<String>,
    /// The asymmetric KMS key (`ECC_NIST_P256`) that signs access tokens (`TOKEN_KEY_ID`: a
    /// key id, ARN or alias). Set by the template in AWS and by the local stack locally.
    pub token_key_id: Option<String>,
    /// Access tokens' `iss` (`TOKEN_ISSUER`, default `urn:webhooks`).
    pub token_issuer: String,
    /// Access tokens' `aud` (`TOKEN_AUDIENCE`, default `urn:webhooks:api`).
    pub token_audience: String,
    /// Where portal session links point (`PORTAL_URL`, e.g. `https://hooks.example.com/portal`):
    /// by default the address the session was asked on, plus `/portal`.
    pub portal_url: Option<String>,
    /// Waits between attempts (`RETRY_SCHEDULE`, default `5s,5m,30m,2h,5h,10h,10h`).
    pub retry_schedule: RetrySchedule,
    /// How long a message the sweeper brings back from a dead-letter queue waits before it
    /// is seen again, so storage has time to recover (`SWEEP_MARGIN`, default `15m`, at
    /// most SQS's 15 minutes).
    pub sweep_margin: Duration,
    /// How long a webhook's deliveries may all fail before it is disabled
    /// (`AUTO_DISABLE_AFTER`, default `5d`).
    pub auto_disable_after: Duration,
    /// API requests a second each tenant may make, bursts of twice that, across every
    /// instance (`TENANT_RATE_LIMIT`, default 50; `0`: no limit).
    pub tenant_rate_limit: Option<u32>,
}

/// An access key (the secret never shows in `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessKey({}, ********)", self.id)
    }
}

/// The queues' URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueUrls {
    pub ingest: String,
    pub ingest_dlq: String,
    pub delivery: String,
    /// The delivery queue's dead-letter queue (`DELIVERY_DLQ_URL`): only the sweeper and
    /// `webhooks-admin redrive` read it.
    pub delivery_dlq: Option<String>,
}

/// How long a message brought back from a dead-letter queue waits, unless `SWEEP_MARGIN`
/// says otherwise.
pub const DEFAULT_SWEEP_MARGIN: Duration = Duration::from_secs(15 * 60);

/// SPEC §6: API requests a second per tenant, unless `TENANT_RATE_LIMIT` says otherwise.
pub const DEFAULT_TENANT_RATE_LIMIT: u32 = 50;

/// SPEC: a webhook whose deliveries have all failed for 5 days is disabled.
pub const DEFAULT_AUTO_DISABLE_AFTER: Duration = Duration::from_secs(5 * 86400);

/// A setting that is missing or cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration: {}: {}", self.variable, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Where the defaults differ: a deployed function must be told its table; the local stack
/// picks one and allows targets on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Lambda,
    Local,
}

pub const LOCAL_TABLE_NAME: &str = "webhooks-local";

/// Access tokens' issuer and audience when the environment names none (the template names
/// both after the stack).
pub const DEFAULT_TOKEN_ISSUER: &str = "urn:webhooks";
pub const DEFAULT_TOKEN_AUDIENCE: &str = "urn:webhooks:api";

impl Config {
    /// Unix seconds when an event or delivery written now expires (`RETENTION_DAYS`).
    pub fn expires_at(&self) -> i64 {
        chrono::Utc::now().timestamp() + i64::from(self.retention_days) * 86400
    }

    /// Reads the process environment.
    pub fn from_env(mode: Mode) -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_vars(mode, |name| vars.get(name).cloned())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    pub fn from_vars(
        mode: Mode,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let table_name = match (get("TABLE_NAME"), mode) {
            (Some(name), _) => name,
            (None, Mode::Local) => LOCAL_TABLE_NAME.to_string(),
            (None, Mode::Lambda) => {
                return Err(ConfigError {
                    variable: "TABLE_NAME",
                    reason: "must be set to the DynamoDB table's name".into(),
                });
            }
        };
        Ok(Config {
            table_name,
            allow_insecure_targets: parse_bool(
                "ALLOW_INSECURE_TARGETS",
                get("ALLOW_INSECURE_TARGETS"),
                mode == Mode::Local,
            )?,
            deliver_only_to_loopback: parse_bool(
                "DELIVER_ONLY_TO_LOOPBACK",
                get("DELIVER_ONLY_TO_LOOPBACK"),
                false,
            )?,
            max_webhooks_per_tenant: parse_number(
                "MAX_WEBHOOKS_PER_TENANT",
                get("MAX_WEBHOOKS_PER_TENANT"),
                100,
            )?,
            max_event_types_per_tenant: parse_number(
                "MAX_EVENT_TYPES_PER_TENANT",
                get("MAX_EVENT_TYPES_PER_TENANT"),
                1000,
            )?,
            retention_days: parse_number("RETENTION_DAYS", get("RETENTION_DAYS"), 30)?,
            aws_endpoint_url: get("AWS_ENDPOINT_URL"),
            aws_region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            emulator_access_key: match (
                get("AWS_ENDPOINT_URL"),
                get("EMULATOR_ACCESS_KEY_ID"),
                get("EMULATOR_SECRET_ACCESS_KEY"),
            ) {
                (Some(_), Some(id), Some(secret)) => Some(AccessKey { id, secret }),
                _ => None,
            },
            queues: match (
                get("INGEST_QUEUE_URL"),
                get("INGEST_DLQ_URL"),
                get("DELIVERY_QUEUE_URL"),
            ) {
                (Some(ingest), Some(ingest_dlq), Some(delivery)) => Some(QueueUrls {
                    ingest,
                    ingest_dlq,
                    delivery,
                    delivery_dlq: get("DELIVERY_DLQ_URL"),
                }),
                (None, None, None) => None,
                _ => {
                    return Err(ConfigError {
                        variable: "INGEST_QUEUE_URL",
                        reason:
                            "INGEST_QUEUE_URL, INGEST_DLQ_URL and DELIVERY_QUEUE_URL go together"
                                .into(),
                    });
                }
            },
            secrets_key_id: get("SECRETS_KEY_ID"),
            token_key_id: get("TOKEN_KEY_ID"),
            token_issuer: get("TOKEN_ISSUER").unwrap_or_else(|| DEFAULT_TOKEN_ISSUER.into()),
            token_audience: get("TOKEN_AUDIENCE").unwrap_or_else(|| DEFAULT_TOKEN_AUDIENCE.into()),
            portal_url: match get("PORTAL_URL") {
                Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                    Some(url.trim().trim_end_matches('/').to_string())
                }
                Some(url) => {
                    return Err(ConfigError {
                        variable: "PORTAL_URL",
                        reason: format!("expected an http(s) address, got {url:?}"),
                    });
                }
                None => None,
            },
            retry_schedule: match get("RETRY_SCHEDULE") {
                Some(text) => RetrySchedule::parse(&text).map_err(|reason| ConfigError {
                    variable: "RETRY_SCHEDULE",
                    reason,
                })?,
                None => RetrySchedule::default(),
            },
            sweep_margin: match get("SWEEP_MARGIN") {
                Some(text) => parse_duration(text.trim()).map_err(|_| ConfigError {
                    variable: "SWEEP_MARGIN",
                    reason: format!("expected one duration like 15m, got {text:?}"),
                })?,
                None => DEFAULT_SWEEP_MARGIN,
            },
            tenant_rate_limit: match get("TENANT_RATE_LIMIT") {
                Some(text) => match text.trim().parse::<u32>() {
                    Ok(0) => None,
                    Ok(n) => Some(n),
                    Err(_) => {
                        return Err(ConfigError {
                            variable: "TENANT_RATE_LIMIT",
                            reason: format!("expected a whole number (0: no limit), got {text:?}"),
                        });
                    }
                },
                None => Some(DEFAULT_TENANT_RATE_LIMIT),
            },
            auto_disable_after: match get("AUTO_DISABLE_AFTER") {
                Some(text) => parse_duration(text.trim()).map_err(|_| ConfigError {
                    variable: "AUTO_DISABLE_AFTER",
                    reason: format!("expected one duration like 5d or 12h, got {text:?}"),
                })?,
                None => DEFAULT_AUTO_DISABLE_AFTER,
            },
        })
    }
}

pub fn parse_bool(
    variable: &'static str,
    value: Option<String>,
    default: bool,
) -> Result<bool, ConfigError> {
    match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(other) => Err(ConfigError {
            variable,
            reason: format!("expected true or false, got {other:?}"),
        }),
    }
}

pub fn parse_number(
    variable: &'static str,
    value: Option<String>,
    default: u32,
) -> Result<u32, ConfigError> {
    match value {
        None => Ok(default),
        Some(text) => match text.trim().parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError {
                variable,
                reason: format!("expected a positive whole number, got {text:?}"),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: Mode, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(mode, |k| map.get(k).cloned())
    }

    #[test]
    fn lambda_mode_needs_a_table_and_refuses_insecure_targets_by_default() {
        assert_eq!(
            config(Mode::Lambda, &[]).unwrap_err().variable,
            "TABLE_NAME"
        );
        let c = config(Mode::Lambda, &[("TABLE_NAME", "t")]).unwrap();
        assert_eq!(c.table_name, "t");
        assert!(!c.allow_insecure_targets);
        assert_eq!(c.max_webhooks_per_tenant, 100);
        assert_eq!(c.max_event_types_per_tenant, 1000);
        assert_eq!(c.retention_days, 30);
        assert_eq!(c.queues, None);
        assert_eq!(c.retry_schedule.max_attempts(), 8);
        assert_eq!(c.auto_disable_after, DEFAULT_AUTO_DISABLE_AFTER);
    }

    #[test]
    fn local_mode_allows_insecure_targets_unless_told_false() {
        let c = config(Mode::Local, &[]).unwrap();
        assert_eq!(c.table_name, LOCAL_TABLE_NAME);
        assert!(c.allow_insecure_targets);
        let c = config(Mode::Local, &[("ALLOW_INSECURE_TARGETS", "false")]).unwrap();
        assert!(!c.allow_insecure_targets);
    }

    #[test]
    fn bad_values_fail_fast_naming_the_variable() {
        let e = config(Mode::Local, &[("MAX_WEBHOOKS_PER_TENANT", "lots")]).unwrap_err();
        assert_eq!(e.variable, "MAX_WEBHOOKS_PER_TENANT");
        let e = config(Mode::Local, &[("ALLOW_INSECURE_TARGETS", "maybe")]).unwrap_err();
        assert_eq!(e.variable, "ALLOW_INSECURE_TARGETS");
        let e = config(Mode::Local, &[("RETRY_SCHEDULE", "5 minutes")]).unwrap_err();
        assert_eq!(e.variable, "RETRY_SCHEDULE");
        // A step SQS could not park (11 h, jittered to 13 h 12 min) stops the start.
        let e = config(
            Mode::Lambda,
            &[("TABLE_NAME", "t"), ("RETRY_SCHEDULE", "5s,11h")],
        )
        .unwrap_err();
        assert_eq!(e.variable, "RETRY_SCHEDULE");
        assert!(e.reason.contains("step 2 (11h)"), "{}", e.reason);
        let e = config(Mode::Local, &[("INGEST_QUEUE_URL", "http://q")]).unwrap_err();
        assert_eq!(e.variable, "INGEST_QUEUE_URL");
        let c = config(
            Mode::Local,
            &[("RETRY_SCHEDULE", "1s,2s"), ("AUTO_DISABLE_AFTER", "3s")],
        )
        .unwrap();
        assert_eq!(c.retry_schedule.max_attempts(), 3);
        assert_eq!(c.auto_disable_after, Duration::from_secs(3));
        let e = config(Mode::Local, &[("AUTO_DISABLE_AFTER", "5d,1h")]).unwrap_err();
        assert_eq!(e.variable, "AUTO_DISABLE_AFTER");
        assert_eq!(
            config(Mode::Local, &[("MAX_WEBHOOKS_PER_TENANT", "3")])
                .unwrap()
                .max_webhooks_per_tenant,
            3
        );
    }
}
