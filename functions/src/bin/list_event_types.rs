//! Lambda: List the tenant's event types.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::LIST_EVENT_TYPES).await
}
