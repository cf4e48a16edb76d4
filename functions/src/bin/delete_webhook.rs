//! Lambda: Delete a webhook.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("delete_webhook").await
}
