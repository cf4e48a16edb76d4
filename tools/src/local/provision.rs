//! Creates the table (and queues) in the emulator from their template.yaml declarations,
//! so the local stack and the deployed stack never drift.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use std::collections::HashMap;

use serde_json::Value;

use super::template::{Template, get_att_target};

fn text<'a>(value: &'a Value, field: &str) -> Result<&'a str, String> {
    value
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("template.yaml: {field} is missing in {value}"))
}

fn list<'a>(value: &'a Value, field: &str) -> &'a [Value] {
    value
        .get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn key_schema(elements: &[Value]) -> Result<Vec<KeySchemaElement>, String> {
    elements
        .iter()
        .map(|e| {
            KeySchemaElement::builder()
                .attribute_name(text(e, "AttributeName")?)
                .key_type(KeyType::from(text(e, "KeyType")?))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

fn projection(value: Option<&Value>) -> Result<Projection, String> {
    let Some(value) = value else {
        return Ok(Projection::builder()
            .projection_type(ProjectionType::All)
            .build());
    };
    let non_key: Vec<String> = list(value, "NonKeyAttributes")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    Ok(Projection::builder()
        .projection_type(ProjectionType::from(text(value, "ProjectionType")?))
        .set_non_key_attributes((!non_key.is_empty()).then_some(non_key))
        .build())
}

/// Creates the template's table under `table_name` unless it exists. Returns whether it
/// created it.
pub async fn ensure_table(
    client: &Client,
    template: &Template,
    table_name: &str,
) -> Result<bool, String> {
    let tables = template.resources_of_type("AWS::DynamoDB::Table");
    let [table] = tables.as_slice() else {
        return Err(format!(
            "template.yaml declares {} DynamoDB tables; the service uses exactly one",
            tables.len()
        ));
    };
    let props = &table.properties;
    let exists = client.describe_table().table_name(table_name).send().await;
    if exists.is_ok() {
        return Ok(false);
    }
    let attributes = list(props, "AttributeDefinitions")
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(text(a, "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(text(a, "AttributeType")?))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    let indexes = list(props, "GlobalSecondaryIndexes")
        .iter()
        .map(|g| {
            GlobalSecondaryIndex::builder()
                .index_name(text(g, "IndexName")?)
                .set_key_schema(Some(key_schema(list(g, "KeySchema"))?))
                .projection(projection(g.get("Projection"))?)
                .build()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    let billing = props
        .get("BillingMode")
        .and_then(Value::as_str)
        .unwrap_or("PAY_PER_REQUEST");
    client
        .create_table()
        .table_name(table_name)
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema(list(props, "KeySchema"))?))
        .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
        .billing_mode(BillingMode::from(billing))
        .send()
        .await
        .map_err(|e| {
            format!(
                "creating table {table_name}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            )
        })?;
    if let Some(ttl) = props.get("TimeToLiveSpecification") {
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(text(ttl, "AttributeName")?)
            .enabled(ttl.get("Enabled").and_then(Value::as_bool).unwrap_or(true))
            .build()
            .map_err(|e| e.to_string())?;
        client
            .update_time_to_live()
            .table_name(table_name)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "enabling TTL on {table_name}: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                )
            })?;
    }
    Ok(true)
}

/// A queue created for the local stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalQueue {
    pub url: String,
    pub arn: String,
}

/// Creates every queue the template declares, named `<prefix>-<LogicalId>`, with its
/// visibility timeout, retention and redrive policy; existing queues are kept. Returns them
/// by logical id.
pub async fn ensure_queues(
    client: &aws_sdk_sqs::Client,
    template: &Template,
    prefix: &str,
) -> Result<HashMap<String, LocalQueue>, String> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let mut specs = template.resources_of_type("AWS::SQS::Queue");
    // Dead-letter queues (no redrive policy) first: the others name their ARNs.
    specs.sort_by_key(|q| q.properties.get("RedrivePolicy").is_some());
    let mut created = HashMap::new();
    for spec in specs {
        let name = format!("{prefix}-{}", spec.logical_id);
        let mut request = client.create_queue().queue_name(&name);
        for (property, attribute) in [
            ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
            (
                "MessageRetentionPeriod",
                QueueAttributeName::MessageRetentionPeriod,
            ),
            ("DelaySeconds", QueueAttributeName::DelaySeconds),
        ] {
            if let Some(n) = spec.properties.get(property).and_then(Value::as_i64) {
                request = request.attributes(attribute, n.to_string());
            }
        }
        if let Some(redrive) = spec.properties.get("RedrivePolicy") {
            let target = redrive
                .get("deadLetterTargetArn")
                .and_then(get_att_target)
                .ok_or_else(|| {
                    format!(
                        "{}: deadLetterTargetArn must be !GetAtt <Queue>.Arn",
                        spec.logical_id
                    )
                })?;
            let dlq: &LocalQueue = created.get(&target).ok_or_else(|| {
                format!(
                    "{}: dead-letter queue {target} is not declared",
                    spec.logical_id
                )
            })?;
            let max = redrive
                .get("maxReceiveCount")
                .and_then(Value::as_i64)
                .unwrap_or(5);
            let policy =
                serde_json::json!({"deadLetterTargetArn": dlq.arn, "maxReceiveCount": max});
            request = request.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
        }
        let url = match client.get_queue_url().queue_name(&name).send().await {
            Ok(found) => found.queue_url.unwrap_or_default(),
            Err(_) => request
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "creating queue {name}: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    )
                })?
                .queue_url
                .unwrap_or_default(),
        };
        let arn = client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "reading queue {name}: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )
            })?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .unwrap_or_default();
        created.insert(spec.logical_id.clone(), LocalQueue { url, arn });
    }
    Ok(created)
}

