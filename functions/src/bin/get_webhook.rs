//! Lambda: Read a webhook.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("get_webhook").await
}
