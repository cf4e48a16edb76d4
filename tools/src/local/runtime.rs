//! A local Lambda Runtime API (the interface a `provided.al2023` function's process polls,
//! `/2018-06-01/runtime/...`): it hands a real binary from `functions/` the invocations
//! given to [`RuntimeApi::invoke`] and returns what the binary answers, so the doorways
//! themselves (not only the handlers they call) run in the tests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

const PREFIX: &str = "/2018-06-01/runtime/";

/// What the function answered: its response, or the error it reported (an invocation
/// error, or an init error before any invocation).
pub type Answer = Result<Value, String>;

struct Invocation {
    id: String,
    event: Value,
    answer: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Pending {
    answers: HashMap<String, oneshot::Sender<Answer>>,
    init_error: Option<String>,
}

/// A runtime API on loopback for one function's process.
pub struct RuntimeApi {
    /// `host:port`, for the process's `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    invocations: mpsc::UnboundedSender<Invocation>,
    pending: Arc<Mutex<Pending>>,
}

impl RuntimeApi {
    /// Listens on a free loopback port.
    pub async fn start() -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("binding the runtime API: {e}"))?;
        let address = listener
            .local_addr()
            .map_err(|e| e.to_string())?
            .to_string();
        let (invocations, queued) = mpsc::unbounded_channel::<Invocation>();
        let queued = Arc::new(tokio::sync::Mutex::new(queued));
        let pending: Arc<Mutex<Pending>> = Arc::default();
        let shared = Arc::clone(&pending);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (queued, pending) = (Arc::clone(&queued), Arc::clone(&shared));
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (queued, pending) = (Arc::clone(&queued), Arc::clone(&pending));
                        async move { Ok::<_, Infallible>(serve(req, queued, pending).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(RuntimeApi {
            address,
            invocations,
            pending,
        })
    }

    /// Invokes the function with `event` and waits at most `within` for its answer.
    pub async fn invoke(&self, event: Value, within: Duration) -> Answer {
        let (answer, answered) = oneshot::channel();
        let id = ulid::Ulid::new().to_string();
        self.invocations
            .send(Invocation { id, event, answer })
            .map_err(|_| "the runtime API is gone".to_string())?;
        let init_error = || self.pending.lock().init_error.clone();
        match tokio::time::timeout(within, answered).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err("the invocation was dropped".into()),
            Err(_) => Err(init_error()
                .map(|e| format!("init error: {e}"))
                .unwrap_or_else(|| format!("no answer within {within:?}"))),
        }
    }
}

fn reply(status: u16, body: impl Into<Bytes>) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .body(Full::new(body.into()))
        .expect("a status and a body are always valid")
}

async fn serve(
    req: hyper::Request<hyper::body::Incoming>,
    queued: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>>,
    pending: Arc<Mutex<Pending>>,
) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return reply(404, "not a runtime API path");
    };
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).into_owned();
    let lock = || pending.lock();
    if rest == "invocation/next" {
        // Long-polls, as Lambda's does, until there is an invocation.
        let Some(invocation) = queued.lock().await.recv().await else {
            return reply(500, "no more invocations");
        };
        lock()
            .answers
            .insert(invocation.id.clone(), invocation.answer);
        let deadline = chrono::Utc::now().timestamp_millis() + 900_000;
        return hyper::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("lambda-runtime-aws-request-id", &invocation.id)
            .header("lambda-runtime-deadline-ms", deadline.to_string())
            .header(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:local",
            )
            .header(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000",
            )
            .body(Full::new(Bytes::from(invocation.event.to_string())))
            .expect("static headers are valid");
    }
    if rest == "init/error" {
        lock().init_error = Some(text);
        return reply(202, "");
    }
    let Some((id, outcome)) = rest
        .strip_prefix("invocation/")
        .and_then(|r| r.split_once('/'))
    else {
        return reply(404, "not a runtime API path");
    };
    let Some(answer) = lock().answers.remove(id) else {
        return reply(400, "unknown request id");
    };
    let result = match outcome {
        "response" => serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text}")),
        "error" => Err(text),
        _ => return reply(404, "not a runtime API path"),
    };
    let _ = answer.send(result);
    reply(202, "")
}
