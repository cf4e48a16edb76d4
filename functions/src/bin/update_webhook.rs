//! Lambda: Change a webhook.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("update_webhook").await
}
