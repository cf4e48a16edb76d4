//! The HTTP client that delivers: pooled keep-alive connections over rustls, connect 5 s,
//! total 15 s, no redirects, and (outside local mode) the SSRF guard on every request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::domain::delivery::{Attempt, excerpt};
use crate::domain::retry::parse_retry_after;
use crate::netguard::is_forbidden;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(15);
/// Response bytes read (then dropped) so the connection can go back to the pool.
const MAX_BODY_READ: usize = 64 * 1024;

pub const USER_AGENT: &str = concat!("webhooks-rs/", env!("CARGO_PKG_VERSION"));

/// Resolves names and drops every forbidden address, so a connection only ever goes to an
/// address that was checked (no DNS rebinding between check and connect).
struct GuardedResolver;

/// What the guard says of a target it will not connect to, whatever the reason: a name
/// that resolves only to private addresses and one that does not resolve at all read the
/// same, so a tenant cannot map internal DNS names or addresses through the service.
pub const NOT_PUBLIC: &str = "the host does not resolve to a public address";

/// The guard's refusal, found again in a failed request's chain of causes.
#[derive(Debug)]
struct NotPublic;

impl std::fmt::Display for NotPublic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(NOT_PUBLIC)
    }
}

impl std::error::Error for NotPublic {}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), 0)).await
            {
                Ok(found) => found.collect(),
                Err(_) => Vec::new(),
            };
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| !is_forbidden(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(NotPublic) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// Resolves only `localhost`, without asking DNS: for tests, fuzzing and benchmarks, whose
/// traffic must never leave this machine whatever URL a generated input names.
struct LoopbackResolver;

impl Resolve for LoopbackResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            if host == "localhost" {
                let addrs: Addrs = Box::new(std::iter::once(SocketAddr::from(([127, 0, 0, 1], 0))));
                Ok(addrs)
            } else {
                Err(format!("{host}: only loopback targets are allowed here").into())
            }
        })
    }
}

/// Where outbound requests may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetPolicy {
    /// Public addresses only: the SSRF guard (every deployment).
    PublicOnly,
    /// Anywhere (local mode, so a receiver on this machine works).
    Any,
    /// 127.0.0.0/8, ::1 and `localhost` only, with no DNS lookup at all.
    LoopbackOnly,
}

impl TargetPolicy {
    pub fn from_config(config: &crate::config::Config) -> Self {
        if config.deliver_only_to_loopback {
            TargetPolicy::LoopbackOnly
        } else if config.allow_insecure_targets {
            TargetPolicy::Any
        } else {
            TargetPolicy::PublicOnly
        }
    }
}

/// The delivery client, built once per process.
#[derive(Clone, Debug)]
pub struct DeliveryClient {
    http: reqwest::Client,
    policy: TargetPolicy,
}

/// A webhook's URL, parsed once: a fan-out sends each webhook up to one request per event
/// of the batch. An unparseable URL becomes a failed attempt that says so.
pub type Target = Result<Url, String>;

pub fn parse_target(url: &str) -> Target {
    Url::parse(url).map_err(|e| format!("invalid URL: {e}"))
}

/// What one request needs.
pub struct Outgoing<'a> {
    pub url: &'a Target,
    pub body: Bytes,
    pub headers: Vec<(&'static str, String)>,
    /// The webhook's custom headers (none of them a name the service sets: see
    /// `domain::headers`).
    pub custom: &'a [(String, String)],
    /// Basic credentials: username and password.
    pub auth: Option<(&'a str, &'a str)>,
}

/// What the pipeline needs to send a request: the HTTP client here, a scripted double in
/// unit tests.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Sends one request and reports what happened; a failure is an attempt with an error.
    async fn send(&self, outgoing: Outgoing<'_>) -> Sent;
    /// Completes a verified TLS handshake with the URL's host.
    async fn probe_tls(&self, url: &str) -> Result<(), String>;
}

/// An answer slower than this counts against its webhook as no answer does (its breaker):
/// a receiver that holds each request for seconds holds the deliver function's concurrency
/// as surely as one that never answers.
pub const SLOW_ANSWER: Duration = Duration::from_secs(5);
/// How long the response body may take once the headers are in (its first 64 KiB are
/// read, then the connection goes back to the pool).
pub const BODY_DEADLINE: Duration = Duration::from_secs(2);

/// The result of one request: the attempt to record, and the receiver's `Retry-After`.
#[derive(Debug)]
pub struct Sent {
    pub attempt: Attempt,
    pub retry_after: Option<Duration>,
    /// An answer came, but slowly: after [`SLOW_ANSWER`], or with a body still trickling
    /// at [`BODY_DEADLINE`].
    pub slow: bool,
}

