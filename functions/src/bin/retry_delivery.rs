//! Lambda: Send a delivery again now.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("retry_delivery").await
}
