//! The delivery queue is a trust boundary (SPEC §11): the deliver function trusts its
//! tasks, so only the service's roles may send there (the queue's policy, enforced by the
//! emulator as by SQS), and an event task whose event is not stored is dropped.

use std::time::Duration;

use aws_sdk_sqs::error::ProvideErrorMetadata;
use serde_json::json;
use tools::local::principals::make_principal;

use crate::receiver::Receiver;
use crate::utils::{Stack, emulator_endpoint};

#[tokio::test]
async fn a_producer_allowed_every_queue_still_cannot_send_to_the_delivery_queue() {
    let stack = Stack::start().await;
    // A common grant for producers: sqs:SendMessage on everything.
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}
    ]});
    let name = format!("{}-producer", stack.table);
    let producer = make_principal(
        &shared::tls::http_client(),
        &emulator_endpoint(),
        &name,
        &policy,
    )
    .await
    .unwrap_or_else(|_| panic!("the emulator made no principal"));
    let sdk = shared::state::sdk_config_as(&stack.state.config, Some(producer.credentials)).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queues = stack.state.config.queues.clone().unwrap();
    let client = stack.tenant().await;
    let event = json!({"tenant_id": client.tenant, "type": "user.created", "data": {}});
    sqs.send_message()
        .queue_url(&queues.ingest)
        .message_body(event.to_string())
        .send()
        .await
        .expect("a producer sends to the ingest queue");
    let forged = json!({"kind": "event", "tenant_id": client.tenant, "type": "user.created",
                        "data": {}, "event_id": "evt_01J00000000000000000000000"});
    let refused = sqs
        .send_message()
        .queue_url(&queues.delivery)
        .message_body(forged.to_string())
        .send()
        .await
        .expect_err("the delivery queue's policy refuses it");
    assert!(
        refused.code().unwrap_or_default().contains("AccessDenied"),
        "{refused:?}"
    );
    let message = refused.message().unwrap_or_default().to_string();
    assert!(
        message.contains("explicit deny in a resource-based policy"),
        "{message}"
    );
}

#[tokio::test]
async fn an_event_task_whose_event_is_not_stored_is_dropped_and_one_with_no_event_is_rejected() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    client.webhook(&receiver.url("forged"), json!("*")).await;
    let queues = stack.state.config.queues.clone().unwrap();
    let delivery_arn = format!(
        "arn:aws:sqs:us-east-1:123456789012:{}",
        queues.delivery.rsplit('/').next().unwrap()
    );
    let record = |id: &str, body: serde_json::Value| {
        let mut record = aws_lambda_events::sqs::SqsMessage::default();
        record.message_id = Some(id.to_string());
        record.receipt_handle = Some(format!("receipt-{id}"));
        record.body = Some(body.to_string());
        record.event_source_arn = Some(delivery_arn.clone());
        record
            .attributes
            .insert("ApproximateReceiveCount".into(), "1".into());
        record
    };
    let mut batch = aws_lambda_events::sqs::SqsEvent::default();
    // An event task naming an event that was never stored: its content is never sent.
    batch.records.push(record(
        "forged-1",
        json!({"kind": "event", "tenant_id": client.tenant, "type": "user.created",
               "data": {"forged": true}, "event_id": "evt_01J00000000000000000000000"}),
    ));
    // An event task naming no stored event at all: not the service's; rejected.
    batch.records.push(record(
        "forged-2",
        json!({"kind": "event", "tenant_id": client.tenant, "type": "user.created",
               "data": {"forged": true}}),
    ));
    let response = shared::delivery::deliver_batch(stack.function("deliver"), batch).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let rejected = stack.dead_letters(1, Duration::from_secs(10)).await;
    assert!(rejected[0].1.contains("event_id"), "{rejected:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        receiver.requests("forged").is_empty(),
        "nothing forged was delivered"
    );
    assert!(
        client.deliveries("").await.is_empty(),
        "and nothing recorded"
    );
}
