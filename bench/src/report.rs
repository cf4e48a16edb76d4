//! The figures of a run of `make bench`, from its measurements: computed, written to
//! `target/bench.json` and printed as a table, each beside its reference.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::coldstart::median;
use crate::{COLD_START_RUNS, baseline, fanout, mean, per_run, scale, target_dir};

/// On-demand list prices, us-east-1, as AWS published them (pricing pages, November 2024:
/// DynamoDB on-demand after its 50% cut of 2024-11-01). Update with the date when they change.
/// Read units the publish route spends per event: one consistent read of its event type
/// (the authorizer's key lookup is cached by API Gateway).
const PUBLISH_READ_UNITS: f64 = 1.0;

mod prices {
    /// Lambda, arm64, per GB-second (first 6 billion GB-seconds a month).
    pub const LAMBDA_ARM_GB_SECOND: f64 = 0.000_013_333_4;
    /// Lambda, per request.
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    /// SQS standard queue, per request (each 64 KB chunk).
    pub const SQS_REQUEST: f64 = 0.40 / 1e6;
    /// DynamoDB on-demand, per write request unit.
    pub const DYNAMODB_WRITE_UNIT: f64 = 0.625 / 1e6;
    /// DynamoDB on-demand, per read request unit.
    pub const DYNAMODB_READ_UNIT: f64 = 0.125 / 1e6;
    /// DynamoDB storage, standard table class, per GB-month.
    pub const DYNAMODB_STORAGE_GB_MONTH: f64 = 0.25;
    /// DynamoDB continuous backups (point-in-time recovery), per GB-month of table size.
    pub const DYNAMODB_PITR_GB_MONTH: f64 = 0.20;
    /// API Gateway HTTP API, per request (first 300 million a month).
    pub const API_GATEWAY_REQUEST: f64 = 1.00 / 1e6;
    /// KMS, per request (GenerateDataKey, Decrypt).
    pub const KMS_REQUEST: f64 = 0.03 / 1e4;
    /// KMS, per request with an asymmetric key other than RSA 2048 (Sign with ECC_NIST_P256).
    pub const KMS_ASYMMETRIC_REQUEST: f64 = 0.15 / 1e4;
}

/// What a publish through the API costs besides API Gateway: the publish_event function's
/// invocation, at its measured warm duration (about 15 ms at 256 MB, rounded up).
const PUBLISH_LAMBDA_SECONDS: f64 = 0.015;
const PUBLISH_MEMORY_GB: f64 = 0.25;

/// The token endpoint's billed duration, assumed rather than measured (the emulator's
/// latency is not AWS's): one consistent GetItem and one KMS Sign in-region, 50 ms at the
/// template's 256 MB.
const TOKEN_LAMBDA_SECONDS: f64 = 0.05;
const TOKEN_MEMORY_GB: f64 = 0.25;

/// The deliver function's memory in template.yaml, for its GB-seconds.
const DELIVER_MEMORY_GB: f64 = 0.5;
/// SQS requests Lambda's event source mapping makes per batch (receive, delete).
const MAPPING_REQUESTS_PER_BATCH: f64 = 2.0;
/// Upper bound of the read units of one of the fan-out's reads (a 64 KB tenant query).
const READ_UNITS_PER_READ_REQUEST: f64 = 16.0;

/// What a run measured: the children's reports and the cold starts.
pub struct Runs {
    pub ceiling: Value,
    pub ceiling_rates: Vec<f64>,
    pub ceiling_cpu: f64,
    pub stubbed: Value,
    pub scaled: Value,
    pub emulated: Value,
    pub emulator_failures: f64,
    pub oauth: Value,
    pub cold: BTreeMap<String, f64>,
    pub sizes: BTreeMap<String, u64>,
}

