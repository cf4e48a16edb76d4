//! Webhooks: list, create, read, update, delete, credentials, pause and unpause, and the
//! signing secret.

use std::time::Duration;

use chrono::TimeDelta;
use serde_json::{Map, Value, json};

use super::event_types::missing_event_types;
use crate::api::Reply;
use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::pagination::{CursorScope, page_json, page_request};
use crate::api::request::{Call, JsonObject};
use crate::domain::event_type::subscription_matches;
use crate::domain::filter::Filter;
use crate::domain::headers::{AUTHORIZATION, HeadersIn, MASKED, parse_headers};
use crate::domain::validation::{
    MAX_DESCRIPTION_LENGTH, MAX_NAME_LENGTH, check_length, exact_names, is_valid_event_type_name,
    parse_basic_auth, parse_metadata, parse_rate_limit, parse_secret, parse_subscription,
    parse_webhook_url, unknown_types_error,
};
use crate::domain::webhook::{BasicAuth, Confidential, Secret, Webhook, WebhookStatus};
use crate::domain::{format_time, now};
use crate::ids::IdKind;
use crate::netguard;
use crate::page::paginate;
use crate::queue::{QueueName, Task, WebhookTask};
use crate::state::AppState;
use crate::storage::{ChangeWebhookError, CreateWebhookError};

/// How long a rotated-out secret keeps signing beside the new one.
pub const ROTATION_OVERLAP: TimeDelta = TimeDelta::hours(24);

/// How many times a change is re-applied when another request changed the webhook first.
const CHANGE_ATTEMPTS: usize = 3;

fn cursor_scope(call: &Call) -> CursorScope<'_> {
    CursorScope {
        list: "webhooks",
        tenant_id: call.tenant(),
    }
}

// ---- reading and checking fields ----

fn parse_status(text: &str) -> ApiResult<WebhookStatus> {
    WebhookStatus::parse(text).ok_or_else(|| {
        ApiError::invalid_field("status", "status must be active, paused or disabled")
    })
}

/// The fields create and update share, as sent.
#[derive(Default)]
struct WebhookFields {
    /// `Some(None)` clears (PATCH with null).
    name: Option<Option<String>>,
    description: Option<Option<String>>,
    url: Option<String>,
    events: Option<Vec<String>>,
    status: Option<WebhookStatus>,
    metadata: Option<Map<String, Value>>,
    /// Present: replaces every custom header (`null`: none).
    headers: Option<HeadersIn>,
    /// Present: set, or removed with `null`.
    rate_limit: Option<Option<u32>>,
    /// Present: set (`Some`) or removed with `null` (`None`).
    filter: Option<Option<Filter>>,
}

impl WebhookFields {
    /// The fields a create or an update may set.
    const NAMES: &[&str] = &[
        "name",
        "description",
        "url",
        "events",
        "status",
        "metadata",
        "headers",
        "rate_limit",
        "filter",
    ];

    fn read(body: &mut JsonObject) -> ApiResult<Self> {
        let nullable =
            |body: &mut JsonObject, field: &str, max: usize| -> ApiResult<Option<Option<String>>> {
                let present = body.has(field);
                let value = body.take_string(field)?;
                if let Some(text) = &value {
                    check_length(field, text, max)?;
                }
                Ok(present.then_some(value))
            };
        let name = nullable(body, "name", MAX_NAME_LENGTH)?;
        let description = nullable(body, "description", MAX_DESCRIPTION_LENGTH)?;
        let url = body.take_string("url")?;
        let events = body.take_string_list("events")?;
        let status = body
            .take_string("status")?
            .map(|s| parse_status(&s))
            .transpose()?;
        // `null` clears: no metadata, no headers, no limit, no filter.
        let metadata = body
            .take_nullable("metadata", parse_metadata)?
            .map(Option::unwrap_or_default);
        let headers = body
            .take_nullable("headers", parse_headers)?
            .map(Option::unwrap_or_default);
        let rate_limit = body.take_nullable("rate_limit", |v| parse_rate_limit(&v))?;
        let filter = body.take_nullable("filter", Filter::parse)?;
        Ok(WebhookFields {
            name,
            description,
            url,
            events,
            status,
            metadata,
            headers,
            rate_limit,
            filter,
        })
    }

