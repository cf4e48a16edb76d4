//! Lambda: Delete a webhook and cancel its open deliveries.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("delete_webhook").await
}
