//! Lambda: List the tenant's event types.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route("list_event_types").await
}
