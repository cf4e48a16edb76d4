//! Cold start: the time from exec to a binary's first request for work from the Lambda
//! runtime API, against a stub runtime API on loopback that records the request and never
//! answers (the process is then killed).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::mpsc;

const NEXT_INVOCATION: &str = "/2018-06-01/runtime/invocation/next";

/// A runtime API that reports the arrival of every `invocation/next` request.
pub async fn stub_runtime_api() -> (String, mpsc::UnboundedReceiver<Instant>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding");
    let address = listener.local_addr().expect("address").to_string();
    let (arrived, arrivals) = mpsc::unbounded_channel();
    tokio::spawn(crate::serve::serve(
        listener,
        move |req: crate::serve::Request| {
            let arrived = arrived.clone();
            async move {
                if req.uri().path() == NEXT_INVOCATION {
                    let _ = arrived.send(Instant::now());
                    // Hold the request: the process waits here until it is killed.
                    std::future::pending::<()>().await;
                }
                hyper::Response::new(Full::new(Bytes::new()))
            }
        },
    ));
    (address, arrivals)
}

/// Milliseconds from exec to the first `invocation/next`, `runs` times.
pub async fn measure(
    binary: &Path,
    api: &str,
    arrivals: &mut mpsc::UnboundedReceiver<Instant>,
    runs: usize,
) -> Result<Vec<f64>, String> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        while arrivals.try_recv().is_ok() {}
        let started = Instant::now();
        let mut child = Command::new(binary)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("AWS_LAMBDA_RUNTIME_API", api)
            .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("TABLE_NAME", "bench")
            .env(
                "INGEST_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/000000000000/ingest",
            )
            .env(
                "INGEST_DLQ_URL",
                "https://sqs.us-east-1.amazonaws.com/000000000000/ingest-dlq",
            )
            .env(
                "DELIVERY_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/000000000000/delivery",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let arrived = tokio::time::timeout(Duration::from_secs(10), arrivals.recv()).await;
        let _ = child.kill();
        let _ = child.wait();
        match arrived {
            Ok(Some(at)) => times.push((at - started).as_secs_f64() * 1000.0),
            _ => {
                return Err(format!(
                    "{} never asked for an invocation",
                    binary.display()
                ));
            }
        }
    }
    Ok(times)
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
