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
use crate::utils::{Client, Stack};

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
    let latencies = flood_and_time(&hostile, &calm, &receiver).await;
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

/// Slow receivers count as hanging ones (SPEC §6): a tenant whose endpoints answer at once
/// and then trickle their body, or answer 2xx just before the timeout, while it keeps
/// publishing bursts to them, does not hold back another tenant's first attempts either.
#[tokio::test]
async fn a_tenant_whose_webhooks_answer_slowly_does_not_starve_another() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let hostile = stack.tenant().await;
    hostile.event_types(&["load.tick"]).await;
    let slow = 10;
    for i in 0..slow {
        let path = format!("slow{i}");
        let answer = if i % 2 == 0 {
            Answer::Trickle(Duration::from_secs(15), 200)
        } else {
            Answer::Slow(Duration::from_millis(14_900), 200)
        };
        receiver.default(&path, answer);
        hostile.webhook(&receiver.url(&path), json!("*")).await;
    }
    let calm = stack.tenant().await;
    calm.event_types(&["order.paid"]).await;
    calm.webhook(&receiver.url("calm"), json!("*")).await;

    // The hostile tenant's webhooks answer slowly a few times: three events each (their
    // breakers open only if a slow answer counts as none).
    for n in 0..3 {
        hostile.publish("load.tick", json!({"n": n})).await;
    }
    hostile
        .wait_for_deliveries("", Duration::from_secs(60), |d| {
            d.len() == 3 * slow && d.iter().all(|r| r["attempts"].as_u64() >= Some(1))
        })
        .await;

    // It keeps publishing bursts, past the breakers' cooldown; the other tenant's first
    // attempts still go out at once.
    let latencies = flood_and_time(&hostile, &calm, &receiver).await;
    eprintln!("fairness: the calm tenant's first attempts took {latencies:?}");
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(3),
        "the calm tenant's first attempts took {latencies:?}"
    );
    // The slow answers tripped the breakers: later deliveries wait as retry tasks, with no
    // attempt, instead of holding the deliver function for seconds each.
    let held = hostile
        .deliveries("status=pending")
        .await
        .into_iter()
        .filter(|d| d["attempts"] == 0)
        .count();
    assert!(
        held > 0,
        "the breakers held slow endpoints' deliveries back"
    );
    // A trickled body is cut off: its attempt took about the body deadline, not 15 s.
    let attempted = hostile.deliveries("status=succeeded").await;
    assert!(!attempted.is_empty(), "slow answers still succeed");
}

/// The hostile tenant publishes bursts of ten events, past the breakers' cooldown (and at
/// least ten rounds), each followed by one event of the calm tenant: how long each of the
/// calm tenant's first attempts took to reach the receiver.
async fn flood_and_time(hostile: &Client, calm: &Client, receiver: &Receiver) -> Vec<Duration> {
    let until = Instant::now() + FIRST_COOLDOWN + Duration::from_secs(10);
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
    latencies
}
