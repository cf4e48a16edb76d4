//! Webhook health: when a webhook last got a delivery, and the auto-disable clock (a
//! webhook whose deliveries have all failed for `AUTO_DISABLE_AFTER` is disabled). Health
//! lives in a small item of its own, so recording it never rewrites the webhook or bumps
//! the tenant's version. A warm instance remembers what it last recorded ([`HealthCache`])
//! and writes again only when something changes: the failure clock starts or stops, or a
//! minute has passed ([`TRIGGER_REFRESH`]). The decisions are pure functions.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;

use crate::domain::delivery::Attempt;
use crate::domain::format_time;
use crate::domain::webhook::{Webhook, WebhookStatus};
use crate::storage::{ChangeWebhookError, Health, WebhookStore};

/// `last_triggered_at` is refreshed at most this often (one write per webhook per minute
/// per instance). A success seen by one instance within this of another instance's
/// failure may be recorded that much later.
pub const TRIGGER_REFRESH: TimeDelta = TimeDelta::seconds(60);

/// When an attempt was made and whether it succeeded: what a webhook's health needs of it.
#[derive(Clone, Copy, Debug)]
pub struct Tried {
    pub at: DateTime<Utc>,
    pub succeeded: bool,
}

impl From<&Attempt> for Tried {
    fn from(a: &Attempt) -> Self {
        Tried {
            at: a.at,
            succeeded: a.succeeded(),
        }
    }
}

/// What a set of attempts says: the latest of them, and whether any succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub latest: DateTime<Utc>,
    pub succeeded: bool,
}

impl Outcome {
    pub fn of(attempts: &[Tried]) -> Option<Outcome> {
        Some(Outcome {
            latest: attempts.iter().map(|a| a.at).max()?,
            succeeded: attempts.iter().any(|a| a.succeeded),
        })
    }
}

/// Whether the health last recorded (`known`, if this instance knows it) must be written
/// again after `outcome`: the failure clock starts or stops, or the trigger time is a
/// minute old.
pub fn must_record(known: Option<&Health>, outcome: Outcome) -> bool {
    let Some(known) = known else {
        return true;
    };
    outcome.succeeded == known.failing_since.is_some()
        || known
            .last_triggered_at
            .is_none_or(|t| outcome.latest - t >= TRIGGER_REFRESH)
}

/// The webhook disabled, if its deliveries have all failed since `health.failing_since`
/// for `disable_after` by `outcome` (and it is active).
pub fn disabled(
    webhook: &Webhook,
    health: &Health,
    outcome: Outcome,
    disable_after: Duration,
) -> Option<Webhook> {
    let since = health.failing_since?;
    let limit = TimeDelta::from_std(disable_after).unwrap_or(TimeDelta::MAX);
    if outcome.succeeded
        || webhook.status != WebhookStatus::Active
        || outcome.latest - since < limit
    {
        return None;
    }
    let mut next = webhook.clone();
    next.status = WebhookStatus::Disabled;
    next.disabled_reason = Some(format!(
        "every delivery failed since {} ({} without a success)",
        format_time(since),
        humanize(disable_after)
    ));
    next.version = webhook.version + 1;
    Some(next)
}

fn humanize(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 86400 && s % 86400 == 0 => format!("{} days", s / 86400),
        s if s >= 3600 && s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{s} seconds"),
    }
}

/// The health each webhook had when this instance last recorded it.
#[derive(Default)]
pub struct HealthCache {
    known: Mutex<HashMap<(String, String), Health>>,
}

/// Most webhooks whose health one instance remembers; beyond, it starts over.
const MAX_KNOWN: usize = 50_000;

impl HealthCache {
    fn get(&self, webhook: &Webhook) -> Option<Health> {
        let known = self.known.lock();
        known
            .get(&(webhook.tenant_id.clone(), webhook.id.clone()))
            .copied()
    }

    fn set(&self, webhook: &Webhook, health: Health) {
        let mut known = self.known.lock();
        if known.len() >= MAX_KNOWN {
            known.clear();
        }
        known.insert((webhook.tenant_id.clone(), webhook.id.clone()), health);
    }

    fn forget(&self, webhook: &Webhook) {
        let mut known = self.known.lock();
        known.remove(&(webhook.tenant_id.clone(), webhook.id.clone()));
    }
}

