//! A zero-latency stand-in for DynamoDB, SQS and KMS that speaks their JSON wire protocols, so
//! the fan-out bench measures the service's own cost: the SDK still builds, signs, sends and
//! parses every request. Items live in memory; condition expressions are not evaluated
//! (the bench writes nothing that conflicts). Only what the deliver path calls is served.
//! Every write and read is billed as DynamoDB would bill it (`billing`), indexes included.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::billing::{Bill, Item, Schema, apply_update, stored_bytes};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

type Items = BTreeMap<(String, String), Item>;

/// The stub's state: the items, what DynamoDB would have billed for them, and the messages
/// sent to the delivery queue (so the bench can hand retry tasks back to the pipeline).
pub struct Store {
    schema: Schema,
    items: Items,
    bill: Bill,
    messages: Vec<Value>,
}

type Shared = Arc<Mutex<Store>>;

fn key_of(schema: &Schema, item: &Item) -> (String, String) {
    let s = |name: &str| {
        item.get(name)
            .and_then(|v| v["S"].as_str())
            .unwrap_or("")
            .to_string()
    };
    (s(&schema.hash), s(&schema.range))
}

fn object(value: &Value) -> Item {
    value.as_object().cloned().unwrap_or_default()
}

impl Store {
    fn put(&mut self, item: Item, transactional: bool) {
        let key = key_of(&self.schema, &item);
        let old = self.items.get(&key).cloned();
        self.bill
            .write(&self.schema, old.as_ref(), Some(&item), transactional);
        self.items.insert(key, item);
    }

    fn delete(&mut self, key: &Item, transactional: bool) {
        let key = key_of(&self.schema, key);
        if let Some(old) = self.items.remove(&key) {
            self.bill
                .write(&self.schema, Some(&old), None, transactional);
        } else {
            // A delete of nothing still costs a unit.
            self.bill.write(&self.schema, None, None, transactional);
        }
    }

    fn update(&mut self, request: &Value, transactional: bool) -> Item {
        let key = key_of(&self.schema, &object(&request["Key"]));
        let old = self.items.get(&key).cloned();
        let mut new = old.clone().unwrap_or_else(|| object(&request["Key"]));
        apply_update(
            &mut new,
            request["UpdateExpression"].as_str().unwrap_or(""),
            &request["ExpressionAttributeNames"],
            &request["ExpressionAttributeValues"],
        );
        self.bill
            .write(&self.schema, old.as_ref(), Some(&new), transactional);
        self.items.insert(key, new.clone());
        new
    }

    fn get(&mut self, key: &Value, consistent: bool) -> Option<Item> {
        let key = key_of(&self.schema, &object(key));
        let found = self.items.get(&key).cloned();
        let partition = format!("table {}", key.0);
        match &found {
            Some(item) => self.bill.read(partition, &[item], consistent),
            None => self.bill.read(partition, &[], consistent),
        }
        found
    }

    /// A query on the table or an index: equality on its partition key, optionally
    /// `begins_with` on the sort key (what the fan-out and the retries query).
    fn query(&mut self, body: &Value) -> Vec<Item> {
        let values = &body["ExpressionAttributeValues"];
        let pk = values[":pk"]["S"].as_str().unwrap_or("").to_string();
        let prefix = values[":prefix"]["S"].as_str().unwrap_or("").to_string();
        let (index, hash, range) = match body["IndexName"].as_str() {
            Some(name) => {
                let index = self.schema.indexes.iter().find(|i| i.name == name);
                (
                    name.to_string(),
                    index.map(|i| i.hash.clone()).unwrap_or_default(),
                    index.and_then(|i| i.range.clone()).unwrap_or_default(),
                )
            }
            None => (
                "table".to_string(),
                self.schema.hash.clone(),
                self.schema.range.clone(),
            ),
        };
        let text = |item: &Item, name: &str| {
            item.get(name)
                .and_then(|v| v["S"].as_str())
                .unwrap_or("")
                .to_string()
        };
        let found: Vec<Item> = self
            .items
            .values()
            .filter(|item| text(item, &hash) == pk && text(item, &range).starts_with(&prefix))
            .cloned()
            .collect();
        let consistent = body["ConsistentRead"].as_bool().unwrap_or(false);
        let refs: Vec<&Item> = found.iter().collect();
        self.bill.read(format!("{index} {pk}"), &refs, consistent);
        found
    }
}