impl Sent {
    /// Whether the receiver answered, and in time: what its breaker counts.
    pub fn answered_in_time(&self) -> bool {
        self.attempt.status_code.is_some() && !self.slow
    }
}

impl DeliveryClient {
    pub fn new(policy: TargetPolicy) -> Self {
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            // Never a proxy from the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY): it,
            // not the guarded resolver, would resolve the target.
            .no_proxy();
        builder = match policy {
            TargetPolicy::PublicOnly => builder.dns_resolver(Arc::new(GuardedResolver)),
            TargetPolicy::LoopbackOnly => builder.dns_resolver(Arc::new(LoopbackResolver)),
            TargetPolicy::Any => builder,
        };
        DeliveryClient {
            http: builder
                .build()
                .expect("the delivery client's settings are valid"),
            policy,
        }
    }

    /// A literal address never reaches the resolver; judge it here.
    fn refuse_literal(&self, url: &Url) -> Option<String> {
        let ip = match url.host()? {
            Host::Ipv4(ip) => IpAddr::V4(ip),
            Host::Ipv6(ip) => IpAddr::V6(ip),
            Host::Domain(_) => return None,
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match self.policy {
            TargetPolicy::PublicOnly if is_forbidden(ip) => Some(NOT_PUBLIC.to_string()),
            TargetPolicy::LoopbackOnly if !ip.is_loopback() => {
                Some(format!("{ip}: only loopback targets are allowed here"))
            }
            _ => None,
        }
    }
}

/// How long `verify_tls` waits for the handshake: well within `create_webhook`'s 10 s
/// Lambda timeout, with room for the create itself.
pub const TLS_PROBE_TIMEOUT: Duration = Duration::from_secs(4);

#[async_trait]
impl Transport for DeliveryClient {
    /// Completes a verified TLS handshake with the URL's host (a HEAD request), under the
    /// same target policy as deliveries.
    async fn probe_tls(&self, url: &str) -> Result<(), String> {
        let url = parse_target(url)?;
        if let Some(refusal) = self.refuse_literal(&url) {
            return Err(refusal);
        }
        self.http
            .head(url)
            .timeout(TLS_PROBE_TIMEOUT)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| describe(&e))
    }

    /// Sends one request and reports what happened. Never fails: a failure is an attempt
    /// with an error.
    async fn send(&self, outgoing: Outgoing<'_>) -> Sent {
        let at = crate::domain::now();
        let started = Instant::now();
        let elapsed = |started: Instant| started.elapsed().as_millis() as u64;
        let refused = |error: String| Sent {
            attempt: Attempt {
                at,
                status_code: None,
                response_time: 0,
                error: Some(error),
                response_excerpt: None,
            },
            retry_after: None,
            slow: false,
        };
        let url = match outgoing.url {
            Ok(url) => url,
            Err(e) => return refused(e.clone()),
        };
        if let Some(refusal) = self.refuse_literal(url) {
            return refused(refusal);
        }
        let mut request = self
            .http
            .post(url.clone())
            .header("content-type", "application/json")
            .body(outgoing.body);
        for (name, value) in outgoing.custom {
            request = request.header(name.as_str(), value.as_str());
        }
        for (name, value) in outgoing.headers {
            request = request.header(name, value);
        }
        if let Some((username, password)) = outgoing.auth {
            request = request.basic_auth(username, Some(password));
        }
        match request.send().await {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, at));
                let mut body = Vec::new();
                let mut read_error = None;
                let read = async {
                    while body.len() < MAX_BODY_READ {
                        match response.chunk().await {
                            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                            Ok(None) => break,
                            Err(e) => {
                                read_error = Some(describe(&e));
                                break;
                            }
                        }
                    }
                };
                // A body that trickles is cut off: the status decided the attempt.
                let cut = tokio::time::timeout(BODY_DEADLINE, read).await.is_err();
                let response_time = elapsed(started);
                let error = match (status, read_error) {
                    (200..=299, None) => None,
                    (300..=399, _) => Some(format!("redirect ({status}) not followed")),
                    (_, Some(e)) => Some(e),
                    _ => Some(format!("HTTP {status}")),
                };
                Sent {
                    attempt: Attempt {
                        at,
                        status_code: Some(status),
                        response_time,
                        error,
                        response_excerpt: excerpt(&body),
                    },
                    retry_after,
                    slow: cut || Duration::from_millis(response_time) >= SLOW_ANSWER,
                }
            }
            Err(e) => Sent {
                attempt: Attempt {
                    at,
                    status_code: None,
                    response_time: elapsed(started),
                    error: Some(describe(&e)),
                    response_excerpt: None,
                },
                retry_after: None,
                slow: false,
            },
        }
    }
}