    /// Checks what needs the network or the catalogue: the URL's target and the event types.
    async fn check(&mut self, state: &AppState, tenant_id: &str) -> ApiResult<()> {
        if let Some(url) = &self.url {
            self.url = Some(check_url(state, url).await?);
        }
        if let Some(events) = self.events.take() {
            self.events = Some(check_subscription(state, tenant_id, events).await?);
        }
        Ok(())
    }

    fn apply(&self, wh: &mut Webhook) {
        if let Some(name) = &self.name {
            wh.name.clone_from(name);
        }
        if let Some(description) = &self.description {
            wh.description.clone_from(description);
        }
        if let Some(url) = &self.url {
            wh.url.clone_from(url);
        }
        if let Some(events) = &self.events {
            wh.events.clone_from(events);
        }
        if let Some(status) = self.status {
            set_status(wh, status);
        }
        if let Some(metadata) = &self.metadata {
            wh.metadata.clone_from(metadata);
        }
        if let Some(headers) = &self.headers {
            wh.headers.clone_from(&headers.plain);
            wh.authorization = match &headers.authorization {
                None => None,
                // The masked value shown by a GET, sent back: the stored value stays.
                Some(value) if value == MASKED && wh.authorization.is_some() => {
                    wh.authorization.clone()
                }
                Some(value) => Some(Confidential::Clear(value.clone())),
            };
        }
        if let Some(rate_limit) = self.rate_limit {
            wh.rate_limit = rate_limit;
        }
        if let Some(filter) = &self.filter {
            wh.filter.clone_from(filter);
        }
    }
}

fn set_status(wh: &mut Webhook, status: WebhookStatus) {
    if wh.status != status {
        wh.status = status;
        wh.disabled_reason = None;
        wh.failing_since = None;
    }
}

/// The URL, normalised, if it may be a webhook target here.
async fn check_url(state: &AppState, text: &str) -> ApiResult<String> {
    let allow_insecure = state.config.allow_insecure_targets;
    let url = parse_webhook_url(text, allow_insecure)?;
    if !allow_insecure && netguard::check_registration_target(&url).is_err() {
        return Err(ApiError::new(
            ErrorCode::InvalidUrl,
            "url points to a private, loopback, link-local or reserved address",
        )
        .with_field("url"));
    }
    Ok(url.to_string())
}

/// The subscription, if well-formed and every exact name is in the catalogue.
async fn check_subscription(
    state: &AppState,
    tenant_id: &str,
    events: Vec<String>,
) -> ApiResult<Vec<String>> {
    let events = parse_subscription(events)?;
    let missing = missing_event_types(state, tenant_id, exact_names(&events)).await?;
    if missing.is_empty() {
        Ok(events)
    } else {
        Err(unknown_types_error(&missing).into())
    }
}

fn read_auth(mut auth: JsonObject) -> ApiResult<BasicAuth> {
    auth.allow(&["username", "password"], "auth")?;
    let username = auth
        .take_string("username")
        .map_err(|e| e.with_field("auth.username"))?
        .ok_or_else(|| ApiError::invalid_field("auth.username", "auth.username is required"))?;
    let password = auth
        .take_string("password")
        .map_err(|e| e.with_field("auth.password"))?
        .ok_or_else(|| ApiError::invalid_field("auth.password", "auth.password is required"))?;
    auth.finish("auth")?;
    Ok(parse_basic_auth(username, password)?)
}

/// Probes the URL's TLS: a handshake with a certificate the platform trusts.
async fn verify_tls(state: &AppState, url: &str) -> ApiResult<()> {
    let failed =
        |message: String| ApiError::new(ErrorCode::TlsValidationFailed, message).with_field("url");
    if !url.starts_with("https://") {
        return Err(failed("verify_tls needs an https url".into()));
    }
    match state.transport.probe_tls(url).await {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::info!(error = %e, "TLS probe failed");
            Err(failed(
                "could not complete a verified TLS handshake with the url's host".into(),
            ))
        }
    }
}

// ---- loading and changing ----

pub(crate) fn webhook_id(call: &Call) -> ApiResult<String> {
    let id = call.path("id")?;
    if IdKind::Webhook.is_valid(&id) {
        Ok(id)
    } else {
        Err(ApiError::webhook_not_found())
    }
}

