//! Lambda: The smoke receiver behind its function URL (deployed only with SmokeReceiver=true).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_smoke_receiver().await
}
