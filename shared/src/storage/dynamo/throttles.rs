//! Counts DynamoDB's throttling answers as the client sees them, each retried attempt
//! included: the SDK retries a throttled request on its own, and the pipeline sends back a
//! message whose work could not be stored, so throttling is absorbed, never an error a
//! caller sees. Operators still need to know it happens (`StorageThrottles`).

use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;

static SEEN: AtomicU64 = AtomicU64::new(0);

/// Throttling answers seen since the last call (and starts counting again).
pub fn take_throttles() -> u64 {
    SEEN.swap(0, Ordering::Relaxed)
}

/// Whether an answer is DynamoDB throttling a request (a table or partition at its limit,
/// or an account request limit), a transaction's items included.
pub fn is_throttle(status: u16, body: &[u8]) -> bool {
    const MARKS: [&[u8]; 4] = [
        b"ProvisionedThroughputExceeded",
        b"ThrottlingException",
        b"ThrottlingError",
        b"RequestLimitExceeded",
    ];
    status == 400
        && MARKS
            .iter()
            .any(|mark| body.windows(mark.len()).any(|w| w == *mark))
}

/// The SDK interceptor that counts them.
#[derive(Debug, Default)]
pub struct ThrottleCounter;

impl Intercept for ThrottleCounter {
    fn name(&self) -> &'static str {
        "ThrottleCounter"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        let status = response.status().as_u16();
        if status == 400
            && let Some(body) = response.body().bytes()
            && is_throttle(status, body)
        {
            SEEN.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_answers_are_told_from_other_errors() {
        let throttled = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}"#;
        assert!(is_throttle(400, throttled));
        let cancelled = br#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","CancellationReasons":[{"Code":"None"},{"Code":"ThrottlingError"}]}"#;
        assert!(is_throttle(400, cancelled));
        let condition =
            br#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"}"#;
        assert!(!is_throttle(400, condition));
        assert!(!is_throttle(500, throttled));
    }
}
