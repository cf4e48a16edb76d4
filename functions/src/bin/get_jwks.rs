//! Lambda: The public keys that verify access tokens (JWKS), outside the authorizer.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_public_route(&shared::api::public_routes::GET_JWKS).await
}
