//! Lambda: Remove a webhook's Basic credentials.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::DELETE_WEBHOOK_AUTH).await
}