/// Answers one DynamoDB operation, billing it.
fn dynamodb(store: &Shared, operation: &str, body: &Value) -> Value {
    let mut store = store.lock().expect("stub lock");
    match operation {
        "PutItem" => {
            store.bill.count_write_request();
            store.put(object(&body["Item"]), false);
            json!({})
        }
        "UpdateItem" => {
            store.bill.count_write_request();
            let new = store.update(body, false);
            if body["ReturnValues"] == "ALL_NEW" {
                json!({"Attributes": new})
            } else {
                json!({})
            }
        }
        "DeleteItem" => {
            store.bill.count_write_request();
            store.delete(&object(&body["Key"]), false);
            json!({})
        }
        "GetItem" => {
            let consistent = body["ConsistentRead"].as_bool().unwrap_or(false);
            match store.get(&body["Key"], consistent) {
                Some(item) => json!({"Item": item}),
                None => json!({}),
            }
        }
        "DescribeTable" => json!({}),
        "BatchWriteItem" => {
            store.bill.count_write_request();
            for writes in body["RequestItems"]
                .as_object()
                .into_iter()
                .flat_map(|t| t.values())
            {
                for w in writes.as_array().into_iter().flatten() {
                    if let Some(item) = w.pointer("/PutRequest/Item") {
                        store.put(object(item), false);
                    } else if let Some(key) = w.pointer("/DeleteRequest/Key") {
                        store.delete(&object(key), false);
                    }
                }
            }
            json!({"UnprocessedItems": {}})
        }
        "TransactWriteItems" => {
            store.bill.count_write_request();
            for t in body["TransactItems"].as_array().into_iter().flatten() {
                if let Some(item) = t.pointer("/Put/Item") {
                    store.put(object(item), true);
                } else if let Some(update) = t.get("Update") {
                    let _ = store.update(update, true);
                } else if let Some(key) = t.pointer("/Delete/Key") {
                    store.delete(&object(key), true);
                }
            }
            json!({})
        }
        "BatchGetItem" => {
            let mut responses = serde_json::Map::new();
            for (table, request) in body["RequestItems"].as_object().into_iter().flatten() {
                let consistent = request["ConsistentRead"].as_bool().unwrap_or(false);
                let found: Vec<Value> = request["Keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| store.get(k, consistent).map(Value::Object))
                    .collect();
                responses.insert(table.clone(), Value::Array(found));
            }
            json!({"Responses": responses, "UnprocessedKeys": {}})
        }
        "Query" => {
            let found = store.query(body);
            json!({"Items": found, "Count": found.len(), "ScannedCount": found.len()})
        }
        _ => json!({}),
    }
}

/// Answers one SQS operation, keeping what is sent to the delivery queue.
fn sqs(store: &Shared, operation: &str, body: &Value) -> Value {
    let queue = body["QueueUrl"].as_str().unwrap_or("");
    if queue.ends_with("DeliveryQueue") {
        let mut store = store.lock().expect("stub lock");
        match operation {
            "SendMessageBatch" => {
                for e in body["Entries"].as_array().into_iter().flatten() {
                    store.messages.push(e["MessageBody"].clone());
                }
            }
            "SendMessage" => store.messages.push(body["MessageBody"].clone()),
            _ => {}
        }
    }
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
    let schema = Schema::from_template().expect("template.yaml's table");
    let store: Shared = Arc::new(Mutex::new(Store {
        schema,
        items: Items::new(),
        bill: Bill::default(),
        messages: Vec::new(),
    }));
    crate::serve::serve(listener, move |req: crate::serve::Request| {
        let store = Arc::clone(&store);
        async move {
            // The bench's own questions: the bill so far (and a fresh one), the stored
            // bytes, and the messages sent to the delivery queue.
            match req.uri().path() {
                "/__billing" => {
                    let mut store = store.lock().expect("stub lock");
                    let stored = stored_bytes(&store.schema, store.items.values());
                    let bill = std::mem::take(&mut store.bill);
                    let answer =
                        json!({"bill": bill, "stored_bytes": stored, "items": store.items.len()});
                    return json_reply(&answer, "1.0");
                }
                "/__messages" => {
                    let taken = std::mem::take(&mut store.lock().expect("stub lock").messages);
                    return json_reply(&Value::Array(taken), "1.0");
                }
                _ => {}
            }
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
                (sqs(&store, operation, &body), "1.0")
            } else if service == "TrentService" {
                (kms(operation, &body), "1.1")
            } else {
                (dynamodb(&store, operation, &body), "1.0")
            };
            json_reply(&answer, protocol)
        }
    })
    .await;
}

/// An answer in the AWS JSON protocol, 1.0 (DynamoDB, SQS) or 1.1 (KMS).
fn json_reply(answer: &Value, protocol: &str) -> crate::serve::Reply {
    hyper::Response::builder()
        .header("content-type", format!("application/x-amz-json-{protocol}"))
        .header("x-amzn-requestid", "stub")
        .body(Full::new(Bytes::from(answer.to_string())))
        .expect("static headers are valid")
}
