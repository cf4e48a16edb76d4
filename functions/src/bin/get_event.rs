//! Lambda: Read an event and a summary of its deliveries.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::GET_EVENT).await
}
