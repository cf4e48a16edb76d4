//! Lambda: Unpause a webhook and release its buffered deliveries.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::UNPAUSE_WEBHOOK).await
}
