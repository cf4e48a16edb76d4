//! Lambda: The tenant portal's page, script and style, outside the authorizer.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_asset_route(&shared::api::asset_routes::PORTAL).await
}
