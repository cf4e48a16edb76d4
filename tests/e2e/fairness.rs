//! Fairness under a hostile tenant (SPEC §6), with `make run`'s defaults (four pollers per
//! queue, the 15 s request timeout, the default retry schedule): once one tenant's
//! webhooks have timed out a few times, while it keeps publishing bursts of events to
//! them, another tenant's first attempts still arrive within 3 seconds. The bursts go on
//! past the breakers' cooldown, so the probes to the hanging endpoints (each held 15 s)
//! and the held-back deliveries coming back at once are part of what the calm tenant
//! must not feel.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use shared::delivery::breaker::FIRST_COOLDOWN;

use crate::receiver::{Answer, Receiver};
use crate::utils::Stack;

/// Hostile tenant's webhooks, each hanging past the timeout.
const HANGING: usize = 3;

#[tokio::test]
async fn a_tenant_whose_webhooks_hang_does_not_starve_another() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let hostile = stack.tenant().await;
    hostile.event_types(&["load.tick"]).await;
    for i in 0..HANGING {
        let path = format!("hang{i}");
        receiver.default(&path, Answer::Slow(Duration::from_secs(30), 200));
        hostile.webhook(&receiver.url(&path), json!("*")).await;
    }
    let calm = stack.tenant().await;
    calm.event_types(&["order.paid"]).await;
    calm.webhook(&receiver.url("calm"), json!("*")).await;

    // The hostile tenant's webhooks time out a few times: three events each.
    for n in 0..3 {
        hostile.publish("load.tick", json!({"n": n})).await;
    }
    hostile
        .wait_for_deliveries("", Duration::from_secs(60), |d| {
            d.len() == 3 * HANGING && d.iter().all(|r| r["attempts"].as_u64() >= Some(1))
        })
        .await;
    let timed_out = hostile.deliveries("").await;
    let id = timed_out[0]["id"].as_str().unwrap();
    let record = hostile.get(&format!("/v1/deliveries/{id}")).await;
    let error = record.assert_status(200)["attempt_log"][0]["error"].clone();
    assert!(
        error.as_str().is_some_and(|e| e.contains("timed out")),
        "{error}"
    );

    // It keeps publishing bursts, past the breakers' cooldown (their probes hang too);
    // the other tenant's first attempts still go out at once.
    let tripped = Instant::now();
    let until = tripped + FIRST_COOLDOWN + Duration::from_secs(10);
    let mut latencies = Vec::new();
    let mut round = 0;
    while round < 10 || Instant::now() < until {
        for n in 0..10 {
            hostile
                .publish("load.tick", json!({"round": round, "n": n}))
                .await;
        }
        let published = Instant::now();
        calm.publish("order.paid", json!({"round": round})).await;
        let got = receiver
            .wait_for("calm", round + 1, Duration::from_secs(20))
            .await;
        latencies.push(got[round].at.duration_since(published));
        tokio::time::sleep(Duration::from_millis(500)).await;
        round += 1;
    }
    let probed = (0..HANGING)
        .map(|i| receiver.requests(&format!("hang{i}")).len())
        .collect::<Vec<_>>();
    assert!(
        probed.iter().any(|&n| n > 3),
        "a probe went out while the bursts went on: {probed:?}"
    );
    eprintln!(
        "fairness: the calm tenant's first attempts took {latencies:?}; requests to the hanging endpoints: {probed:?}"
    );
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(3),
        "the calm tenant's first attempts took {latencies:?}"
    );
    // The hostile tenant's new events were held back, not attempted inline: each waits as
    // a pending delivery with no attempt.
    let held: Vec<Value> = hostile
        .deliveries("status=pending")
        .await
        .into_iter()
        .filter(|d| d["attempts"] == 0)
        .collect();
    assert!(!held.is_empty(), "the breaker held deliveries back");
}
