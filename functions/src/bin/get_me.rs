//! Lambda: The calling key's tenant and scopes.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("get_me").await
}
