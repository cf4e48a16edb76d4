//! Lambda: Read a delivery and its attempts.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::GET_DELIVERY).await
}
