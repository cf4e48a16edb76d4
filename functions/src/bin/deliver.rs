//! Lambda: Fan out events and deliver them, signed, with retries.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_deliver().await
}
