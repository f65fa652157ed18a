//! `loadgen`: a bounded gRPC load generator for the xlmc server.
//!
//! N concurrent clients each send one-sentence `Translate` requests (sentences from `--input`,
//! round robin) until `--duration` or `--requests` is reached, and the tool prints throughput and
//! latency percentiles as a Markdown table. With `--models DIR` it starts the sibling `server`
//! binary itself, once per batching mode (`--batching continuous,static`), so the two compare on
//! the same load; with `--addr` it measures a running server.

use std::{
    path::PathBuf,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use xlmc_proto::v1::{TranslateRequest, translator_client::TranslatorClient};
use xlmc_server::launch::{ReadyServer, sibling_binary};

/// How long a started server may take to load its models.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "Bounded gRPC load for the xlmc server: throughput and latency percentiles")]
struct Args {
    /// A running server (`http://127.0.0.1:50051`); or use --models.
    #[arg(long)]
    addr: Option<String>,
    /// Start the sibling `server` binary on this models folder, once per --batching mode.
    #[arg(long)]
    models: Option<PathBuf>,
    /// Batching modes to compare when starting the server.
    #[arg(long, value_delimiter = ',', default_value = "continuous,static")]
    batching: Vec<String>,
    /// Extra flags for the started server (e.g. `--max-batch-sentences=32`).
    #[arg(long, allow_hyphen_values = true)]
    server_arg: Vec<String>,
    /// Model name (empty: the server's default).
    #[arg(long, default_value = "")]
    model: String,
    /// Source sentences, one per line.
    #[arg(long)]
    input: PathBuf,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Stop after this many seconds…
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// …or this many requests, whichever comes first.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
}

struct Outcome {
    latencies: Vec<Duration>,
    generated_tokens: u64,
    errors: Errors,
    elapsed: Duration,
}

/// Failed requests by gRPC status code: how many, and the first message of each code.
#[derive(Debug, Default)]
struct Errors(std::collections::BTreeMap<i32, (usize, String)>);

impl Errors {
    fn add(&mut self, status: &tonic::Status) {
        self.0.entry(status.code() as i32).or_insert_with(|| (0, status.message().to_owned())).0 += 1;
    }

    fn merge(&mut self, other: Errors) {
        for (code, (count, message)) in other.0 {
            self.0.entry(code).or_insert((0, message)).0 += count;
        }
    }

    fn total(&self) -> usize {
        self.0.values().map(|(count, _)| *count).sum()
    }

    /// One line per status code, for below the table.
    fn describe(&self, label: &str) -> Vec<String> {
        let lines = self.0.iter().map(|(&code, (count, message))| {
            format!("{label}: {count} × {:?}: first message: {message}", tonic::Code::from_i32(code))
        });
        lines.collect()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let text = std::fs::read_to_string(&args.input).with_context(|| format!("--input {}", args.input.display()))?;
    let sentences: Arc<Vec<String>> =
        Arc::new(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect());
    ensure!(!sentences.is_empty(), "--input {}: no sentences", args.input.display());
    println!(
        "{} clients, one sentence per request, up to {} requests or {:.0} s\n",
        args.concurrency, args.requests, args.duration
    );
    println!("| batching | requests | errors | sentences/s | tokens/s | p50 ms | p95 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    // Why requests failed, printed under the table.
    let mut notes = Vec::new();
    match (&args.addr, &args.models) {
        (Some(addr), None) => {
            let outcome = run(&args, addr.clone(), sentences).await?;
            report("(running server)", &outcome);
            notes.extend(outcome.errors.describe("(running server)"));
        }
        (None, Some(models)) => {
            for mode in &args.batching {
                let (server, url) = start_server(models, mode, &args.server_arg)?;
                let outcome = run(&args, url, sentences.clone()).await;
                drop(server);
                let outcome = outcome?;
                report(mode, &outcome);
                notes.extend(outcome.errors.describe(mode));
            }
        }
        _ => bail!("give exactly one of --addr and --models"),
    }
    if !notes.is_empty() {
        println!("\nFailed requests:");
        notes.iter().for_each(|note| println!("- {note}"));
    }
    Ok(())
}

async fn run(args: &Args, url: String, sentences: Arc<Vec<String>>) -> anyhow::Result<Outcome> {
    let client = TranslatorClient::connect(url.clone()).await.with_context(|| format!("connecting to {url}"))?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (mut client, sentences, issued, model) =
            (client.clone(), sentences.clone(), issued.clone(), args.model.clone());
        let limit = args.requests;
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut tokens, mut errors) = (Vec::new(), 0u64, Errors::default());
            loop {
                let n = issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= limit || Instant::now() >= deadline {
                    break;
                }
                let request = TranslateRequest {
                    model: model.clone(),
                    sentences: vec![sentences[n % sentences.len()].clone()],
                    ..Default::default()
                };
                let sent = Instant::now();
                match client.translate(request).await {
                    Ok(reply) => {
                        latencies.push(sent.elapsed());
                        tokens +=
                            reply.into_inner().translations.iter().map(|t| u64::from(t.output_tokens)).sum::<u64>();
                    }
                    Err(status) => errors.add(&status),
                }
            }
            (latencies, tokens, errors)
        }));
    }
    let mut outcome =
        Outcome { latencies: Vec::new(), generated_tokens: 0, errors: Errors::default(), elapsed: Duration::ZERO };
    for task in tasks {
        let (latencies, tokens, errors) = task.await?;
        outcome.latencies.extend(latencies);
        outcome.generated_tokens += tokens;
        outcome.errors.merge(errors);
    }
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

fn report(label: &str, outcome: &Outcome) {
    let mut sorted: Vec<f64> = outcome.latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    sorted.sort_by(f64::total_cmp);
    let percentile = |p: f64| xlmc_telemetry::percentile(&sorted, p);
    let seconds = outcome.elapsed.as_secs_f64();
    println!(
        "| {label} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        sorted.len(),
        outcome.errors.total(),
        sorted.len() as f64 / seconds,
        outcome.generated_tokens as f64 / seconds,
        percentile(50.0),
        percentile(95.0),
        percentile(99.0)
    );
}

/// The sibling `server` on 127.0.0.1:0 with one batching mode; its gRPC URL.
fn start_server(models: &std::path::Path, batching: &str, extra: &[String]) -> anyhow::Result<(ReadyServer, String)> {
    let mut command = Command::new(sibling_binary()?);
    command
        .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--batching", batching])
        .arg("--models")
        .arg(models)
        .args(extra);
    let server = ReadyServer::start(command, STARTUP_TIMEOUT)?;
    let url = format!("http://{}", server.grpc()?);
    Ok((server, url))
}
