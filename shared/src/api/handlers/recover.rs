//! Recover (SPEC §3, `recover_webhook`): a webhook's failed deliveries sent again.
//!
//! The request checks the window and queues one task; the deliver function then sends the
//! webhook's failed deliveries created in `[since, until)` a page at a time, oldest first,
//! one after another, each as one more attempt on its record (breakers and rate limits
//! applied). However many there are, the request does the same bounded work.
use serde_json::json;

use super::events::time_field;
use super::webhooks::{load, require_active, webhook_id};
use crate::api::Reply;
use crate::api::error::{ApiError, ApiResult};
use crate::api::request::Call;
use crate::domain::{format_time, now};
use crate::queue::{QueueName, RecoverTask, Task};
use crate::state::AppState;

pub async fn recover_webhook(state: &AppState, call: Call) -> ApiResult<Reply> {
    let id = webhook_id(&call)?;
    let mut body = call.body()?;
    body.allow(&["since", "until"], "")?;
    let since = body.require_string("since")?;
    let until = body.take_string("until")?;
    body.finish("")?;
    let since = time_field("since", &since)?;
    let until = until.map_or(Ok(now()), |text| time_field("until", &text))?;
    if since >= until {
        return Err(ApiError::invalid_field(
            "until",
            "until must be later than since",
        ));
    }
    let webhook = load(state, call.tenant(), &id).await?;
    require_active(&webhook, "unpause it before recovering its deliveries")?;
    let task = Task::Recover(RecoverTask {
        tenant_id: webhook.tenant_id.clone(),
        webhook_id: webhook.id.clone(),
        since: since.timestamp_millis(),
        until: until.timestamp_millis(),
        after: None,
        requested_at: Some(crate::domain::now().timestamp_millis()),
        settle: 0,
    });
    // The first page is read once the index shows every delivery that failed before this
    // request (the index lags the table), so the page's order is the order they happened.
    crate::api::queues(state)?
        .send(QueueName::Delivery, &[(task, crate::delivery::SETTLE_WAIT)])
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "could not queue a recover; answering 503");
            ApiError::unavailable()
        })?;
    Ok(Reply::accepted(json!({
        "webhook_id": webhook.id,
        "since": format_time(since),
        "until": format_time(until),
    })))
}
