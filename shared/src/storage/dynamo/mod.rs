//! The storage ports on DynamoDB: one table, every call the service makes to it. The item
//! layout is [`layout`]'s alone; this module holds the table's client and the few shapes of
//! call everything is built from (reads, paged queries, conditional writes, transactions
//! whose failed conditions are reported by name).

pub mod items;
pub mod layout;
mod limits;
mod lists;
mod records;
mod tenants;
pub mod throttles;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use super::{StoreError, StoreResult};
use items::ItemError;
use layout::{Item, s};

/// The table and the client that reaches it.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

/// Error codes DynamoDB answers when it is throttling or briefly unable to serve.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
    "TransactionConflict",
];

/// How a write failed: its condition, or storage itself.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    /// The named items of the write failed their conditions.
    #[error("condition failed: {0:?}")]
    Condition(Vec<&'static str>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WriteError {
    /// The storage error of a write none of whose conditions was expected to fail.
    fn unexpected(self) -> StoreError {
        match self {
            WriteError::Store(e) => e,
            WriteError::Condition(names) => {
                StoreError::Other(format!("unexpected condition failure: {names:?}"))
            }
        }
    }

    /// Whether the item named `name` failed its condition.
    fn failed(&self, name: &str) -> bool {
        matches!(self, WriteError::Condition(names) if names.contains(&name))
    }
}

impl From<ItemError> for StoreError {
    fn from(e: ItemError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// The name a single conditional write's item goes by in [`WriteError::Condition`].
const THE_ITEM: &str = "item";

fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(
    err: SdkError<E, HttpResponse>,
) -> WriteError {
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            StoreError::Unavailable("no answer from DynamoDB".into()).into()
        }
        SdkError::ServiceError(service) if service.raw().status().as_u16() >= 500 => {
            StoreError::Unavailable(format!(
                "DynamoDB answered {}",
                service.raw().status().as_u16()
            ))
            .into()
        }
        _ => {
            let code = err.code().unwrap_or("unknown");
            if code == "ConditionalCheckFailedException" {
                WriteError::Condition(vec![THE_ITEM])
            } else if TRANSIENT_CODES.contains(&code) {
                StoreError::Unavailable(code.to_string()).into()
            } else if let Some(message) = err.message() {
                StoreError::Other(format!("{code}: {message}")).into()
            } else {
                // No code to name (an answer that is not DynamoDB's): the whole error says
                // what it was.
                let status = err.raw_response().map(|r| r.status().as_u16());
                StoreError::Other(format!(
                    "an answer without an error code ({status:?}): {err:?}"
                ))
                .into()
            }
        }
    }
}

/// An SDK error where no condition was set: storage trouble only.
fn store_error<E: ProvideErrorMetadata + std::fmt::Debug>(
    err: SdkError<E, HttpResponse>,
) -> StoreError {
    match classify(err) {
        WriteError::Store(e) => e,
        WriteError::Condition(_) => StoreError::Other("unexpected condition failure".into()),
    }
}