/// Computes the figures of `runs`, writes them to `target/bench.json` and prints the table.
pub fn report(runs: Runs) -> Result<(), String> {
    let Runs {
        ceiling,
        ceiling_rates,
        ceiling_cpu,
        stubbed,
        scaled,
        emulated,
        emulator_failures,
        oauth,
        cold,
        sizes,
    } = runs;
    // ---- figures ----
    let rate = |report: &Value| {
        median(&per_run(report, |r| {
            r["deliveries"].as_f64().unwrap_or(0.0)
                / (r["wall_ms"].as_f64().unwrap_or(1.0) / 1000.0)
        }))
    };
    let fanout_rate = rate(&stubbed);
    let emulator_rate = rate(&emulated);
    let ceiling_rate = median(&ceiling_rates);
    let deliveries_per_run = (fanout::EVENTS_PER_BATCH * fanout::WEBHOOKS) as f64;
    // Medians, as for the rates: one batch slowed by a neighbour on the machine moves
    // neither.
    let cpu_per_1000 = median(&per_run(&stubbed, |r| r["cpu_ms"].as_f64().unwrap_or(0.0))) * 1000.0
        / deliveries_per_run;
    let counts = |key: &str| {
        mean(&per_run(&stubbed, |r| {
            r["counts"][key].as_f64().unwrap_or(0.0)
        })) / deliveries_per_run
    };
    let reads = counts("ddb_read_requests");
    // Read units, when the answers' sizes were not seen: the tenant query reads ~100
    // webhooks of ~600 bytes, 64 KB at most, 16 strongly consistent units.
    let read_units = match counts("ddb_read_units") {
        measured if measured > 0.0 => measured,
        _ => reads * READ_UNITS_PER_READ_REQUEST,
    };
    let write_units = counts("ddb_write_units");
    let sqs_handler = counts("sqs_requests");
    let kms_per_delivery = counts("kms_requests");
    let first_batch_kms = stubbed["first_batch_kms_requests"].as_f64().unwrap_or(0.0);
    let share = |report: &Value| {
        mean(&per_run(report, |r| {
            r["counts"]["aws_busy_ms"].as_f64().unwrap_or(0.0)
                / r["wall_ms"].as_f64().unwrap_or(1.0)
        }))
    };
    let emulator_wall_ms = mean(&per_run(&emulated, |r| {
        r["wall_ms"].as_f64().unwrap_or(0.0)
    }));
    // Per million deliveries. Lambda time is the emulator run's (pessimistic: the Python
    // emulator is far slower than DynamoDB). SQS adds the event source mapping's receive and
    // delete per batch and the source's send per event.
    let batches = 1e6 / deliveries_per_run;
    let lambda = batches
        * (emulator_wall_ms / 1000.0 * DELIVER_MEMORY_GB * prices::LAMBDA_ARM_GB_SECOND
            + prices::LAMBDA_REQUEST);
    let sqs_per_delivery = sqs_handler
        + MAPPING_REQUESTS_PER_BATCH / deliveries_per_run
        + 1.0 / fanout::WEBHOOKS as f64;
    let sqs = 1e6 * sqs_per_delivery * prices::SQS_REQUEST;
    let dynamodb =
        1e6 * (write_units * prices::DYNAMODB_WRITE_UNIT + read_units * prices::DYNAMODB_READ_UNIT);
    let usd = lambda + sqs + dynamodb;
    let peak_rss_mb = stubbed["peak_rss_kb"]
        .as_f64()
        .unwrap_or(0.0)
        .max(emulated["peak_rss_kb"].as_f64().unwrap_or(0.0))
        / 1024.0;

    // Where the fan-out's CPU goes: the client's own (the ceiling's), then each of the
    // service's stages measured alone; the rest is the fan-out's bookkeeping and its event
    // writes.
    let stage = |key: &str| stubbed["stages"][key].as_f64().unwrap_or(0.0);
    let (signing, filters, record_items, record_writes) = (
        stage("signing_cpu_ms"),
        stage("filter_cpu_ms"),
        stage("record_items_cpu_ms"),
        stage("record_writes_cpu_ms"),
    );
    let rest = (cpu_per_1000 - ceiling_cpu - signing - filters - record_writes).max(0.0);
    let (schema_checks, schema_compile) = (
        stage("schema_checks_cpu_ms_per_1000_events"),
        stage("schema_compile_ms"),
    );

    // ---- the honest meter, the all-in cost and the capacity model (SPEC §8, 5 and 6) ----
    let factors: Vec<scale::Scenario> = scaled["factors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(scenario)
        .collect();
    let failing = scenario(&scaled["failing"]);
    let slow = scenario(&scaled["slow"]);
    let by_factor = |f: usize| factors.iter().find(|s| s.factor == f);
    let wcu_per_delivery = |s: &scale::Scenario| s.write_units / s.deliveries.max(1) as f64;
    let f5 = by_factor(5).ok_or("no factor-5 scenario")?;
    let f100 = by_factor(100).ok_or("no factor-100 scenario")?;
    let cost = all_in_cost(f5, &slow);
    let all_in: f64 = cost.iter().map(|(_, usd)| usd).sum();
    let (tenant_events, tenant_limit) = scale::ceiling(f5, f5.events);
    let (failing_ceiling, failing_limit) = scale::ceiling(&failing, failing.deliveries);
    let tenant_deliveries = tenant_events * 5.0;

    let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
    // What one access token costs: the request, the function, its client read and its
    // signature (KMS asymmetric requests are five times the symmetric price).
    let oauth_read_units = oauth["ddb_read_units_per_token"].as_f64().unwrap_or(0.0);
    let oauth_kms = oauth["kms_requests_per_token"].as_f64().unwrap_or(0.0);
    let token_parts = [
        ("api_gateway", prices::API_GATEWAY_REQUEST),
        (
            "lambda",
            prices::LAMBDA_REQUEST
                + TOKEN_LAMBDA_SECONDS * TOKEN_MEMORY_GB * prices::LAMBDA_ARM_GB_SECOND,
        ),
        ("dynamodb", oauth_read_units * prices::DYNAMODB_READ_UNIT),
        ("kms", oauth_kms * prices::KMS_ASYMMETRIC_REQUEST),
    ];
    let usd_per_million_tokens: f64 = token_parts.iter().map(|(_, v)| v * 1e6).sum();
    let verify_us = oauth["verify_cpu_us_per_token"].as_f64().unwrap_or(0.0);
    let mut oauth_figures = oauth.clone();
    oauth_figures["usd_per_million_tokens"] = json!(round(usd_per_million_tokens, 3));
    oauth_figures["usd_per_million_tokens_by_part"] = json!(
        token_parts
            .iter()
            .map(|(k, v)| (k.to_string(), round(v * 1e6, 3)))
            .collect::<BTreeMap<_, _>>()
    );
    let figures = json!({
        "fanout_deliveries_per_s": round(fanout_rate, 0),
        "fanout_emulator_deliveries_per_s": round(emulator_rate, 0),
        "ceiling_posts_per_s": round(ceiling_rate, 0),
        "cpu_ms_per_1000": round(cpu_per_1000, 1),
        "ddb_read_requests_per_event": round(reads, 4),
        "ddb_write_units_per_event": round(wcu_per_delivery(f100), 4),
        "ddb_write_units_per_delivery": {
            "1": round(by_factor(1).map(wcu_per_delivery).unwrap_or(0.0), 3),
            "5": round(wcu_per_delivery(f5), 3),
            "100": round(wcu_per_delivery(f100), 3),
        },
        "usd_per_million_deliveries_all_in": round(all_in, 3),
        "tenant_ceiling_events_per_s": round(tenant_events, 0),
        "tenant_ceiling_deliveries_per_s": round(tenant_deliveries, 0),
        "failing_webhook_ceiling_deliveries_per_s": round(failing_ceiling, 0),
        "sqs_requests_per_event": round(sqs_per_delivery, 4),
        "usd_per_million_deliveries": round(usd, 3),
        "cold_start_ms": cold,
        "binary_bytes": sizes,
        "deliver_peak_rss_mb": round(peak_rss_mb, 1),
        "kms_requests_per_delivery": round(kms_per_delivery, 4),
        "details": {
            "kms_requests_first_batch_of_a_process": first_batch_kms,
            "all_in_usd_by_part": cost.iter().map(|(k, v)| (k.to_string(), round(*v, 4))).collect::<BTreeMap<_, _>>(),
            "tenant_ceiling_limited_by": tenant_limit,
            "first_layout": {
                "commit": "fa55685",
                "ddb_write_units_per_delivery": baseline::WRITE_UNITS_PER_DELIVERY.iter().map(|(f, w)| (f.to_string(), *w)).collect::<BTreeMap<_, _>>(),
                "usd_per_million_deliveries_all_in": baseline::ALL_IN_USD,
                "tenant_ceiling_events_per_s": baseline::TENANT_EVENTS_PER_S,
                "tenant_ceiling_deliveries_per_s": baseline::TENANT_DELIVERIES_PER_S,
                "failing_webhook_ceiling_deliveries_per_s": baseline::FAILING_WEBHOOK_DELIVERIES_PER_S,
            },
            "failing_webhook_ceiling_limited_by": failing_limit,
            "scale": scaled,
            "meter_write_units_per_delivery_without_indexes": round(write_units, 4),
            "per_event_means_per_delivery": "one event delivered to one webhook",
            "storage_share_of_wall_time_stub": round(share(&stubbed), 3),
            "ceiling_cpu_ms_per_1000": round(ceiling_cpu, 1),
            "cpu_ms_per_1000_by_stage": {
                "http_client": round(ceiling_cpu, 1),
                "signing": round(signing, 1),
                "content_filters": round(filters, 2),
                "record_writes": round(record_writes, 1),
                "record_writes_building_items": round(record_items, 1),
                "rest": round(rest, 1),
            },
            "schema_check_us_per_event": round(schema_checks, 2),
            "schema_compile_ms": round(schema_compile, 2),
            "emulator_messages_retried": emulator_failures,
            "storage_share_of_wall_time_emulator": round(share(&emulated), 3),
            "ddb_read_units_per_delivery": round(read_units, 4),
            "sqs_requests_per_delivery_by_deliver": round(sqs_handler, 4),
            "usd_lambda": round(lambda, 4), "usd_sqs": round(sqs, 4), "usd_dynamodb": round(dynamodb, 4),
            "stub_runs": stubbed, "emulator_runs": emulated, "ceiling": ceiling,
        }
    });
    let mut figures = figures;
    figures["oauth_tokens"] = oauth_figures;
    let limit = &oauth["tenant_rate_limit"];
    let limit_units = limit["write_units_per_admitted_request"]
        .as_f64()
        .unwrap_or(0.0);
    figures["tenant_rate_limit_units_per_request"] = json!(round(limit_units, 3));
    figures["tenant_rate_limit"] = limit.clone();
    let path = target_dir().join("bench.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&figures).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;

    let ok = |good: bool| if good { "ok" } else { "MISSED" };
    println!();
    println!(
        "{:<48} {:>14}   {:<34}",
        "figure", "measured", "reference / target"
    );
    let row = |name: &str, value: String, reference: String, verdict: &str| {
        println!("{name:<48} {value:>14}   {reference:<34} {verdict}")
    };
    row(
        "fan-out, stub storage (deliveries/s)",
        format!("{fanout_rate:.0}"),
        format!("ceiling {ceiling_rate:.0}/s: >= 70%"),
        ok(fanout_rate >= 0.7 * ceiling_rate),
    );
    row(
        "fan-out, emulator storage (deliveries/s)",
        format!("{emulator_rate:.0}"),
        format!("storage {:.0}% of wall time", share(&emulated) * 100.0),
        &if emulator_failures > 0.0 {
            format!("({emulator_failures} messages retried: emulator 500s)")
        } else {
            String::new()
        },
    );
    row(
        "ceiling: plain POSTs, same client (posts/s)",
        format!("{ceiling_rate:.0}"),
        "reference".into(),
        "",
    );
    row(
        "deliver CPU per 1,000 deliveries (ms)",
        format!("{cpu_per_1000:.1}"),
        "<= 50".into(),
        ok(cpu_per_1000 <= 50.0),
    );
    for (name, value) in [
        ("  HTTP client (the ceiling's CPU)", ceiling_cpu),
        ("  signing", signing),
        ("  content filters (one on every webhook)", filters),
        ("  record writes (SDK, 40 BatchWriteItem)", record_writes),
        ("    of which building the items", record_items),
        ("  the rest (event writes, bookkeeping)", rest),
    ] {
        row(name, format!("{value:.1}"), String::new(), "");
    }
    row(
        "schema check per event, compiled schema cached (us)",
        format!("{schema_checks:.1}"),
        format!("a 2 KB order against a typed schema; compiling it once: {schema_compile:.2} ms"),
        "",
    );
    row(
        "OAuth2 access token issued (USD per million)",
        format!("{usd_per_million_tokens:.2}"),
        format!("KMS Sign {oauth_kms:.2}, read units {oauth_read_units:.2} per token"),
        "",
    );
    row(
        "per-tenant API rate limit, write units per request",
        format!("{limit_units:.2}"),
        format!(
            "{:.2} write requests per admitted request, {:.2} per refused one; ${:.3} per million requests",
            limit["write_requests_per_admitted_request"]
                .as_f64()
                .unwrap_or(0.0),
            limit["write_requests_per_request_over_the_limit"]
                .as_f64()
                .unwrap_or(0.0),
            limit_units * prices::DYNAMODB_WRITE_UNIT * 1e6
        ),
        "",
    );
    row(
        "access token verified by the authorizer (us CPU)",
        format!("{verify_us:.1}"),
        "offline: no table read, no KMS call".into(),
        "",
    );
    for s in &factors {
        row(
            &format!("DynamoDB write units per delivery, factor {}", s.factor),
            format!("{:.3}", wcu_per_delivery(s)),
            format!(
                "indexes {:.3}; first layout {:.1}; <= 1.6 at factor 5",
                s.index_write_units / s.deliveries.max(1) as f64,
                baseline::write_units(s.factor).unwrap_or(f64::NAN)
            ),
            if s.factor == 5 {
                ok(wcu_per_delivery(s) <= 1.6)
            } else {
                ""
            },
        );
    }
    row(
        "cost per million deliveries, all-in, factor 5 (USD)",
        format!("{all_in:.3}"),
        format!("first layout {:.3}; <= 1.25", baseline::ALL_IN_USD),
        ok(all_in <= 1.25),
    );
    for (part, usd) in &cost {
        row(&format!("  {part}"), format!("{usd:.3}"), String::new(), "");
    }
    row(
        "one tenant, factor 5 (events/s)",
        format!("{tenant_events:.0}"),
        format!(
            "first layout {:.0}; >= 3000; limit: {tenant_limit}",
            baseline::TENANT_EVENTS_PER_S
        ),
        ok(tenant_events >= 3000.0),
    );
    row(
        "one tenant, factor 5 (deliveries/s)",
        format!("{tenant_deliveries:.0}"),
        format!(
            "first layout {:.0}; >= 15000",
            baseline::TENANT_DELIVERIES_PER_S
        ),
        ok(tenant_deliveries >= 15000.0),
    );
    row(
        "a webhook failing every attempt (deliveries/s)",
        format!("{failing_ceiling:.0}"),
        format!(
            "first layout {:.0}; >= 1000; limit: {failing_limit}",
            baseline::FAILING_WEBHOOK_DELIVERIES_PER_S
        ),
        ok(failing_ceiling >= 1000.0),
    );
    println!("\nunits per partition key value (the busiest of each shape):");
    for (name, s, per, what) in [
        ("factor 5, per event", f5, f5.events, "event"),
        (
            "failing webhook, per delivery",
            &failing,
            failing.deliveries,
            "delivery",
        ),
    ] {
        println!("  {name}:");
        for (shape, (w, r)) in &s.partitions {
            println!(
                "    {shape:<52} {:>8.3} write, {:>8.3} read units per {what}",
                w / per as f64,
                r / per as f64
            );
        }
    }
    println!();
    for (name, value, reference, good) in [
        (
            "DynamoDB write units per delivery (old meter, no indexes)",
            format!("{write_units:.3}"),
            "<= 1.1",
            write_units <= 1.1,
        ),
        (
            "DynamoDB read requests per delivery",
            format!("{reads:.4}"),
            "<= 0.05",
            reads <= 0.05,
        ),
        (
            "SQS requests per delivery (all-in)",
            format!("{sqs_per_delivery:.4}"),
            "<= 0.2",
            sqs_per_delivery <= 0.2,
        ),
        (
            "KMS requests per delivery (steady state)",
            format!("{kms_per_delivery:.4}"),
            "0 (data keys cached)",
            kms_per_delivery == 0.0,
        ),
        (
            "cost per million deliveries (USD)",
            format!("{usd:.3}"),
            "<= 1.50",
            usd <= 1.5,
        ),
        (
            "deliver peak RSS (MB)",
            format!("{peak_rss_mb:.1}"),
            "<= 64",
            peak_rss_mb <= 64.0,
        ),
    ] {
        row(name, value, reference.into(), ok(good));
    }
    // The binary's size is shown, not judged: cold start is what it stood in for.
    for (binary, ms) in &cold {
        let size = sizes[binary];
        row(
            &format!("cold start {binary} (ms, median of {COLD_START_RUNS})"),
            format!("{ms:.1}"),
            format!("<= 30 ms; binary {:.1} MB", size as f64 / 1e6),
            ok(*ms <= 30.0),
        );
    }
    println!("\nwritten to {}", path.display());
    Ok(())
}

/// A scenario of the `scale` child's report.
fn scenario(v: &Value) -> scale::Scenario {
    let partitions = v["partitions"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, p)| {
            (
                k.clone(),
                (p[0].as_f64().unwrap_or(0.0), p[1].as_f64().unwrap_or(0.0)),
            )
        })
        .collect();
    let num = |k: &str| v[k].as_f64().unwrap_or(0.0);
    scale::Scenario {
        factor: num("factor") as usize,
        events: num("events") as usize,
        deliveries: num("deliveries") as usize,
        write_units: num("write_units"),
        index_write_units: num("index_write_units"),
        read_units: num("read_units"),
        stored_bytes: num("stored_bytes") as u64,
        batch_wall_ms: num("batch_wall_ms"),
        sqs_requests: num("sqs_requests") as u64,
        kms_requests: num("kms_requests") as u64,
        partitions,
    }
}

/// What a million deliveries cost all in, by part, at factor 5 (`f5`) with a 100 ms
/// receiver (`slow`'s batch time).
fn all_in_cost(f5: &scale::Scenario, slow: &scale::Scenario) -> [(&'static str, f64); 7] {
    let per_delivery = |x: f64| x / f5.deliveries.max(1) as f64;
    let retention_months = 30.0 / (365.25 / 12.0);
    let gib = 1024.0 * 1024.0 * 1024.0;
    let million = 1e6;
    let batch_deliveries = (fanout::EVENTS_PER_BATCH * 5) as f64;
    let events_per_million = million / 5.0;
    [
        (
            "DynamoDB writes",
            million * per_delivery(f5.write_units) * prices::DYNAMODB_WRITE_UNIT,
        ),
        (
            // The deliver function's reads, and the publish route's consistent read of the
            // event type (one unit per event).
            "DynamoDB reads (deliver; publish_event's event-type check)",
            (million * per_delivery(f5.read_units) + events_per_million * PUBLISH_READ_UNITS)
                * prices::DYNAMODB_READ_UNIT,
        ),
        (
            "DynamoDB storage and PITR",
            million * per_delivery(f5.stored_bytes as f64) / gib
                * retention_months
                * (prices::DYNAMODB_STORAGE_GB_MONTH + prices::DYNAMODB_PITR_GB_MONTH),
        ),
        (
            "Lambda (deliver, 100 ms receiver; publish_event)",
            million / batch_deliveries
                * (slow.batch_wall_ms / 1000.0 * DELIVER_MEMORY_GB * prices::LAMBDA_ARM_GB_SECOND
                    + prices::LAMBDA_REQUEST)
                + events_per_million
                    * (prices::LAMBDA_REQUEST
                        + PUBLISH_LAMBDA_SECONDS
                            * PUBLISH_MEMORY_GB
                            * prices::LAMBDA_ARM_GB_SECOND),
        ),
        (
            "SQS",
            million
                * (per_delivery(f5.sqs_requests as f64)
                    + (MAPPING_REQUESTS_PER_BATCH / fanout::EVENTS_PER_BATCH as f64 + 1.0) / 5.0)
                * prices::SQS_REQUEST,
        ),
        (
            "API Gateway (every event published through the API)",
            events_per_million * prices::API_GATEWAY_REQUEST,
        ),
        (
            "KMS",
            million * per_delivery(f5.kms_requests as f64) * prices::KMS_REQUEST,
        ),
    ]
}
