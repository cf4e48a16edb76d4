//! Lambda: Publish an event.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::PUBLISH_EVENT).await
}
