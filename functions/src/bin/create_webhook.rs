//! Lambda: Register a webhook.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::CREATE_WEBHOOK).await
}
