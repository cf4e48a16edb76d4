//! Lambda: Change a webhook.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::UPDATE_WEBHOOK).await
}
