//! CloudWatch metrics in Embedded Metric Format: one JSON line on stdout per data point,
//! which Lambda's log pipeline turns into a metric.

use chrono::Utc;

/// Counts one ingest message that can never be processed (`RejectedMessages`).
pub fn rejected_message() {
    println!(
        "{}",
        serde_json::json!({
            "_aws": {
                "Timestamp": Utc::now().timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": "Webhooks",
                    "Dimensions": [[]],
                    "Metrics": [{"Name": "RejectedMessages", "Unit": "Count"}],
                }],
            },
            "RejectedMessages": 1,
        })
    );
}
