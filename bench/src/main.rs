//! `make bench`: the figures of SPEC §8, each beside its reference, printed as a table and
//! written to `target/bench.json`.
//!
//! The orchestrator (no arguments) starts a keep-alive receiver on loopback, the local
//! emulator, and a zero-latency DynamoDB/SQS stub in its own process, then runs each
//! measurement in a child process of this binary so that CPU time and peak memory are the
//! measured process's own: `ceiling`, `fanout` (stub, then emulator), and the cold start of
//! every Lambda binary.

mod baseline;
mod billing;
mod coldstart;
mod cpus;
mod fanout;
mod load;
mod meter;
mod scale;
mod serve;
mod stub;
mod tokens;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http_body_util::BodyExt;
use serde_json::{Value, json};

use coldstart::median;

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
const COLD_START_RUNS: usize = 20;
/// Measured batches of the ceiling and of the fan-out against the stub (each after one
/// warm-up); the figures are their medians.
const STUB_RUNS: usize = 11;
/// Upper bound of the read units of one of the fan-out's reads (a 64 KB tenant query).
const READ_UNITS_PER_READ_REQUEST: f64 = 16.0;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The fan-out and ceiling children run on the runtime the deliver binary uses
    // (functions/src/bin/deliver.rs), so their CPU and rates compare like for like.
    let measured = matches!(args.first().map(String::as_str), Some("fanout" | "ceiling"));
    // Cores are chosen before the runtime starts its threads, which inherit them.
    match args.first().map(String::as_str) {
        Some("fanout" | "ceiling") => cpus::pin_measured(),
        None | Some("run") => {
            if let Some(core) = cpus::reserve_for_measured() {
                eprintln!("webhooks-bench: core {core} reserved for the measured process");
            }
        }
        _ => {}
    }
    let runtime = if measured {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    }
    .expect("a tokio runtime");
    let result = runtime.block_on(async {
        match args.first().map(String::as_str) {
            None | Some("run") => orchestrate().await,
            Some("stub") => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
                println!("listening http://{}", listener.local_addr().map_err(|e| e.to_string())?);
                stub::serve(listener).await;
                Ok(())
            }
            Some("fanout") if args.len() == 5 => {
                shared::lambda::init_tracing();
                let runs = args[4].parse().map_err(|_| "runs must be a number")?;
                let report = fanout::run_fanout(&args[1], &args[2], args[3] == "emulator", runs).await;
                println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
                Ok(())
            }
            Some("load") => {
                let local = std::env::current_exe()
                    .map_err(|e| e.to_string())?
                    .with_file_name("webhooks-local");
                load::run(&local).await
            }
            Some("scale") if args.len() == 3 => {
                shared::lambda::init_tracing();
                let report = scale::run_scale(&args[1], &args[2]).await;
                println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
                Ok(())
            }
            Some("tokens") if args.len() == 2 => {
                let report = tokens::run_tokens(&args[1]).await?;
                println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
                Ok(())
            }
            Some("ceiling") if args.len() == 3 => {
                let runs = args[2].parse().map_err(|_| "runs must be a number")?;
                let (rates, cpu) = fanout::run_ceiling(&args[1], runs).await;
                println!("{}", json!({"rates": rates, "cpu_ms_per_1000": cpu}));
                Ok(())
            }
            _ => Err("usage: webhooks-bench [run | load | stub | fanout ENDPOINT RECEIVER stub|emulator RUNS | ceiling RECEIVER RUNS | tokens ENDPOINT]".to_string()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("webhooks-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A keep-alive receiver on loopback that counts requests and answers 200, except under
/// `/slow/` (200 after 100 ms) and `/fail/` (500).
async fn start_receiver() -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the receiver");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let count = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&count);
    tokio::spawn(serve::serve(listener, move |req: serve::Request| {
        let counter = Arc::clone(&counter);
        async move {
            let path = req.uri().path().to_string();
            let _ = req.into_body().collect().await;
            counter.fetch_add(1, Ordering::Relaxed);
            if path.starts_with("/slow/") {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            if path.starts_with("/fail/") {
                let mut reply = serve::ok();
                *reply.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                return reply;
            }
            serve::ok()
        }
    }));
    (base, count)
}

/// Runs this binary with `args` and parses the JSON line it prints.
fn child(args: &[&str]) -> Result<Value, String> {
    let mut command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    if let Some((name, core)) = cpus::for_child() {
        command.env(name, core);
    }
    let out = command
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "webhooks-bench {} failed: {}",
            args.join(" "),
            out.status
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or("no JSON from the child")?;
    serde_json::from_str(line).map_err(|e| e.to_string())
}

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn per_run(report: &Value, f: impl Fn(&Value) -> f64) -> Vec<f64> {
    report["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(f)
        .collect()
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

async fn orchestrate() -> Result<(), String> {
    eprintln!("webhooks-bench: starting the receiver, the stub and the emulator");
    let (receiver, received) = start_receiver().await;
    let mut stub = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .arg("stub")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut first = String::new();
    BufReader::new(stub.stdout.take().ok_or("stub stdout")?)
        .read_line(&mut first)
        .map_err(|e| e.to_string())?;
    let stub_endpoint = first
        .trim()
        .strip_prefix("listening ")
        .ok_or("the stub did not start")?
        .to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let emulator = tools::local::emulator::Emulator::start(
        &tools::local::emulator::default_server_path(),
        port,
    )?;

    eprintln!("webhooks-bench: ceiling (plain POSTs, same client, same receiver)");
    let ceiling = child(&["ceiling", &receiver, &STUB_RUNS.to_string()])?;
    let ceiling_rates: Vec<f64> = ceiling["rates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    let ceiling_cpu = median(
        &ceiling["cpu_ms_per_1000"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect::<Vec<_>>(),
    );
    eprintln!("webhooks-bench: fan-out against the zero-latency stub");
    let before = received.load(Ordering::Relaxed);
    let stubbed = child(&[
        "fanout",
        &stub_endpoint,
        &receiver,
        "stub",
        &STUB_RUNS.to_string(),
    ])?;
    let stub_posts = received.load(Ordering::Relaxed) - before;
    eprintln!(
        "webhooks-bench: write units, reads and storage as DynamoDB bills them (factors 1, 5, 100; a failing webhook; a 100 ms receiver)"
    );
    let scaled = child(&["scale", &stub_endpoint, &receiver])?;
    eprintln!("webhooks-bench: fan-out against the emulator");
    let emulated = child(&["fanout", emulator.endpoint(), &receiver, "emulator", "3"])?;
    eprintln!("webhooks-bench: OAuth2 tokens issued against the emulator's DynamoDB and KMS");
    let oauth = child(&["tokens", emulator.endpoint()])?;
    let _ = stub.kill();
    let _ = stub.wait();
    drop(emulator);

    let expected_stub_posts =
        (STUB_RUNS as u64 + 1) * (fanout::EVENTS_PER_BATCH * fanout::WEBHOOKS) as u64;
    if stub_posts != expected_stub_posts {
        return Err(format!(
            "the receiver got {stub_posts} POSTs from the stub run, expected {expected_stub_posts}"
        ));
    }
    // The stub never fails; the Python emulator sometimes answers concurrent writes with
    // a 500 (a race inside it), and the service then reports those messages for retry, as
    // it would on AWS. Those are counted and shown, not hidden.
    let failures = |report: &Value| -> f64 {
        per_run(report, |r| r["failures"].as_f64().unwrap_or(0.0))
            .iter()
            .sum()
    };
    if failures(&stubbed) > 0.0 {
        return Err(format!(
            "a batch against the stub reported failures: {stubbed}"
        ));
    }
    let emulator_failures = failures(&emulated);

    eprintln!("webhooks-bench: cold starts ({COLD_START_RUNS} runs per binary)");
    let template = tools::local::template::Template::built_in()?;
    let (api, mut arrivals) = coldstart::stub_runtime_api().await;
    let mut cold: BTreeMap<String, f64> = BTreeMap::new();
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    for function in template.functions()? {
        let path = std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name(&function.binary);
        let Ok(metadata) = std::fs::metadata(&path) else {
            // `make bench` builds every binary; a partial build measures what it has.
            eprintln!("webhooks-bench: {} is not built; skipped", path.display());
            continue;
        };
        let size = metadata.len();
        let times = coldstart::measure(&path, &api, &mut arrivals, COLD_START_RUNS).await?;
        cold.insert(
            function.binary.clone(),
            (median(&times) * 100.0).round() / 100.0,
        );
        sizes.insert(function.binary.clone(), size);
    }

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
    let scenario = |v: &Value| -> scale::Scenario {
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
    };
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
    let per_delivery = |x: f64| x / f5.deliveries.max(1) as f64;
    let retention_months = 30.0 / (365.25 / 12.0);
    let gib = 1024.0 * 1024.0 * 1024.0;
    let million = 1e6;
    let batch_deliveries = (fanout::EVENTS_PER_BATCH * 5) as f64;
    let events_per_million = million / 5.0;
    let cost = [
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
    ];
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
    for (binary, ms) in &cold {
        let size = sizes[binary];
        row(
            &format!("cold start {binary} (ms, median of {COLD_START_RUNS})"),
            format!("{ms:.1}"),
            format!("<= 30 ms; {:.1} MB <= 8 MB", size as f64 / 1e6),
            ok(*ms <= 30.0 && size <= 8_000_000),
        );
    }
    println!("\nwritten to {}", path.display());
    Ok(())
}
