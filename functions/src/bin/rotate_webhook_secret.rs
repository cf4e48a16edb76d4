//! Lambda: Rotate a webhook's signing secret.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("rotate_webhook_secret").await
}
