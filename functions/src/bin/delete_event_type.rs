//! Lambda: Remove an event type from the catalogue.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::DELETE_EVENT_TYPE).await
}
