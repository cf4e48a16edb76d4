//! Lambda: List deliveries.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::LIST_DELIVERIES).await
}
