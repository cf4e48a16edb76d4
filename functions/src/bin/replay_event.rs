//! Lambda: Deliver an event again, as new deliveries.

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_route(&shared::api::routes::REPLAY_EVENT).await
}
