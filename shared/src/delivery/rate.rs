//! Rate limits (SPEC §3, a webhook's `rate_limit`): at most that many attempts per second
//! to the webhook, held across every concurrent `deliver` invocation.
//!
//! Each attempt to a rate-limited webhook first takes a send slot of the current second
//! from the table: one conditional write on a counter item per second, shared by every
//! instance, so the limit holds whatever the concurrency. Past 500 per second the window
//! is split into shards (a random one per attempt, each with its share of the limit), so
//! no counter item takes more than 500 writes a second, half a partition's capacity.
//!
//! A delivery refused a slot is not attempted and not failed: it waits `pending` as a
//! retry task (see `decide::defer`), like one held back by a circuit breaker. The instance
//! hands the refused ones successive future seconds, `limit` to a second, so a burst
//! drains at the rate instead of coming back all at once and being refused again. A
//! webhook without a limit costs nothing here: no read, no write.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, MutexGuard};

use super::breaker::Hold;
use crate::domain::webhook::Webhook;
use crate::storage::{DeliveryStore, StoreResult};

/// The most send slots one counter item gives out in a second.
pub const SLOTS_PER_SHARD: u32 = 500;

/// Whether an attempt may be made now.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Go,
    /// The webhook's slots for this second are taken: wait this long.
    Wait(Hold),
}

/// How many window shards a limit needs.
pub fn shards(limit: u32) -> u32 {
    limit.div_ceil(SLOTS_PER_SHARD).max(1)
}

/// The slots of `shard` in a window of `limit` split into `shards`: the shares add up to
/// the limit exactly.
pub fn allowance(limit: u32, shards: u32, shard: u32) -> u32 {
    limit / shards + u32::from(shard < limit % shards)
}

/// The next free seconds this instance hands out to refused deliveries, per webhook.
#[derive(Default)]
pub struct RateQueue {
    next: Mutex<HashMap<(String, String), (i64, u32)>>,
}

impl RateQueue {
    fn next(&self) -> MutexGuard<'_, HashMap<(String, String), (i64, u32)>> {
        self.next.lock()
    }

    /// The second a delivery refused in `second` should come back in: the next one, or a
    /// later one once `limit` refused deliveries have been handed each of those.
    pub fn place(&self, tenant_id: &str, webhook_id: &str, second: i64, limit: u32) -> i64 {
        let mut next = self.next();
        let queue = next
            .entry((tenant_id.to_string(), webhook_id.to_string()))
            .or_insert((second + 1, 0));
        if queue.0 <= second {
            *queue = (second + 1, 0);
        }
        if queue.1 >= limit {
            *queue = (queue.0 + 1, 0);
        }
        queue.1 += 1;
        queue.0
    }
}

/// Takes a send slot for an attempt to `webhook` at `now`, or says how long to wait.
pub async fn admit(
    store: &dyn DeliveryStore,
    queue: &RateQueue,
    webhook: &Webhook,
    now: DateTime<Utc>,
    random: f64,
) -> StoreResult<Admit> {
    let Some(limit) = webhook.rate_limit else {
        return Ok(Admit::Go);
    };
    let second = now.timestamp();
    let shards = shards(limit);
    let shard = ((random.clamp(0.0, 1.0) * f64::from(shards)) as u32).min(shards - 1);
    let allowance = allowance(limit, shards, shard);
    if store
        .take_send_slot(&webhook.tenant_id, &webhook.id, second, shard, allowance)
        .await?
    {
        return Ok(Admit::Go);
    }
    let back_in = queue.place(&webhook.tenant_id, &webhook.id, second, limit);
    Ok(Admit::Wait(wait_until(back_in, now)))
}

/// The hold that brings a delivery back within second `second`.
fn wait_until(second: i64, now: DateTime<Utc>) -> Hold {
    let millis = (second * 1000 - now.timestamp_millis()).max(0) as u64;
    Hold {
        wait: Duration::from_millis(millis),
        spread: Duration::from_millis(900),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStore;

    fn limited(limit: u32) -> Webhook {
        let mut wh = crate::domain::webhook::tests::sample();
        wh.rate_limit = Some(limit);
        wh
    }

    #[test]
    fn shards_split_the_limit_exactly_and_none_takes_more_than_500() {
        for limit in [1, 2, 499, 500, 501, 1000, 1001, 7777, 10_000] {
            let n = shards(limit);
            let shares: Vec<u32> = (0..n).map(|s| allowance(limit, n, s)).collect();
            assert_eq!(shares.iter().sum::<u32>(), limit, "{limit}");
            assert!(shares.iter().all(|&s| s <= SLOTS_PER_SHARD), "{limit}");
        }
        assert_eq!(shards(1), 1);
        assert_eq!(shards(10_000), 20);
    }

    #[tokio::test]
    async fn no_more_than_the_limit_goes_in_one_second_and_the_next_second_opens_again() {
        let store = MemoryStore::new();
        let queue = RateQueue::default();
        let wh = limited(3);
        let t0 = crate::domain::parse_time("2026-03-01T00:00:00.250Z").unwrap();
        let mut admitted = 0;
        let mut waits = Vec::new();
        for i in 0..10 {
            match admit(&store, &queue, &wh, t0, f64::from(i) / 10.0)
                .await
                .unwrap()
            {
                Admit::Go => admitted += 1,
                Admit::Wait(hold) => waits.push(hold.wait),
            }
        }
        assert_eq!(admitted, 3);
        // The seven refused come back 3 to a second: in 0.75 s (x3), 1.75 s (x3), 2.75 s.
        let ms = |n: u64| Duration::from_millis(n);
        assert_eq!(
            waits,
            vec![
                ms(750),
                ms(750),
                ms(750),
                ms(1750),
                ms(1750),
                ms(1750),
                ms(2750)
            ]
        );
        let t1 = t0 + chrono::TimeDelta::seconds(1);
        assert_eq!(
            admit(&store, &queue, &wh, t1, 0.5).await.unwrap(),
            Admit::Go
        );
        let unlimited = crate::domain::webhook::tests::sample();
        store.fail_next(1);
        assert_eq!(
            admit(&store, &queue, &unlimited, t0, 0.5).await.unwrap(),
            Admit::Go,
            "no limit, no storage call"
        );
    }

    #[tokio::test]
    async fn a_high_limit_is_held_across_its_shards() {
        let store = MemoryStore::new();
        let queue = RateQueue::default();
        let wh = limited(1200);
        let t0 = crate::domain::parse_time("2026-03-01T00:00:00Z").unwrap();
        let mut admitted = 0;
        for i in 0..3000u32 {
            // Every shard in turn, as random picks spread them.
            let random = f64::from(i % 3) / 3.0 + 0.01;
            if admit(&store, &queue, &wh, t0, random).await.unwrap() == Admit::Go {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 1200);
    }
}
