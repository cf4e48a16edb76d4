//! Lambda: A link that signs a browser into the tenant portal.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::CREATE_PORTAL_SESSION).await
}