/// 409 `CONFLICT` for a route that needs an active webhook: `needs` says what for.
pub(crate) fn require_active(webhook: &Webhook, needs: &str) -> ApiResult<()> {
    if webhook.status == WebhookStatus::Active {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::Conflict,
        format!("the webhook is {}: {needs}", webhook.status.as_str()),
    ))
}

pub(crate) async fn load(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<Webhook> {
    state
        .store
        .get_webhook(tenant_id, id)
        .await?
        .ok_or_else(ApiError::webhook_not_found)
}

/// Reads the webhook, applies `change`, and writes it back if anything changed and nobody
/// else wrote it in between (re-reading and re-applying when somebody did).
async fn modify(
    state: &AppState,
    tenant_id: &str,
    id: &str,
    change: impl Fn(&mut Webhook),
) -> ApiResult<Webhook> {
    for _ in 0..CHANGE_ATTEMPTS {
        let current = load(state, tenant_id, id).await?;
        let mut next = current.clone();
        change(&mut next);
        next.check()?;
        if next == current {
            return Ok(current);
        }
        next.version = current.version + 1;
        next.updated_at = now();
        // A new secret or password is sealed before it is stored.
        state.sealer.seal_webhook(&mut next).await?;
        match state.store.replace_webhook(&current, &next).await {
            Ok(()) => return Ok(next),
            Err(ChangeWebhookError::Conflict) => continue,
            Err(ChangeWebhookError::DuplicateUrl) => return Err(duplicate_url()),
            Err(ChangeWebhookError::Store(e)) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        ErrorCode::Conflict,
        "the webhook is being changed by another request; retry",
    ))
}

fn duplicate_url() -> ApiError {
    ApiError::new(
        ErrorCode::DuplicateUrl,
        "a webhook with this url already exists",
    )
    .with_field("url")
}

// ---- handlers ----

pub async fn list_webhooks(state: &AppState, call: Call) -> ApiResult<Reply> {
    let scope = cursor_scope(&call);
    let request = page_request(&call, scope)?;
    let show_auth = call.show_authentication()?;
    let status = call.query("status").map(|s| parse_status(&s)).transpose()?;
    let event = call.query("event");
    if let Some(event) = &event
        && !is_valid_event_type_name(event)
    {
        return Err(ApiError::invalid_field(
            "event",
            "event must be an event type name",
        ));
    }
    let webhooks: Vec<Webhook> = state
        .store
        .list_webhooks(call.tenant())
        .await?
        .into_iter()
        .filter(|wh| status.is_none_or(|s| wh.status == s))
        .filter(|wh| {
            event
                .as_ref()
                .is_none_or(|e| subscription_matches(&wh.events, e))
        })
        .collect();
    let page = paginate(webhooks, |wh| wh.id.as_str(), &request);
    let mut revealed = Vec::new();
    for wh in page.data.iter().filter(|_| show_auth) {
        revealed.push((wh.id.clone(), Revealed::open(state, wh).await?));
    }
    let reply = Reply::ok(page_json(&page, scope, |wh| {
        let opened = revealed.iter().find(|(id, _)| *id == wh.id);
        Revealed::show(opened.map(|(_, r)| r), wh.to_json())
    }));
    Ok(if show_auth { reply.no_store() } else { reply })
}

/// What `show_authentication=true` shows of a webhook: its Basic password and its
/// `authorization` header's value, in the clear.
#[derive(Default)]
struct Revealed {
    password: Option<String>,
    authorization: Option<String>,
}

impl Revealed {
    async fn open(state: &AppState, wh: &Webhook) -> ApiResult<Revealed> {
        Ok(Revealed {
            password: state.sealer.password(wh).await?,
            authorization: state.sealer.authorization(wh).await?,
        })
    }

    /// The webhook object with what was revealed in place (nothing without it).
    fn show(revealed: Option<&Revealed>, mut out: Value) -> Value {
        let Some(revealed) = revealed else {
            return out;
        };
        if let Some(password) = &revealed.password
            && out["auth"].is_object()
        {
            out["auth"]["password"] = json!(password);
        }
        if let Some(value) = &revealed.authorization
            && out["headers"].is_object()
        {
            out["headers"][AUTHORIZATION] = json!(value);
        }
        out
    }
}

pub async fn create_webhook(state: &AppState, call: Call) -> ApiResult<Reply> {
    let mut body = call.body()?;
    let only_on_create = ["auth", "secret", "verify_tls"];
    body.allow(&[WebhookFields::NAMES, &only_on_create].concat(), "")?;
    if !body.has("url") {
        return Err(ApiError::invalid_field("url", "url is required"));
    }
    if !body.has("events") {
        return Err(ApiError::invalid_field("events", "events is required"));
    }
    let mut fields = WebhookFields::read(&mut body)?;
    let auth = body.take_object("auth")?.map(read_auth).transpose()?;
    let secret = body.take_string("secret")?;
    let verify = body.take_bool("verify_tls")?.unwrap_or(false);
    body.finish("")?;
    let secret = secret.as_deref().map(parse_secret).transpose()?;
    fields.check(state, call.tenant()).await?;
    let (Some(url), Some(events)) = (fields.url.clone(), fields.events.clone()) else {
        return Err(ApiError::invalid_request("url and events are required"));
    };
    if verify {
        verify_tls(state, &url).await?;
    }
    let mut webhook = Webhook::new(
        call.tenant(),
        url,
        events,
        secret.unwrap_or_else(Secret::generate),
    );
    webhook.auth = auth;
    fields.apply(&mut webhook);
    webhook.check()?;
    let clear_secret = state.sealer.secret(&webhook).await?;
    state.sealer.seal_webhook(&mut webhook).await?;
    match state
        .store
        .create_webhook(&webhook, state.config.max_webhooks_per_tenant)
        .await
    {
        Ok(()) => {
            let mut out = webhook.to_json();
            out["secret"] = json!(clear_secret.as_str());
            // The answer carries the full secret: no cache may keep it.
            Ok(Reply::created(out).no_store())
        }
        Err(CreateWebhookError::DuplicateUrl) => Err(duplicate_url()),
        Err(CreateWebhookError::LimitReached) => Err(ApiError::new(
            ErrorCode::TooManyWebhooksRegistered,
            format!(
                "a tenant may register at most {} webhooks",
                state.config.max_webhooks_per_tenant
            ),
        )),
        Err(CreateWebhookError::Store(e)) => Err(e.into()),
    }
}

pub async fn get_webhook(state: &AppState, call: Call) -> ApiResult<Reply> {
    let id = webhook_id(&call)?;
    let show_auth = call.show_authentication()?;
    let webhook = load(state, call.tenant(), &id).await?;
    let revealed = match show_auth {
        true => Some(Revealed::open(state, &webhook).await?),
        false => None,
    };
    let reply = Reply::ok(Revealed::show(revealed.as_ref(), webhook.to_json()));
    Ok(if show_auth { reply.no_store() } else { reply })
}

pub async fn update_webhook(state: &AppState, call: Call) -> ApiResult<Reply> {
    let id = webhook_id(&call)?;
    let mut body = call.body()?;
    body.allow(WebhookFields::NAMES, "")?;
    let mut fields = WebhookFields::read(&mut body)?;
    body.finish("")?;
    // 404 before validation: another tenant's id must not learn what would be refused.
    load(state, call.tenant(), &id).await?;
    fields.check(state, call.tenant()).await?;
    let webhook = modify(state, call.tenant(), &id, |wh| fields.apply(wh)).await?;
    Ok(Reply::ok(webhook.to_json()))
}

/// How long after a delete its open deliveries are cancelled (the cancel checks the
/// webhook is gone, so a delete that fails cancels nothing).
const CANCEL_DELAY: Duration = Duration::from_secs(5);

pub async fn delete_webhook(state: &AppState, call: Call) -> ApiResult<Reply> {
    let id = webhook_id(&call)?;
    load(state, call.tenant(), &id).await?;
    let queues = crate::api::queues(state)?;
    let cancel = Task::Cancel(WebhookTask {
        tenant_id: call.tenant().to_string(),
        webhook_id: id.clone(),
        settle: 0,
    });
    queues
        .send(QueueName::Delivery, &[(cancel, CANCEL_DELAY)])
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "could not queue the cancellation of deliveries");
            ApiError::unavailable()
        })?;
    for _ in 0..CHANGE_ATTEMPTS {
        let webhook = load(state, call.tenant(), &id).await?;
        match state.store.delete_webhook(&webhook).await {
            Ok(()) => return Ok(Reply::ok(json!({"id": id, "deleted": true}))),
            Err(ChangeWebhookError::Conflict) => continue,
            Err(ChangeWebhookError::DuplicateUrl) => return Err(ApiError::internal()),
            Err(ChangeWebhookError::Store(e)) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        ErrorCode::Conflict,
        "the webhook is being changed by another request; retry",
    ))
}

