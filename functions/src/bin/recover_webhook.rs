//! Lambda: Send a webhook's failed deliveries again, in pages through deliver.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::RECOVER_WEBHOOK).await
}
