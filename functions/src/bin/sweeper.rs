//! Lambda: Queue again whatever should have finished and did not (on a schedule).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_sweeper().await
}
