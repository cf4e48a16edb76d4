//! Webhook health: when a webhook last got a delivery, and the auto-disable clock (a
//! webhook whose deliveries have all failed for `AUTO_DISABLE_AFTER` is disabled). The
//! decision is pure; saving it is one conditional write, and only when something changed.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::delivery::Attempt;
use crate::domain::format_time;
use crate::domain::webhook::{Webhook, WebhookStatus};
use crate::storage::{ChangeWebhookError, WebhookStore};

/// `last_triggered_at` is refreshed at most this often (one write per webhook per minute).
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

/// The webhook after `attempts`: `last_triggered_at` moved on (at most once a minute), the
/// failure clock started or stopped, and the webhook disabled once every delivery has
/// failed for `disable_after`.
pub fn after(webhook: &Webhook, attempts: &[Tried], disable_after: Duration) -> Webhook {
    let mut next = webhook.clone();
    let Some(latest) = attempts.iter().map(|a| a.at).max() else {
        return next;
    };
    if next
        .last_triggered_at
        .is_none_or(|t| latest - t >= TRIGGER_REFRESH)
    {
        next.last_triggered_at = Some(latest);
    }
    if attempts.iter().any(|a| a.succeeded) {
        next.failing_since = None;
        return next;
    }
    let since = *next.failing_since.get_or_insert(latest);
    let limit = TimeDelta::from_std(disable_after).unwrap_or(TimeDelta::MAX);
    if next.status == WebhookStatus::Active && latest - since >= limit {
        next.status = WebhookStatus::Disabled;
        next.disabled_reason = Some(format!(
            "every delivery failed since {} ({} without a success)",
            format_time(since),
            humanize(disable_after)
        ));
    }
    next
}

fn humanize(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 86400 && s % 86400 == 0 => format!("{} days", s / 86400),
        s if s >= 3600 && s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{s} seconds"),
    }
}

/// Writes the webhook's new health if it changed, conditional on the version read. A
/// tenant's change made meanwhile wins; health catches up at the next attempt. Failures
/// are logged, never fatal: health is bookkeeping, not delivery.
pub async fn save(store: &dyn WebhookStore, before: &Webhook, after: &Webhook) {
    if before == after {
        return;
    }
    if after.status == WebhookStatus::Disabled && before.status != WebhookStatus::Disabled {
        tracing::warn!(webhook_id = %before.id, tenant_id = %before.tenant_id, "webhook disabled after failing deliveries");
    }
    let mut next = after.clone();
    next.version = before.version + 1;
    match store.replace_webhook(before, &next).await {
        Ok(()) | Err(ChangeWebhookError::Conflict | ChangeWebhookError::DuplicateUrl) => {}
        Err(ChangeWebhookError::Store(e)) => {
            tracing::warn!(error = %e, webhook_id = %before.id, "could not record webhook health");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::webhook::tests::sample;

    fn at(text: &str) -> DateTime<Utc> {
        crate::domain::parse_time(text).unwrap()
    }

    fn tried(text: &str, succeeded: bool) -> Tried {
        Tried {
            at: at(text),
            succeeded,
        }
    }

    const FIVE_DAYS: Duration = Duration::from_secs(5 * 86400);

    #[test]
    fn nothing_tried_changes_nothing() {
        let wh = sample();
        assert_eq!(after(&wh, &[], FIVE_DAYS), wh);
    }

    #[test]
    fn last_triggered_moves_at_most_once_a_minute() {
        let mut wh = sample();
        let first = after(&wh, &[tried("2026-03-01T00:00:00Z", true)], FIVE_DAYS);
        assert_eq!(first.last_triggered_at, Some(at("2026-03-01T00:00:00Z")));
        wh = first;
        let soon = after(&wh, &[tried("2026-03-01T00:00:30Z", true)], FIVE_DAYS);
        assert_eq!(soon, wh);
        let later = after(&wh, &[tried("2026-03-01T00:01:00Z", true)], FIVE_DAYS);
        assert_eq!(later.last_triggered_at, Some(at("2026-03-01T00:01:00Z")));
    }

    #[test]
    fn failing_for_the_whole_window_disables_and_a_success_resets_the_clock() {
        let wh = sample();
        let failing = after(&wh, &[tried("2026-03-01T00:00:00Z", false)], FIVE_DAYS);
        assert_eq!(failing.failing_since, Some(at("2026-03-01T00:00:00Z")));
        assert_eq!(failing.status, WebhookStatus::Active);
        let still = after(&failing, &[tried("2026-03-05T23:59:59Z", false)], FIVE_DAYS);
        assert_eq!(still.status, WebhookStatus::Active);
        let disabled = after(&failing, &[tried("2026-03-06T00:00:00Z", false)], FIVE_DAYS);
        assert_eq!(disabled.status, WebhookStatus::Disabled);
        assert_eq!(
            disabled.disabled_reason.as_deref(),
            Some("every delivery failed since 2026-03-01T00:00:00.000Z (5 days without a success)")
        );
        let recovered = after(
            &failing,
            &[
                tried("2026-03-02T00:00:00Z", false),
                tried("2026-03-02T00:00:01Z", true),
            ],
            FIVE_DAYS,
        );
        assert_eq!(recovered.failing_since, None);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(humanize(Duration::from_secs(5 * 86400)), "5 days");
        assert_eq!(humanize(Duration::from_secs(7200)), "2 hours");
        assert_eq!(humanize(Duration::from_secs(3)), "3 seconds");
    }
}
