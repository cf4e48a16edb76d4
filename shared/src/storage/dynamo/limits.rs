//! The per-tenant API rate limit on DynamoDB: the tenant's theoretical arrival time in one
//! item (`layout::api_rate_key`), moved by a conditional write. Which write depends on
//! where the TAT is: at or before now (the tenant is idle: it starts again from now) or
//! ahead of it within the burst (busy: it moves one interval on); the instance's last
//! sight of the TAT picks the first to try, and a failed condition tries the other. Both
//! failing means the TAT is past the burst: refused.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;

use super::layout::{EXPIRES_AT, RATE_TAT, api_rate_key, n};
use super::{DynamoStore, WriteError, classify};
use crate::domain::rate_limit::{Admission, RateLimit};
use crate::storage::{LimitStore, StoreResult};

/// How a write found the TAT when its condition failed.
enum Tried {
    Admitted(i64),
    /// The condition failed; the TAT it found, when DynamoDB said.
    Missed(Option<i64>),
}

impl DynamoStore {
    async fn try_limit(
        &self,
        tenant_id: &str,
        update: &str,
        condition: &str,
        values: &[(&str, i64)],
        now: i64,
    ) -> StoreResult<Tried> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(api_rate_key(tenant_id)))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#tat", RATE_TAT)
            .expression_attribute_names("#ttl", EXPIRES_AT)
            .expression_attribute_values(":ttl", n(now / 1_000_000 + 86_400))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, value) in values {
            request = request.expression_attribute_values(*name, n(*value));
        }
        let tat_of = |item: Option<&super::layout::Item>| {
            item.and_then(|i| i.get(RATE_TAT))
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
        };
        match request.send().await {
            Ok(out) => Ok(Tried::Admitted(
                tat_of(out.attributes.as_ref()).unwrap_or(now),
            )),
            Err(e) => {
                let found = match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                        tat_of(c.item.as_ref())
                    }
                    _ => None,
                };
                match classify(e) {
                    WriteError::Condition(_) => Ok(Tried::Missed(found)),
                    WriteError::Store(e) => Err(e),
                }
            }
        }
    }
}

#[async_trait]
impl LimitStore for DynamoStore {
    async fn admit_request(
        &self,
        tenant_id: &str,
        limit: &RateLimit,
        now: i64,
        hint: Option<i64>,
    ) -> StoreResult<Admission> {
        let interval = limit.interval_us();
        let idle = [(":next", now + interval), (":now", now)];
        let busy = [
            (":interval", interval),
            (":now", now),
            (":limit", now + limit.tolerance_us()),
        ];
        const IDLE: (&str, &str) = (
            "SET #tat = :next, #ttl = :ttl",
            "attribute_not_exists(#tat) OR #tat <= :now",
        );
        const BUSY: (&str, &str) = (
            "SET #tat = #tat + :interval, #ttl = :ttl",
            "#tat > :now AND #tat <= :limit",
        );
        let (first, then): ((&str, &str, &[(&str, i64)]), (&str, &str, &[(&str, i64)])) =
            if hint.is_some_and(|tat| tat > now) {
                ((BUSY.0, BUSY.1, &busy), (IDLE.0, IDLE.1, &idle))
            } else {
                ((IDLE.0, IDLE.1, &idle), (BUSY.0, BUSY.1, &busy))
            };
        let second = match self
            .try_limit(tenant_id, first.0, first.1, first.2, now)
            .await?
        {
            Tried::Admitted(tat) => return Ok(Admission::Admitted { tat }),
            Tried::Missed(_) => {
                self.try_limit(tenant_id, then.0, then.1, then.2, now)
                    .await?
            }
        };
        Ok(match second {
            Tried::Admitted(tat) => Admission::Admitted { tat },
            Tried::Missed(found) => Admission::Refused {
                retry_after_us: found
                    .map(|tat| tat - limit.tolerance_us() - now)
                    .unwrap_or(interval)
                    .max(interval),
            },
        })
    }
}
