//! Lambda: Send a signed test delivery now.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::TEST_WEBHOOK).await
}