/// A KMS key made for the local stack: the alias the service names it by (KMS accepts an
/// alias wherever a key id goes) and its ARN, which policies name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalKey {
    pub alias: String,
    pub arn: String,
}

/// Makes sure the template's KMS keys (the one that wraps the data keys sealing webhooks'
/// secrets, the one that signs access tokens) exist in the emulator, each with its
/// `KeySpec` and `KeyUsage`, under the alias `alias/<prefix>-<LogicalId>`, so a stack that
/// restarts against the same emulator opens what it sealed and verifies what it signed
/// before. Returns each key by logical id.
pub async fn ensure_kms_keys(
    client: &aws_sdk_kms::Client,
    template: &Template,
    prefix: &str,
) -> Result<HashMap<String, LocalKey>, String> {
    let mut keys = HashMap::new();
    for key in template.resources_of_type("AWS::KMS::Key") {
        let alias = format!("alias/{prefix}-{}", key.logical_id);
        if client.describe_key().key_id(&alias).send().await.is_err() {
            create_kms_key(client, &key, &alias).await?;
        }
        let arn = client
            .describe_key()
            .key_id(&alias)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "reading the KMS key {alias}: {}",
                    aws_sdk_kms::error::DisplayErrorContext(e)
                )
            })?
            .key_metadata
            .and_then(|m| m.arn)
            .ok_or_else(|| format!("the emulator's KMS key {alias} has no ARN"))?;
        keys.insert(key.logical_id, LocalKey { alias, arn });
    }
    Ok(keys)
}

/// Sets every queue policy the template declares (`AWS::SQS::QueuePolicy`), resolved to
/// the local resources and principals, on its queues.
pub async fn ensure_queue_policies(
    client: &aws_sdk_sqs::Client,
    template: &Template,
    queues: &HashMap<String, LocalQueue>,
    resolver: &super::principals::Resolver,
) -> Result<usize, String> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let mut set = 0;
    for policy in template.resources_of_type("AWS::SQS::QueuePolicy") {
        let document = resolver
            .resolve(&policy.properties["PolicyDocument"])
            .map_err(|e| format!("{}: {e}", policy.logical_id))?;
        for queue in list(&policy.properties, "Queues") {
            let id = queue
                .get("!Ref")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{}: Queues must be !Ref <Queue>", policy.logical_id))?;
            let url = &queues
                .get(id)
                .ok_or_else(|| format!("{}: no queue {id}", policy.logical_id))?
                .url;
            client
                .set_queue_attributes()
                .queue_url(url)
                .attributes(QueueAttributeName::Policy, document.to_string())
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "setting the policy of {id}: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    )
                })?;
            set += 1;
        }
    }
    Ok(set)
}

async fn create_kms_key(
    client: &aws_sdk_kms::Client,
    key: &super::template::ResourceSpec,
    alias: &str,
) -> Result<(), String> {
    let property = |name: &str| key.properties.get(name).and_then(Value::as_str);
    let mut create = client
        .create_key()
        .description(property("Description").unwrap_or("webhooks"));
    if let Some(spec) = property("KeySpec") {
        create = create.key_spec(aws_sdk_kms::types::KeySpec::from(spec));
    }
    if let Some(usage) = property("KeyUsage") {
        create = create.key_usage(aws_sdk_kms::types::KeyUsageType::from(usage));
    }
    let created = create.send().await.map_err(|e| {
        format!(
            "creating the KMS key {}: {}",
            key.logical_id,
            aws_sdk_kms::error::DisplayErrorContext(e)
        )
    })?;
    let key_id = created
        .key_metadata
        .map(|m| m.key_id)
        .ok_or("the emulator created a KMS key without an id")?;
    client
        .create_alias()
        .alias_name(alias)
        .target_key_id(key_id)
        .send()
        .await
        .map_err(|e| {
            format!(
                "naming the KMS key {alias}: {}",
                aws_sdk_kms::error::DisplayErrorContext(e)
            )
        })?;
    Ok(())
}
