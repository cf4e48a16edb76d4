//! Lambda: Send a delivery again now.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::RETRY_DELIVERY).await
}