pub async fn put_webhook_auth(state: &AppState, call: Call) -> ApiResult<Reply> {
    let id = webhook_id(&call)?;
    let auth = read_auth(call.body()?)?;
    let webhook = modify(state, call.tenant(), &id, |wh| wh.auth = Some(auth.clone())).await?;
    Ok(Reply::ok(webhook.to_json()))
}

pub async fn delete_webhook_auth(state: &AppState, call: Call) -> ApiResult<Reply> {
    let id = webhook_id(&call)?;
    let webhook = modify(state, call.tenant(), &id, |wh| wh.auth = None).await?;
    Ok(Reply::ok(webhook.to_json()))
}

pub async fn pause_webhook(state: &AppState, call: Call) -> ApiResult<Reply> {
    let id = webhook_id(&call)?;
    let webhook = modify(state, call.tenant(), &id, |wh| {
        set_status(wh, WebhookStatus::Paused)
    })
    .await?;
    Ok(Reply::ok(webhook.to_json()))
}

pub async fn unpause_webhook(state: &AppState, call: Call) -> ApiResult<Reply> {
    let id = webhook_id(&call)?;
    let webhook = modify(state, call.tenant(), &id, |wh| {
        set_status(wh, WebhookStatus::Active)
    })
    .await?;
    // The buffered deliveries go out from the deliver function, a page per task, oldest
    // first: an unpause never sends a backlog inside this request. The release is queued
    // whatever the count (a second unpause after a failed queueing sends them too), and the
    // count is one read, kept exact by the writes that buffer and release.
    let queues = crate::api::queues(state)?;
    let task = Task::Release(WebhookTask {
        tenant_id: webhook.tenant_id.clone(),
        webhook_id: webhook.id.clone(),
        settle: 0,
    });
    queues
        .send(QueueName::Delivery, &[(task, Duration::ZERO)])
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "could not queue the release of buffered deliveries");
            ApiError::unavailable()
        })?;
    let released = state
        .store
        .buffered_count(&webhook.tenant_id, &webhook.id)
        .await?;
    let mut out = webhook.to_json();
    out["released"] = json!(released);
    Ok(Reply::ok(out))
}

