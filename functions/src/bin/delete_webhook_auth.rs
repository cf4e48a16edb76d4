//! Lambda: Remove a webhook's Basic credentials.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("delete_webhook_auth").await
}