/// Notes `attempts` made to `webhook`: records its health when something changed, and
/// disables it once every delivery has failed for `disable_after`. Failures are logged,
/// never fatal: health is bookkeeping, not delivery.
pub async fn note(
    store: &dyn WebhookStore,
    cache: &HealthCache,
    webhook: &Webhook,
    attempts: &[Tried],
    disable_after: Duration,
) {
    let Some(outcome) = Outcome::of(attempts) else {
        return;
    };
    let known = cache.get(webhook);
    let health = if must_record(known.as_ref(), outcome) {
        match store
            .record_health(
                &webhook.tenant_id,
                &webhook.id,
                outcome.latest,
                outcome.succeeded,
            )
            .await
        {
            Ok(Some(health)) => {
                cache.set(webhook, health);
                health
            }
            Ok(None) => {
                cache.forget(webhook); // deleted meanwhile
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, webhook_id = %webhook.id, tenant_id = %webhook.tenant_id, "could not record webhook health");
                return;
            }
        }
    } else {
        known.unwrap_or_default()
    };
    let Some(next) = disabled(webhook, &health, outcome, disable_after) else {
        return;
    };
    tracing::warn!(webhook_id = %webhook.id, tenant_id = %webhook.tenant_id, "webhook disabled after failing deliveries");
    match store.replace_webhook(webhook, &next).await {
        // A tenant's change made meanwhile wins; the next failure decides again.
        Ok(()) | Err(ChangeWebhookError::Conflict | ChangeWebhookError::DuplicateUrl) => {}
        Err(ChangeWebhookError::Store(e)) => {
            tracing::warn!(error = %e, webhook_id = %webhook.id, "could not disable a failing webhook");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::webhook::tests::sample;
    use crate::storage::memory::MemoryStore;

    fn at(text: &str) -> DateTime<Utc> {
        crate::domain::parse_time(text).unwrap()
    }

    fn tried(text: &str, succeeded: bool) -> Tried {
        Tried {
            at: at(text),
            succeeded,
        }
    }

    fn outcome(text: &str, succeeded: bool) -> Outcome {
        Outcome::of(&[tried(text, succeeded)]).unwrap()
    }

    const FIVE_DAYS: Duration = Duration::from_secs(5 * 86400);

    #[test]
    fn nothing_tried_says_nothing_and_any_success_counts() {
        assert_eq!(Outcome::of(&[]), None);
        let o = Outcome::of(&[
            tried("2026-03-01T00:00:01Z", false),
            tried("2026-03-01T00:00:00Z", true),
        ])
        .unwrap();
        assert_eq!(o.latest, at("2026-03-01T00:00:01Z"));
        assert!(o.succeeded);
    }

    #[test]
    fn health_is_written_when_the_clock_starts_or_stops_or_once_a_minute() {
        assert!(must_record(None, outcome("2026-03-01T00:00:00Z", true)));
        let fine = Health {
            last_triggered_at: Some(at("2026-03-01T00:00:00Z")),
            failing_since: None,
        };
        assert!(!must_record(
            Some(&fine),
            outcome("2026-03-01T00:00:30Z", true)
        ));
        assert!(must_record(
            Some(&fine),
            outcome("2026-03-01T00:01:00Z", true)
        ));
        assert!(must_record(
            Some(&fine),
            outcome("2026-03-01T00:00:30Z", false)
        ));
        let failing = Health {
            failing_since: Some(at("2026-03-01T00:00:00Z")),
            ..fine
        };
        assert!(!must_record(
            Some(&failing),
            outcome("2026-03-01T00:00:30Z", false)
        ));
        assert!(must_record(
            Some(&failing),
            outcome("2026-03-01T00:00:30Z", true)
        ));
    }

    #[test]
    fn failing_for_the_whole_window_disables_an_active_webhook() {
        let wh = sample();
        let failing = Health {
            last_triggered_at: None,
            failing_since: Some(at("2026-03-01T00:00:00Z")),
        };
        let early = outcome("2026-03-05T23:59:59Z", false);
        assert_eq!(disabled(&wh, &failing, early, FIVE_DAYS), None);
        let due = outcome("2026-03-06T00:00:00Z", false);
        let off = disabled(&wh, &failing, due, FIVE_DAYS).unwrap();
        assert_eq!(off.status, WebhookStatus::Disabled);
        assert_eq!(off.version, wh.version + 1);
        assert_eq!(
            off.disabled_reason.as_deref(),
            Some("every delivery failed since 2026-03-01T00:00:00.000Z (5 days without a success)")
        );
        assert_eq!(
            disabled(
                &wh,
                &failing,
                outcome("2026-03-06T00:00:00Z", true),
                FIVE_DAYS
            ),
            None
        );
        let mut paused = wh.clone();
        paused.status = WebhookStatus::Paused;
        assert_eq!(disabled(&paused, &failing, due, FIVE_DAYS), None);
        assert_eq!(disabled(&wh, &Health::default(), due, FIVE_DAYS), None);
    }

    #[tokio::test]
    async fn noting_attempts_writes_only_what_changed_and_disables_at_the_end_of_the_window() {
        let store = MemoryStore::new();
        let cache = HealthCache::default();
        let wh = sample();
        store.create_webhook(&wh, 10).await.unwrap();
        let note_at = |text: &'static str, ok: bool| {
            let (store, cache, wh) = (&store, &cache, &wh);
            async move { note(store, cache, wh, &[tried(text, ok)], FIVE_DAYS).await }
        };
        note_at("2026-03-01T00:00:00Z", false).await;
        let stored = store
            .get_webhook(&wh.tenant_id, &wh.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.failing_since, Some(at("2026-03-01T00:00:00Z")));
        // Within the minute and still failing: storage is not called (the failure armed
        // for the next call is still there afterwards).
        store.fail_next(1);
        note_at("2026-03-01T00:00:10Z", false).await;
        assert!(store.get_webhook(&wh.tenant_id, &wh.id).await.is_err());
        note_at("2026-03-06T00:00:00Z", false).await;
        let stored = store
            .get_webhook(&wh.tenant_id, &wh.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.status, WebhookStatus::Disabled);
        assert_eq!(stored.last_triggered_at, Some(at("2026-03-06T00:00:00Z")));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(humanize(Duration::from_secs(5 * 86400)), "5 days");
        assert_eq!(humanize(Duration::from_secs(7200)), "2 hours");
        assert_eq!(humanize(Duration::from_secs(3)), "3 seconds");
    }
}
