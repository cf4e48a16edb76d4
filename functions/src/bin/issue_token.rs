//! Lambda: The OAuth2 token endpoint (client credentials), outside the authorizer.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_public_route(&shared::api::public_routes::ISSUE_TOKEN).await
}
