//! The bench's HTTP servers on loopback (the receivers, the storage stub, the stub runtime
//! API): one accept loop, every connection served over HTTP/1.1 with keep-alive.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub type Request = hyper::Request<Incoming>;
pub type Reply = hyper::Response<Full<Bytes>>;

/// Answers every request on connections accepted from `listener` with `handle`, until the
/// listener fails or the process ends.
pub async fn serve<H, F>(listener: TcpListener, handle: H)
where
    H: Fn(Request) -> F + Clone + Send + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    while let Ok((stream, _)) = listener.accept().await {
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let reply = handle(req);
                async move { Ok::<_, Infallible>(reply.await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `200 OK` with the body `ok`.
pub fn ok() -> Reply {
    hyper::Response::new(Full::new(Bytes::from_static(b"ok")))
}
