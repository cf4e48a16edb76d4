//! Lambda: List webhooks.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::LIST_WEBHOOKS).await
}
