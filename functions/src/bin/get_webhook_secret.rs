//! Lambda: Read a webhook's signing secret.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("get_webhook_secret").await
}
