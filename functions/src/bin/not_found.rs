//! Lambda: The 404 of every request no route matches (the API's `$default` route).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_asset_route(&shared::api::asset_routes::NOT_FOUND).await
}
