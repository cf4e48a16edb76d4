//! Global secondary indexes are eventually consistent, in DynamoDB and in the local
//! emulator (an index query sees the table as it was a second ago): the paths that read one
//! (release, cancel, recover) must not leave behind what they did not see yet.

use std::time::Duration;

use serde_json::json;

use crate::receiver::{Answer, Receiver};
use crate::utils::{Client, Stack, all_with_status, id, local_url};

const WAIT: Duration = Duration::from_secs(30);

/// A tenant's paused webhook at `url` with three deliveries just buffered (the table says
/// so at once; the index does not yet): the tenant and the webhook's path.
async fn just_buffered(stack: &Stack, url: &str) -> (Client, String) {
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    let wh = client.webhook(url, json!("*")).await;
    let path = format!("/v1/webhooks/{}", id(&wh));
    client
        .post_empty(&format!("{path}/pause"))
        .await
        .assert_status(200);
    for n in 0..3 {
        client.publish("user.created", json!({"n": n})).await;
    }
    client
        .wait_for_deliveries("", WAIT, |d| all_with_status(d, 3, "buffered"))
        .await;
    (client, path)
}

#[tokio::test]
async fn an_unpause_right_after_the_buffering_releases_everything_in_order() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let (client, path) = just_buffered(&stack, &receiver.url("late")).await;
    let reply = client.post_empty(&format!("{path}/unpause")).await;
    assert_eq!(reply.assert_status(200)["released"], 3);
    let got = receiver.wait_for("late", 3, WAIT).await;
    let order: Vec<i64> = got
        .iter()
        .map(|r| r.json()["data"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(order, vec![0, 1, 2], "in the order they happened");
    client
        .wait_for_deliveries("", WAIT, |d| all_with_status(d, 3, "succeeded"))
        .await;
}

#[tokio::test]
async fn a_delete_right_after_the_buffering_cancels_everything() {
    let stack = Stack::start().await;
    let (client, path) = just_buffered(&stack, &local_url("gone")).await;
    client.delete(&path).await.assert_status(200);
    client
        .wait_for_deliveries("", WAIT, |d| all_with_status(d, 3, "cancelled"))
        .await;
}

#[tokio::test]
async fn a_recover_right_after_the_failures_sends_them_again_once() {
    // One quick retry, then failed for good.
    let stack = Stack::start_with(&[("RETRY_SCHEDULE", "200ms")]).await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    let wh = client.webhook(&receiver.url("flaky"), json!("*")).await;
    receiver.script("flaky", vec![Answer::Status(500); 4]);
    let since = shared::domain::format_time(shared::domain::now());
    for n in 0..2 {
        client.publish("user.created", json!({"n": n})).await;
    }
    client
        .wait_for_deliveries("", WAIT, |d| all_with_status(d, 2, "failed"))
        .await;
    let recover = client
        .post(
            &format!("/v1/webhooks/{}/recover", id(&wh)),
            json!({ "since": since }),
        )
        .await;
    recover.assert_status(202);
    client
        .wait_for_deliveries("", WAIT, |d| all_with_status(d, 2, "succeeded"))
        .await;
    // Each sent once more (two attempts, then the recover's), not once per pass.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(receiver.requests("flaky").len(), 6);
}
