//! `make smoke` (SPEC §11): the whole path, checked from outside the stack, against the
//! local stack or a deployed one: a key's tenant, an event type, a webhook to the smoke
//! receiver, an event, its delivery (signed: the Standard Webhooks signature is verified
//! here, with its own HMAC), and its record, `succeeded` after one attempt. It cleans up
//! what it made.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

/// Where the smoke test runs.
#[derive(Clone, Debug)]
pub struct Target {
    /// The API's base URL (`ApiUrl`).
    pub api_url: String,
    /// A key with every scope.
    pub api_key: String,
    /// The smoke receiver's URL (`SmokeReceiverUrl`), reachable from the stack.
    pub receiver_url: String,
}

/// How long each step may take.
const STEP: Duration = Duration::from_secs(60);

/// Runs the smoke test; `progress` hears each step as it passes. Answers the seconds it
/// took.
pub async fn run(target: &Target, progress: impl Fn(&str)) -> Result<f64, String> {
    let started = Instant::now();
    let http = shared::tls::http_client();
    let api = target.api_url.trim_end_matches('/');
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = http
            .request(method, format!("{api}{path}"))
            .bearer_auth(&target.api_key)
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let path = path.to_string();
        async move {
            let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            Ok::<_, String>((status, body))
        }
    };
    let expect = |step: &str, (status, body): (u16, Value), want: u16| {
        if status == want {
            Ok(body)
        } else {
            Err(format!("{step}: answered {status}, not {want}: {body}"))
        }
    };

    let me = expect(
        "GET /v1/me",
        call(reqwest::Method::GET, "/v1/me", None).await?,
        200,
    )?;
    progress(&format!(
        "the key is tenant {}'s",
        me["tenant_id"].as_str().unwrap_or("?")
    ));
    let token = format!("smoke-{}", ulid::Ulid::new().to_string().to_lowercase());
    let event_type = format!("smoke.{}", token.replace('-', "_"));
    expect(
        "POST /v1/event-types",
        call(
            reqwest::Method::POST,
            "/v1/event-types",
            Some(json!({"name": event_type, "description": "make smoke"})),
        )
        .await?,
        201,
    )?;
    let key: [u8; 32] = shared::domain::api_key::random_bytes();
    let secret = format!("whsec_{}", STANDARD.encode(key));
    let receiver = format!("{}/{token}", target.receiver_url.trim_end_matches('/'));
    let webhook = expect(
        "POST /v1/webhooks",
        call(
            reqwest::Method::POST,
            "/v1/webhooks",
            Some(json!({"url": receiver, "events": [event_type], "secret": secret, "name": "make smoke"})),
        )
        .await?,
        201,
    )?;
    let webhook_id = webhook["id"].as_str().unwrap_or_default().to_string();
    progress(&format!(
        "event type {event_type} and webhook {webhook_id} made"
    ));
    let outcome = deliver_and_check(
        &call,
        &expect,
        &event_type,
        &token,
        &webhook_id,
        &key,
        &receiver,
        &progress,
    )
    .await;
    // Cleaned up whatever happened.
    let _ = call(
        reqwest::Method::DELETE,
        &format!("/v1/webhooks/{webhook_id}"),
        None,
    )
    .await;
    let _ = call(
        reqwest::Method::DELETE,
        &format!("/v1/event-types/{event_type}"),
        None,
    )
    .await;
    outcome?;
    progress("the webhook and the event type are deleted");
    Ok(started.elapsed().as_secs_f64())
}

#[allow(clippy::too_many_arguments)]
async fn deliver_and_check<C, F>(
    call: &C,
    expect: &impl Fn(&str, (u16, Value), u16) -> Result<Value, String>,
    event_type: &str,
    token: &str,
    webhook_id: &str,
    key: &[u8; 32],
    receiver: &str,
    progress: &impl Fn(&str),
) -> Result<(), String>
where
    C: Fn(reqwest::Method, &str, Option<Value>) -> F,
    F: Future<Output = Result<(u16, Value), String>>,
{
    let event = expect(
        "POST /v1/events",
        call(
            reqwest::Method::POST,
            "/v1/events",
            Some(json!({"type": event_type, "data": {"smoke": token}})),
        )
        .await?,
        202,
    )?;
    let event_id = event["id"].as_str().unwrap_or_default().to_string();
    progress(&format!("event {event_id} published"));

    // The receiver got it, signed with the webhook's secret.
    let http = shared::tls::http_client();
    let deadline = Instant::now() + STEP;
    let got = loop {
        let listed: Value = match http.get(receiver).send().await {
            Ok(r) => {
                serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or(Value::Null)
            }
            Err(_) => Value::Null,
        };
        if let Some(first) = listed["received"].as_array().and_then(|a| a.first()) {
            break first.clone();
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the receiver got nothing within {STEP:?} ({receiver})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let header = |name: &str| {
        got["headers"][name]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let body = got["body"].as_str().unwrap_or_default();
    if header("webhook-id") != event_id {
        return Err(format!(
            "the delivery's webhook-id is {:?}, not the event's {event_id}",
            header("webhook-id")
        ));
    }
    let signed = format!(
        "{}.{}.{body}",
        header("webhook-id"),
        header("webhook-timestamp")
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).map_err(|e| e.to_string())?;
    mac.update(signed.as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    if !header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
    {
        return Err(format!(
            "the signature {:?} does not verify",
            header("webhook-signature")
        ));
    }
    let payload: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if payload["type"] != event_type || payload["data"]["smoke"] != token {
        return Err(format!("the delivered payload is not the event: {payload}"));
    }
    progress("the receiver got the event, and its Standard Webhooks signature verifies");

    // Its record says so.
    let deadline = Instant::now() + STEP;
    loop {
        let (status, listed) = call(
            reqwest::Method::GET,
            &format!("/v1/deliveries?webhook_id={webhook_id}"),
            None,
        )
        .await?;
        let delivery = &listed["data"][0];
        if status == 200 && delivery["status"] == "succeeded" {
            if delivery["attempts"] != 1 || delivery["event_id"] != event_id.as_str() {
                return Err(format!(
                    "the record is not one attempt at the event: {delivery}"
                ));
            }
            progress(&format!(
                "delivery {} is succeeded after one attempt",
                delivery["id"].as_str().unwrap_or("?")
            ));
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the delivery's record is not succeeded within {STEP:?}: {listed}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
