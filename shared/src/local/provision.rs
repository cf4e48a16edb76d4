//! Creates the table (and queues) in the emulator from their template.yaml declarations,
//! so the local stack and the deployed stack never drift.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use serde_json::Value;

use super::template::Template;

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
