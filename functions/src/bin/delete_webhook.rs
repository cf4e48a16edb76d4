//! Lambda: Delete a webhook and cancel its open deliveries.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::DELETE_WEBHOOK).await
}
