//! A real HTTP receiver on 127.0.0.1 that records every request (path, headers, body) and
//! answers as each test scripts it: a status, headers, a delay, or a dropped connection.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub enum Answer {
    Status(u16),
    WithHeaders(u16, Vec<(&'static str, String)>),
    /// Waits, then answers with the status.
    Slow(Duration, u16),
    /// Answers the status and headers at once, then trickles the body a byte at a time
    /// for this long.
    Trickle(Duration, u16),
    /// Drops the connection without answering.
    Reset,
}

/// The receiver's answers' body: whole, or trickled.
type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn whole(bytes: &'static [u8]) -> Body {
    Full::new(Bytes::from_static(bytes))
        .map_err(|never| match never {})
        .boxed()
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Answers for successive requests to a path; then `defaults`, then 200.
    scripts: HashMap<String, VecDeque<Answer>>,
    defaults: HashMap<String, Answer>,
    /// Requests to a path that have been answered (or dropped).
    finished: HashMap<String, usize>,
}

#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let shared = Arc::clone(&inner);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let inner = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let inner = Arc::clone(&inner);
                        async move { answer(inner, req).await }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { base, inner }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// The answers for the next requests to `path`, in order.
    pub fn script(&self, path: &str, answers: Vec<Answer>) {
        self.inner
            .lock()
            .unwrap()
            .scripts
            .insert(normalise(path), answers.into());
    }

    /// The answer once the script for `path` is used up.
    pub fn default(&self, path: &str, answer: Answer) {
        self.inner
            .lock()
            .unwrap()
            .defaults
            .insert(normalise(path), answer);
    }

    pub fn requests(&self, path: &str) -> Vec<Received> {
        let path = normalise(path);
        self.inner
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn finished(&self, path: &str) -> usize {
        self.inner
            .lock()
            .unwrap()
            .finished
            .get(&normalise(path))
            .copied()
            .unwrap_or(0)
    }

    /// Waits until `path` has received `n` requests (at most `within`), and returns them.
    pub async fn wait_for(&self, path: &str, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.requests(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{path}: {} of {n} requests within {within:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn normalise(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}

async fn answer(
    inner: Arc<Mutex<Inner>>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Body>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let path = parts.uri.path().to_string();
    let answer = {
        let mut inner = inner.lock().unwrap();
        inner.received.push(Received {
            path: path.clone(),
            headers: parts.headers.clone(),
            body,
            at: Instant::now(),
        });
        let scripted = inner.scripts.get_mut(&path).and_then(VecDeque::pop_front);
        scripted
            .or_else(|| inner.defaults.get(&path).cloned())
            .unwrap_or(Answer::Status(200))
    };
    let finish = |inner: &Arc<Mutex<Inner>>| {
        *inner
            .lock()
            .unwrap()
            .finished
            .entry(path.clone())
            .or_default() += 1;
    };
    let (status, headers) = match answer {
        Answer::Status(status) => (status, vec![]),
        Answer::WithHeaders(status, headers) => (status, headers),
        Answer::Slow(delay, status) => {
            tokio::time::sleep(delay).await;
            (status, vec![])
        }
        Answer::Trickle(duration, status) => {
            finish(&inner);
            let until = Instant::now() + duration;
            let bytes = futures::stream::unfold((), move |()| async move {
                if Instant::now() >= until {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                Some((Ok(hyper::body::Frame::data(Bytes::from_static(b"."))), ()))
            });
            return Ok(hyper::Response::builder()
                .status(status)
                .body(http_body_util::StreamBody::new(bytes).boxed())
                .unwrap());
        }
        Answer::Reset => {
            finish(&inner);
            return Err(std::io::Error::other("dropping the connection"));
        }
    };
    finish(&inner);
    let mut response = hyper::Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(name, value);
    }
    Ok(response.body(whole(b"received")).unwrap())
}
