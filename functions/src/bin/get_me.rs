//! Lambda: The calling key's tenant and scopes.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::GET_ME).await
}
