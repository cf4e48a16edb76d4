//! The smoke receiver (`make smoke`, SPEC §11): a receiver a deployed stack can reach, which
//! the template deploys only when its `SmokeReceiver` parameter asks, behind a public
//! Lambda function URL. It keeps each request it gets at `/<token>` (an unguessable path
//! the smoke test picks) for a day, and answers a `GET` of the same path with what it got,
//! so the smoke test can check the signed delivery from outside the stack.

use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Value, json};

use crate::storage::dynamo::layout::{EXPIRES_AT, PK, SK, key, smoke_pk};

/// The most of a request body kept.
pub const MAX_BODY: usize = 64 * 1024;
/// The headers kept (a delivery's own, never a credential).
const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-webhook-signature",
    "x-webhook-signature-previous",
    "x-webhook-event",
    "x-webhook-attempt",
    "x-webhook-test",
];

/// Where the smoke receiver keeps what it got.
#[derive(Clone)]
pub struct SmokeLog {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl SmokeLog {
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str) -> Self {
        SmokeLog {
            client,
            table: table.to_string(),
        }
    }
}

/// A path's token: 16 to 64 of `[A-Za-z0-9_-]`.
fn token(path: &str) -> Option<&str> {
    let token = path.trim_matches('/');
    let fits = (16..=64).contains(&token.len())
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    fits.then_some(token)
}

fn answer(status: u16, body: Value) -> Response<Body> {
    crate::api::json_response(status, &body, None)
}

/// The function URL's handler: `POST /<token>` keeps the request, `GET /<token>` lists what
/// was kept there.
pub async fn receive(log: &SmokeLog, req: Request) -> Response<Body> {
    let path = req.raw_http_path().to_string();
    let Some(token) = token(&path) else {
        return answer(404, json!({"error": "not a smoke path"}));
    };
    let result = match req.method().as_str() {
        "POST" => keep(log, token, &req)
            .await
            .map(|()| json!({"received": true})),
        "GET" => list(log, token).await.map(|got| json!({ "received": got })),
        _ => return answer(405, json!({"error": "GET or POST"})),
    };
    match result {
        Ok(body) => answer(200, body),
        Err(e) => {
            tracing::error!(error = %e, "smoke receiver: storage failed");
            answer(503, json!({"error": "storage failed"}))
        }
    }
}

async fn keep(log: &SmokeLog, token: &str, req: &Request) -> Result<(), String> {
    let body = req.body().as_ref();
    let body = String::from_utf8_lossy(&body[..body.len().min(MAX_BODY)]).into_owned();
    let headers: serde_json::Map<String, Value> = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let value = req.headers().get(*name)?.to_str().ok()?;
            Some((name.to_string(), Value::String(value.to_string())))
        })
        .collect();
    let mut item = key(smoke_pk(token), crate::ids::new_ulid().to_string());
    item.insert(
        "headers".into(),
        AttributeValue::S(Value::Object(headers).to_string()),
    );
    item.insert("body".into(), AttributeValue::S(body));
    item.insert(
        EXPIRES_AT.into(),
        AttributeValue::N((chrono::Utc::now().timestamp() + 86_400).to_string()),
    );
    log.client
        .put_item()
        .table_name(&log.table)
        .set_item(Some(item))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())
}

async fn list(log: &SmokeLog, token: &str) -> Result<Vec<Value>, String> {
    let out = log
        .client
        .query()
        .table_name(&log.table)
        .key_condition_expression("#pk = :pk")
        .expression_attribute_names("#pk", PK)
        .expression_attribute_values(":pk", AttributeValue::S(smoke_pk(token)))
        .consistent_read(true)
        .limit(100)
        .send()
        .await
        .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())?;
    let text = |item: &crate::storage::dynamo::layout::Item, name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    Ok(out
        .items
        .unwrap_or_default()
        .iter()
        .map(|item| {
            json!({
                "at": text(item, SK),
                "headers": serde_json::from_str::<Value>(&text(item, "headers")).unwrap_or(Value::Null),
                "body": text(item, "body"),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unguessable_path_is_a_smoke_path() {
        assert_eq!(token("/abcdefghijklmnop"), Some("abcdefghijklmnop"));
        assert_eq!(token("/short"), None);
        assert_eq!(token("/a/b/c/d/e/f/g/h/i/j"), None);
        assert_eq!(token(&format!("/{}", "x".repeat(65))), None);
    }
}