/// Reads a cancelled transaction's per-item reasons ("None", "ConditionalCheckFailed",
/// "ThrottlingError", ...) against the names of its items: a throttled or conflicting item
/// makes the whole transaction retryable; otherwise it names the items whose conditions
/// failed.
fn transaction_cancelled(names: &[&'static str], reasons: &[&str]) -> WriteError {
    if reasons.iter().any(|r| {
        r.contains("Throttl") || r.contains("TransactionConflict") || r.contains("Provisioned")
    }) {
        return StoreError::Unavailable("transaction cancelled by throttling".into()).into();
    }
    let failed: Vec<&'static str> = names
        .iter()
        .zip(reasons)
        .filter(|(_, reason)| **reason == "ConditionalCheckFailed")
        .map(|(name, _)| *name)
        .collect();
    if failed.is_empty() {
        StoreError::Other(format!("transaction cancelled: {reasons:?}")).into()
    } else {
        WriteError::Condition(failed)
    }
}

/// The writes of one transaction, each under a name its failed condition is reported by.
#[derive(Default)]
struct Transaction {
    names: Vec<&'static str>,
    writes: Vec<TransactWriteItem>,
}

impl Transaction {
    fn put(mut self, name: &'static str, put: Put) -> Self {
        self.names.push(name);
        self.writes
            .push(TransactWriteItem::builder().put(put).build());
        self
    }

    fn update(mut self, name: &'static str, update: Update) -> Self {
        self.names.push(name);
        self.writes
            .push(TransactWriteItem::builder().update(update).build());
        self
    }

    fn delete(mut self, name: &'static str, delete: Delete) -> Self {
        self.names.push(name);
        self.writes
            .push(TransactWriteItem::builder().delete(delete).build());
        self
    }
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    fn put(&self, item: Item) -> Put {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .expect("table and item are set")
    }

    /// A put that fails its condition if the item already exists.
    fn put_if_absent(&self, item: Item) -> Put {
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .expect("table and item are set")
    }

    fn delete(&self, key: Item) -> Delete {
        Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .build()
            .expect("table and key are set")
    }

    async fn get(&self, key: Item, consistent: bool) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(store_error)?;
        Ok(out.item)
    }

    /// Reads an item and maps it to a domain value.
    async fn get_as<T>(&self, key: Item, consistent: bool) -> StoreResult<Option<T>>
    where
        T: for<'a> TryFrom<&'a Item, Error = ItemError>,
    {
        let item = self.get(key, consistent).await?;
        Ok(item.as_ref().map(T::try_from).transpose()?)
    }

    /// A query on the table.
    fn query(&self) -> QueryFluentBuilder {
        self.client.query().table_name(&self.table)
    }

    /// Runs a query page after page to its end, handing each page to `each`: the one
    /// paging loop of this module.
    async fn each_page(
        &self,
        query: QueryFluentBuilder,
        mut each: impl FnMut(QueryOutput),
    ) -> StoreResult<()> {
        let mut start = None;
        loop {
            let mut out = query
                .clone()
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(store_error)?;
            let next = out
                .last_evaluated_key
                .take()
                .filter(|last| !last.is_empty());
            each(out);
            match next {
                Some(last) => start = Some(last),
                None => return Ok(()),
            }
        }
    }

    /// Every item a query matches, following its pages.
    async fn query_all(&self, query: QueryFluentBuilder) -> StoreResult<Vec<Item>> {
        let mut items = Vec::new();
        self.each_page(query, |out| items.extend(out.items.unwrap_or_default()))
            .await?;
        Ok(items)
    }

    /// Every item of a query, mapped to domain values.
    async fn query_all_as<T>(&self, query: QueryFluentBuilder) -> StoreResult<Vec<T>>
    where
        T: for<'a> TryFrom<&'a Item, Error = ItemError>,
    {
        self.query_all(query)
            .await?
            .iter()
            .map(|item| T::try_from(item).map_err(StoreError::from))
            .collect()
    }

    /// Every item of a partition whose sort key starts with `prefix`, in key order.
    async fn query_prefix_as<T>(&self, pk: String, prefix: &str) -> StoreResult<Vec<T>>
    where
        T: for<'a> TryFrom<&'a Item, Error = ItemError>,
    {
        self.query_all_as(
            self.query()
                .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":prefix", s(prefix)),
        )
        .await
    }

    /// A transaction of one put is an ordinary conditional PutItem (at half the cost).
    async fn transact_or_put(&self, transaction: Transaction) -> Result<(), WriteError> {
        let single_put = match transaction.writes.as_slice() {
            [only] => only.put().cloned(),
            _ => None,
        };
        let Some(put) = single_put else {
            return self.transact(transaction).await;
        };
        let result = self
            .client
            .put_item()
            .table_name(put.table_name())
            .set_item(Some(put.item().clone()))
            .set_condition_expression(put.condition_expression().map(str::to_string))
            .set_expression_attribute_names(put.expression_attribute_names().cloned())
            .set_expression_attribute_values(put.expression_attribute_values().cloned())
            .send()
            .await;
        match result.map_err(classify) {
            Ok(_) => Ok(()),
            Err(WriteError::Condition(_)) => Err(WriteError::Condition(transaction.names)),
            Err(e) => Err(e),
        }
    }

    async fn transact(&self, transaction: Transaction) -> Result<(), WriteError> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(transaction.writes))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => match e.err() {
                TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                    let reasons: Vec<&str> = cancelled
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or("None"))
                        .collect();
                    Err(transaction_cancelled(&transaction.names, &reasons))
                }
                _ => Err(classify(SdkError::ServiceError(e))),
            },
            Err(other) => Err(classify(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancellation_reasons_name_the_items_whose_conditions_failed() {
        let failed = transaction_cancelled(
            &["webhook", "url_guard", "counter"],
            &["None", "ConditionalCheckFailed", "None"],
        );
        assert!(failed.failed("url_guard"));
        assert!(!failed.failed("counter"));
    }

    #[test]
    fn throttled_transactions_are_retryable() {
        assert!(matches!(
            transaction_cancelled(&["a", "b"], &["None", "ThrottlingError"]),
            WriteError::Store(StoreError::Unavailable(_))
        ));
    }
}
