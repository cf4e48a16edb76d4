//! The per-tenant API rate limit on every authenticated route (SPEC §6): at most
//! `TENANT_RATE_LIMIT` requests a second per tenant, bursts of twice that, held across every
//! function instance by one conditional write per request (`storage::LimitStore`). Past
//! it: 429 `RATE_LIMITED` with `Retry-After`. Storage trouble lets the request through
//! (the limit protects the other tenants; it must not take the API down with it).

use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::domain::rate_limit::{Admission, RateLimit};
use crate::state::AppState;

/// Admits one request of `tenant_id`, or answers 429 with when to come back.
pub async fn admit(state: &AppState, tenant_id: &str) -> ApiResult<()> {
    let Some(rate) = state.config.tenant_rate_limit else {
        return Ok(());
    };
    let limit = RateLimit::per_second(rate);
    let now = chrono::Utc::now().timestamp_micros();
    let hint = state.limit_hints.get(tenant_id);
    match state
        .store
        .admit_request(tenant_id, &limit, now, hint)
        .await
    {
        Ok(Admission::Admitted { tat }) => {
            state.limit_hints.put(tenant_id, tat);
            Ok(())
        }
        Ok(Admission::Refused { retry_after_us }) => {
            let seconds = (retry_after_us.max(1) as u64).div_ceil(1_000_000);
            tracing::info!(
                tenant_id,
                retry_after_s = seconds,
                "over the tenant's API rate limit"
            );
            Err(ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "over this tenant's API rate limit ({rate} requests a second, bursts of {}); \
                     retry after the time in Retry-After",
                    limit.burst
                ),
            )
            .with_retry_after(seconds))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the rate limit could not be read; the request goes through");
            Ok(())
        }
    }
}
