//! Lambda: List webhooks.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("list_webhooks").await
}