/// A short, URL-free account of a failed request.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "error reading the response"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<NotPublic>() {
            return format!("could not connect: {NOT_PUBLIC}");
        }
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-answer HTTP server on loopback; returns its port.
    async fn answer_once(response: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer).await;
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        port
    }

    fn outgoing(url: &Target) -> Outgoing<'_> {
        Outgoing {
            url,
            body: Bytes::from_static(b"{}"),
            headers: vec![("webhook-id", "evt_x".into())],
            custom: &[],
            auth: None,
        }
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";

    #[tokio::test]
    async fn the_guard_refuses_loopback_by_literal_and_by_name() {
        let port = answer_once(OK).await;
        let guarded = DeliveryClient::new(TargetPolicy::PublicOnly);
        for url in [
            format!("http://127.0.0.1:{port}/hook"),
            format!("http://[::ffff:127.0.0.1]:{port}/hook"),
            format!("http://localhost:{port}/hook"),
        ] {
            let sent = guarded.send(outgoing(&parse_target(&url))).await;
            assert_eq!(sent.attempt.status_code, None, "{url}");
            // No oracle: neither the name nor what it resolves to.
            let error = sent.attempt.error.unwrap();
            assert!(error.ends_with(NOT_PUBLIC), "{url}: {error}");
            assert!(
                !error.contains("127.0.0.1") && !error.contains("localhost"),
                "{error}"
            );
            let probed = guarded.probe_tls(&url).await.unwrap_err();
            assert!(probed.ends_with(NOT_PUBLIC), "{url}: {probed}");
        }
        // Local mode delivers to the same address.
        let open = DeliveryClient::new(TargetPolicy::Any);
        let sent = open
            .send(outgoing(&parse_target(&format!(
                "http://127.0.0.1:{port}/hook"
            ))))
            .await;
        assert_eq!(sent.attempt.status_code, Some(200));
        assert_eq!(sent.attempt.response_excerpt.as_deref(), Some("hello"));
        assert!(sent.attempt.succeeded());
    }

    #[tokio::test]
    async fn loopback_only_never_leaves_the_machine_and_never_asks_dns() {
        let port = answer_once(OK).await;
        let local = DeliveryClient::new(TargetPolicy::LoopbackOnly);
        let sent = local
            .send(outgoing(&parse_target(&format!(
                "http://localhost:{port}/hook"
            ))))
            .await;
        assert_eq!(sent.attempt.status_code, Some(200));
        for url in [
            "http://93.184.216.34/x",
            "https://example.com/x",
            "http://10.0.0.1/x",
        ] {
            let sent = local.send(outgoing(&parse_target(url))).await;
            assert_eq!(sent.attempt.status_code, None, "{url}");
            assert!(sent.attempt.error.unwrap().contains("loopback"), "{url}");
            assert!(
                local.probe_tls(url).await.unwrap_err().contains("loopback"),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn redirects_are_reported_not_followed_and_retry_after_is_read() {
        let port = answer_once(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:9/elsewhere\r\nretry-after: 30\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await;
        let sent = DeliveryClient::new(TargetPolicy::Any)
            .send(outgoing(&parse_target(&format!(
                "http://127.0.0.1:{port}/hook"
            ))))
            .await;
        assert_eq!(sent.attempt.status_code, Some(307));
        assert!(!sent.attempt.succeeded());
        assert!(sent.attempt.error.unwrap().contains("redirect"));
        assert_eq!(sent.retry_after, Some(Duration::from_secs(30)));
    }

    #[tokio::test]
    async fn an_unparseable_url_is_a_failed_attempt_that_says_so() {
        let sent = DeliveryClient::new(TargetPolicy::Any)
            .send(outgoing(&parse_target("http://exa mple.com/hook")))
            .await;
        assert_eq!(sent.attempt.status_code, None);
        assert!(sent.attempt.error.unwrap().starts_with("invalid URL"));
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let sent = DeliveryClient::new(TargetPolicy::Any)
            .send(outgoing(&parse_target(&format!(
                "http://127.0.0.1:{port}/hook"
            ))))
            .await;
        assert_eq!(sent.attempt.status_code, None);
        assert!(sent.attempt.error.unwrap().starts_with("could not connect"));
    }
}
