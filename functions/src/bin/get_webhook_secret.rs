//! Lambda: Read a webhook's signing secret.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::GET_WEBHOOK_SECRET).await
}