pub async fn get_webhook_secret(state: &AppState, call: Call) -> ApiResult<Reply> {
    let id = webhook_id(&call)?;
    let webhook = load(state, call.tenant(), &id).await?;
    let secret = state.sealer.secret(&webhook).await?;
    Ok(Reply::ok(json!({"secret": secret.as_str()})).no_store())
}

pub async fn rotate_webhook_secret(state: &AppState, call: Call) -> ApiResult<Reply> {
    let id = webhook_id(&call)?;
    let mut body = call.optional_body()?;
    let given = body.take_string("secret")?;
    body.finish("")?;
    let secret = match given {
        Some(text) => parse_secret(&text)?,
        None => Secret::generate(),
    };
    let current = load(state, call.tenant(), &id).await?;
    if state.sealer.secret(&current).await? == secret {
        return Ok(Reply::ok(json!({
            "secret": secret.as_str(),
            "previous_expires_at": current.previous_expires_at.map(format_time),
        }))
        .no_store());
    }
    let expires_at = now() + ROTATION_OVERLAP;
    let webhook = modify(state, call.tenant(), &id, |wh| {
        // The outgoing secret keeps signing for the overlap, still sealed as it was.
        wh.previous_secret = Some(wh.secret.clone());
        wh.previous_expires_at = Some(expires_at);
        wh.set_secret(secret.clone());
    })
    .await?;
    Ok(Reply::ok(json!({
        "secret": secret.as_str(),
        "previous_expires_at": webhook.previous_expires_at.map(format_time),
    }))
    .no_store())
}
