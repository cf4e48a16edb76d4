//! Lambda: Fan out events and deliver them, signed, with retries.

// One thread: a deliver instance has at most a couple of vCPUs and its work is I/O-bound;
// in `make bench` this used about 10% less CPU per delivery than the multi-thread runtime.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_deliver().await
}
