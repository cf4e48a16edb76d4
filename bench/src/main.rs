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
mod report;
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
use report::Runs;

const COLD_START_RUNS: usize = 20;
/// Measured batches of the ceiling and of the fan-out against the stub (each after one
/// warm-up); the figures are their medians.
const STUB_RUNS: usize = 11;

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
    let runs = run_all().await?;
    report::report(runs)
}

/// Starts the helpers (the receiver, the stub, the emulator) and runs every measurement,
/// each in a child process, then the cold starts; checks that nothing was lost.
async fn run_all() -> Result<Runs, String> {
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
    Ok(Runs {
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
    })
}
