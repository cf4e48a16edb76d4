//! Lambda: Pause a webhook.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("pause_webhook").await
}
