//! Lambda: Add an event type to the catalogue.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::CREATE_EVENT_TYPE).await
}
