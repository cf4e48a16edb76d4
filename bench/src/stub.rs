//! A zero-latency stand-in for DynamoDB, SQS and KMS that speaks their JSON wire protocols, so
//! the fan-out bench measures the service's own cost: the SDK still builds, signs, sends and
//! parses every request. Items live in memory; condition expressions are not evaluated
//! (the bench writes nothing that conflicts). Only what the deliver path calls is served.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

type Items = Arc<Mutex<BTreeMap<(String, String), Value>>>;

fn key_of(item: &Value) -> (String, String) {
    let s = |name: &str| item[name]["S"].as_str().unwrap_or("").to_string();
    (s("PK"), s("SK"))
}

fn put(items: &Items, item: &Value) {
    items
        .lock()
        .expect("stub lock")
        .insert(key_of(item), item.clone());
}

/// Answers one DynamoDB operation.
fn dynamodb(items: &Items, operation: &str, body: &Value) -> Value {
    match operation {
        "PutItem" => {
            put(items, &body["Item"]);
            json!({})
        }
        "GetItem" => {
            let key = key_of(&body["Key"]);
            match items.lock().expect("stub lock").get(&key) {
                Some(item) => json!({"Item": item}),
                None => json!({}),
            }
        }
        "UpdateItem" | "DeleteItem" | "DescribeTable" => json!({}),
        "BatchWriteItem" => {
            for writes in body["RequestItems"]
                .as_object()
                .into_iter()
                .flat_map(|t| t.values())
            {
                for w in writes.as_array().into_iter().flatten() {
                    if let Some(item) = w.pointer("/PutRequest/Item") {
                        put(items, item);
                    }
                }
            }
            json!({"UnprocessedItems": {}})
        }
        "TransactWriteItems" => {
            for t in body["TransactItems"].as_array().into_iter().flatten() {
                if let Some(item) = t.pointer("/Put/Item") {
                    put(items, item);
                }
            }
            json!({})
        }
        "BatchGetItem" => {
            let mut responses = serde_json::Map::new();
            for (table, request) in body["RequestItems"].as_object().into_iter().flatten() {
                let found: Vec<Value> = request["Keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| items.lock().expect("stub lock").get(&key_of(k)).cloned())
                    .collect();
                responses.insert(table.clone(), Value::Array(found));
            }
            json!({"Responses": responses, "UnprocessedKeys": {}})
        }
        "Query" => {
            let values = &body["ExpressionAttributeValues"];
            let pk = values[":pk"]["S"].as_str().unwrap_or("");
            let prefix = values[":prefix"]["S"].as_str().unwrap_or("");
            let found: Vec<Value> = items
                .lock()
                .expect("stub lock")
                .iter()
                .filter(|((p, s), _)| p == pk && s.starts_with(prefix))
                .map(|(_, item)| item.clone())
                .collect();
            json!({"Items": found, "Count": found.len(), "ScannedCount": found.len()})
        }
        _ => json!({}),
    }
}

/// Answers one SQS operation.
fn sqs(operation: &str, body: &Value) -> Value {
    match operation {
        "SendMessageBatch" => {
            let successful: Vec<Value> = body["Entries"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    json!({"Id": e["Id"], "MessageId": ulid::Ulid::new().to_string(),
                           "MD5OfMessageBody": "00000000000000000000000000000000"})
                })
                .collect();
            json!({"Successful": successful, "Failed": []})
        }
        "SendMessage" => json!({"MessageId": ulid::Ulid::new().to_string(),
                                "MD5OfMessageBody": "00000000000000000000000000000000"}),
        _ => json!({}),
    }
}

/// Answers one KMS operation: data keys "wrapped" by a marker (the bench measures the
/// calls, not the cryptography).
fn kms(operation: &str, body: &Value) -> Value {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    match operation {
        "GenerateDataKey" => {
            let clear: Vec<u8> = (0..32).map(|_| rand_byte()).collect();
            let mut wrapped = b"stub:".to_vec();
            wrapped.extend(&clear);
            json!({"KeyId": body["KeyId"], "Plaintext": STANDARD.encode(&clear),
                   "CiphertextBlob": STANDARD.encode(wrapped)})
        }
        "Decrypt" => {
            let wrapped = STANDARD
                .decode(body["CiphertextBlob"].as_str().unwrap_or(""))
                .unwrap_or_default();
            let clear = wrapped.strip_prefix(b"stub:").unwrap_or_default();
            json!({"KeyId": body["KeyId"], "Plaintext": STANDARD.encode(clear)})
        }
        _ => json!({}),
    }
}

fn rand_byte() -> u8 {
    (ulid::Ulid::new().random() & 0xff) as u8
}

/// Serves the stub on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) {
    let items: Items = Arc::default();
    crate::serve::serve(listener, move |req: crate::serve::Request| {
        let items = Arc::clone(&items);
        async move {
            let target = req
                .headers()
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let (service, operation) = target.split_once('.').unwrap_or(("", ""));
            let (answer, protocol) = if service.starts_with("AmazonSQS") {
                (sqs(operation, &body), "1.0")
            } else if service == "TrentService" {
                (kms(operation, &body), "1.1")
            } else {
                (dynamodb(&items, operation, &body), "1.0")
            };
            // The AWS JSON protocol, 1.0 (DynamoDB, SQS) or 1.1 (KMS).
            hyper::Response::builder()
                .header("content-type", format!("application/x-amz-json-{protocol}"))
                .header("x-amzn-requestid", "stub")
                .body(Full::new(Bytes::from(answer.to_string())))
                .expect("static headers are valid")
        }
    })
    .await;
}
