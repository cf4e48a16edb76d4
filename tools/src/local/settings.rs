//! What `make run`, the tests' stacks and `webhooks-admin --local` read besides the
//! service's own settings (`shared::config::Config`), which a Lambda function never needs.

use std::collections::HashMap;

use std::time::Duration;

use shared::config::{ConfigError, parse_number};
use shared::duration::parse_duration;

/// Where the local stack's emulator listens unless `EMULATOR_PORT` says otherwise.
pub const DEFAULT_EMULATOR_PORT: u16 = 4566;

/// How often the local stack sweeps unless `LOCAL_SWEEP_INTERVAL` says otherwise.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Local pollers per queue unless `LOCAL_POLLERS` says otherwise.
pub const DEFAULT_LOCAL_POLLERS: u32 = 4;

/// The local stack's own settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalSettings {
    /// The API's port on 127.0.0.1 (`PORT`, default 3000; 0 picks a free one).
    pub port: u16,
    /// The dev key for tenant `dev` (`DEV_API_KEY`); generated when unset.
    pub dev_api_key: Option<String>,
    /// The port the local stack starts its emulator on (`EMULATOR_PORT`, default 4566).
    pub emulator_port: u16,
    /// Pollers per queue driving the deliver function (`LOCAL_POLLERS`, default 4, as
    /// Lambda runs several invocations at once); 0 serves the API only.
    pub pollers: u32,
    /// The visibility timeout, in seconds, a local poller asks for when it receives
    /// (`LOCAL_VISIBILITY_TIMEOUT`); unset keeps the queue's own (template.yaml: 18 min).
    /// A few seconds bring a message held by a killed or failed invocation back quickly.
    pub visibility_timeout: Option<u32>,
    /// How often the local stack runs the sweeper (`LOCAL_SWEEP_INTERVAL`, default 60s, as
    /// the template's schedule runs it in AWS); `0s` turns it off.
    pub sweep_interval: Option<Duration>,
    /// How long the local gateway keeps the authorizer's answer per Authorization header
    /// (`AUTHORIZER_CACHE_TTL_SECONDS`, the template's `AuthorizerCacheTtlSeconds`);
    /// unset keeps the template's default (60 s), as a stack deployed with defaults.
    pub authorizer_cache_ttl: Option<Duration>,
}

impl Default for LocalSettings {
    fn default() -> Self {
        LocalSettings {
            port: 3000,
            dev_api_key: None,
            emulator_port: DEFAULT_EMULATOR_PORT,
            pollers: DEFAULT_LOCAL_POLLERS,
            visibility_timeout: None,
            sweep_interval: Some(DEFAULT_SWEEP_INTERVAL),
            authorizer_cache_ttl: None,
        }
    }
}

impl LocalSettings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_vars(|name| vars.get(name).cloned())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let defaults = LocalSettings::default();
        Ok(LocalSettings {
            port: parse_port("PORT", get("PORT"), defaults.port)?,
            dev_api_key: get("DEV_API_KEY"),
            emulator_port: parse_port(
                "EMULATOR_PORT",
                get("EMULATOR_PORT"),
                defaults.emulator_port,
            )?,
            pollers: match get("LOCAL_POLLERS") {
                Some(text) => text.trim().parse::<u32>().map_err(|_| ConfigError {
                    variable: "LOCAL_POLLERS",
                    reason: format!("expected a whole number, got {text:?}"),
                })?,
                None => defaults.pollers,
            },
            visibility_timeout: match get("LOCAL_VISIBILITY_TIMEOUT") {
                Some(text) => Some(parse_number("LOCAL_VISIBILITY_TIMEOUT", Some(text), 0)?),
                None => None,
            },
            sweep_interval: match get("LOCAL_SWEEP_INTERVAL") {
                Some(text) => {
                    let every = parse_duration(text.trim()).map_err(|reason| ConfigError {
                        variable: "LOCAL_SWEEP_INTERVAL",
                        reason,
                    })?;
                    (!every.is_zero()).then_some(every)
                }
                None => defaults.sweep_interval,
            },
            authorizer_cache_ttl: match get("AUTHORIZER_CACHE_TTL_SECONDS") {
                Some(text) => match text.trim().parse::<u64>() {
                    Ok(seconds) if seconds <= 3600 => Some(Duration::from_secs(seconds)),
                    _ => {
                        return Err(ConfigError {
                            variable: "AUTHORIZER_CACHE_TTL_SECONDS",
                            reason: format!("expected 0 to 3600 seconds, got {text:?}"),
                        });
                    }
                },
                None => None,
            },
        })
    }
}

fn parse_port(
    variable: &'static str,
    value: Option<String>,
    default: u16,
) -> Result<u16, ConfigError> {
    match value {
        None => Ok(default),
        Some(text) => text.trim().parse::<u16>().map_err(|_| ConfigError {
            variable,
            reason: format!("expected a port number, got {text:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<LocalSettings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LocalSettings::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(settings(&[]).unwrap(), LocalSettings::default());
        let s = settings(&[
            ("LOCAL_POLLERS", "0"),
            ("LOCAL_VISIBILITY_TIMEOUT", "3"),
            ("PORT", "0"),
            ("LOCAL_SWEEP_INTERVAL", "0s"),
        ])
        .unwrap();
        assert_eq!((s.pollers, s.visibility_timeout, s.port), (0, Some(3), 0));
        assert_eq!(s.sweep_interval, None);
        let s = settings(&[("LOCAL_SWEEP_INTERVAL", "2s")]).unwrap();
        assert_eq!(s.sweep_interval, Some(Duration::from_secs(2)));
    }

    #[test]
    fn bad_values_fail_naming_the_variable() {
        for (variable, value) in [
            ("LOCAL_POLLERS", "-1"),
            ("LOCAL_VISIBILITY_TIMEOUT", "0"),
            ("LOCAL_VISIBILITY_TIMEOUT", "soon"),
            ("PORT", "http"),
            ("EMULATOR_PORT", "70000"),
            ("LOCAL_SWEEP_INTERVAL", "soon"),
            ("AUTHORIZER_CACHE_TTL_SECONDS", "3601"),
        ] {
            assert_eq!(
                settings(&[(variable, value)]).unwrap_err().variable,
                variable
            );
        }
    }
}
