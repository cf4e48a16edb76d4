//! Lambda: API key authorizer.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_authorizer().await
}
