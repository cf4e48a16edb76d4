//! What a warm deliver instance remembers between batches: each tenant's view (its
//! webhooks and catalogue), kept while the tenant's version says it is current, each
//! webhook's health as last recorded (see [`super::health`]), its circuit breaker (see
//! [`super::breaker`]) and its rate queue (see [`super::rate`]). The event types' compiled
//! schemas are [`crate::schemas`]'s, shared with the publish route.
//!
//! A batch checks the version of every tenant it has events or retries for: one small
//! consistent read per tenant per batch, instead of reading the whole configuration. A
//! webhook created before a publish bumped the version before the publish was answered, so
//! the batch that carries the event sees the change and reads the view again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use parking_lot::{Mutex, MutexGuard};

use super::breaker::Breakers;
use super::health::HealthCache;
use crate::storage::{StoreResult, TenantView, WebhookStore};

/// Most webhooks held in cached views, all tenants together: the least recently used views
/// are forgotten beyond it (a Lambda instance's memory is small).
pub const MAX_CACHED_WEBHOOKS: usize = 20_000;

struct Cached {
    view: Arc<TenantView>,
    used: Instant,
}

/// The views and health a warm instance keeps.
#[derive(Default)]
pub struct Warm {
    views: Mutex<HashMap<String, Cached>>,
    pub health: HealthCache,
    pub breakers: Breakers,
    pub rates: super::rate::RateQueue,
}

impl Warm {
    fn views(&self) -> MutexGuard<'_, HashMap<String, Cached>> {
        self.views.lock()
    }

    /// The current view of each tenant: the cached one if the tenant's version is still
    /// its version, else read again. A tenant whose storage cannot be read now maps to the
    /// error (its messages come back).
    pub async fn current_views<'t>(
        &self,
        store: &dyn WebhookStore,
        tenants: impl IntoIterator<Item = &'t str>,
    ) -> HashMap<String, StoreResult<Arc<TenantView>>> {
        let mut tenants: Vec<&str> = tenants.into_iter().collect();
        tenants.sort_unstable();
        tenants.dedup();
        let read = join_all(
            tenants
                .iter()
                .map(|tenant| self.current_view(store, tenant)),
        )
        .await;
        tenants.into_iter().map(str::to_string).zip(read).collect()
    }

    async fn current_view(
        &self,
        store: &dyn WebhookStore,
        tenant: &str,
    ) -> StoreResult<Arc<TenantView>> {
        let cached = self.views().get(tenant).map(|c| c.view.clone());
        if let Some(view) = cached
            && store.tenant_version(tenant).await? == view.version
        {
            self.touch(tenant);
            return Ok(view);
        }
        let view = Arc::new(store.load_tenant(tenant).await?);
        self.keep(tenant, view.clone());
        Ok(view)
    }

    fn touch(&self, tenant: &str) {
        if let Some(c) = self.views().get_mut(tenant) {
            c.used = Instant::now();
        }
    }

    fn keep(&self, tenant: &str, view: Arc<TenantView>) {
        let mut views = self.views();
        views.insert(
            tenant.to_string(),
            Cached {
                view,
                used: Instant::now(),
            },
        );
        let mut held: usize = views.values().map(|c| c.view.webhooks.len()).sum();
        while held > MAX_CACHED_WEBHOOKS && views.len() > 1 {
            let Some(oldest) = views
                .iter()
                .filter(|(t, _)| t.as_str() != tenant)
                .min_by_key(|(_, c)| c.used)
                .map(|(t, _)| t.clone())
            else {
                break;
            };
            if let Some(gone) = views.remove(&oldest) {
                held -= gone.view.webhooks.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::webhook::{Secret, Webhook};
    use crate::storage::memory::MemoryStore;

    async fn hook(store: &MemoryStore, tenant: &str, n: usize) -> Webhook {
        let wh = Webhook::new(
            tenant,
            format!("https://example.com/{n}"),
            vec!["*".into()],
            Secret::generate(),
        );
        store.create_webhook(&wh, 100).await.unwrap();
        wh
    }

    #[tokio::test]
    async fn a_view_is_kept_while_its_version_holds_and_read_again_after_a_change() {
        let store = MemoryStore::new();
        let warm = Warm::default();
        hook(&store, "acme", 0).await;
        let first = warm.current_views(&store, ["acme"]).await;
        let first = first["acme"].as_ref().unwrap().clone();
        assert_eq!(first.webhooks.len(), 1);
        let again = warm.current_views(&store, ["acme", "acme"]).await;
        assert!(Arc::ptr_eq(&first, again["acme"].as_ref().unwrap()));
        // A webhook created now is in the very next batch's view.
        hook(&store, "acme", 1).await;
        let after = warm.current_views(&store, ["acme"]).await;
        assert_eq!(after["acme"].as_ref().unwrap().webhooks.len(), 2);
    }

    #[tokio::test]
    async fn unreadable_storage_is_an_error_for_that_tenant_and_nothing_is_cached() {
        let store = MemoryStore::new();
        let warm = Warm::default();
        store.fail_next(1);
        let views = warm.current_views(&store, ["acme"]).await;
        assert!(views["acme"].is_err());
        assert!(warm.views().is_empty());
    }

    #[tokio::test]
    async fn the_least_recently_used_views_go_beyond_the_limit() {
        let store = MemoryStore::new();
        let warm = Warm::default();
        for tenant in ["a", "b"] {
            hook(&store, tenant, 0).await;
            warm.current_views(&store, [tenant]).await;
        }
        // Pretend "a"'s view holds the limit: caching another forgets the older "b".
        let mut big = (*warm.views()["a"].view).clone();
        big.webhooks = vec![big.webhooks[0].clone(); MAX_CACHED_WEBHOOKS];
        warm.keep("a", Arc::new(big));
        assert!(!warm.views().contains_key("b"));
        assert!(warm.views().contains_key("a"));
    }
}
