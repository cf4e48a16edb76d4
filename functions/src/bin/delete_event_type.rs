//! Lambda: Remove an event type from the catalogue.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("delete_event_type").await
}
