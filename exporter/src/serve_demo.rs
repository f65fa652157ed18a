//! The pipeline's last stage: start the `server` binary on the exported bundles, translate a few
//! test sentences through gRPC with every model, and print each student's output beside the
//! teacher's and the reference — what a user checks first after a run.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use xlmc_proto::v1::{TranslateRequest, translator_client::TranslatorClient};

/// What the server prints once every model is loaded (`xlmc_server::READY_PREFIX`).
const READY_PREFIX: &str = "xlmc-server ready";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Demo<'a> {
    pub bundles: &'a Path,
    /// Model names (bundle folder names), the teacher first.
    pub models: &'a [String],
    pub languages: (&'a str, &'a str),
    pub sources: Vec<String>,
    pub references: Vec<String>,
    /// Keep serving on this address after the demo, until Ctrl-C.
    pub serve: Option<SocketAddr>,
}

/// The server binary beside this exporter (both are built into the same target folder).
fn server_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the exporter binary")?;
    let server = exe.with_file_name("server");
    if !server.is_file() {
        bail!(
            "{} is not built: `cargo build --release -p xlmc-server` (or ./xlmc build) builds it beside the exporter",
            server.display()
        );
    }
    Ok(server)
}

/// A started server; killed when dropped.
struct ServerChild {
    child: Child,
    grpc: SocketAddr,
    metrics: String,
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(demo: &Demo) -> anyhow::Result<ServerChild> {
    let server = server_binary()?;
    let addr = demo.serve.map_or("127.0.0.1:0".to_owned(), |a| a.to_string());
    let mut command = Command::new(&server);
    command
        .arg("--models")
        .arg(demo.bundles)
        .args(["--teacher", &demo.models[0], "--addr", &addr, "--metrics-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if demo.serve.is_none() && std::env::var_os("RUST_LOG").is_none() {
        // The demo prints the translations; the server's info lines would bury them.
        command.env("RUST_LOG", "warn");
    }
    let mut child = command.spawn().with_context(|| format!("starting {}", server.display()))?;
    let stdout = child.stdout.take().context("server stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !sent && line.starts_with(READY_PREFIX) {
                let _ = tx.send(line);
                sent = true;
            }
        }
    });
    let started = Instant::now();
    let line = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => break line,
            Err(_) => {
                if let Some(status) = child.try_wait()? {
                    bail!("{} exited ({status}) before it was ready; its log is above", server.display());
                }
                if started.elapsed() > STARTUP_TIMEOUT {
                    let _ = child.kill();
                    bail!("{} was not ready after {} s", server.display(), STARTUP_TIMEOUT.as_secs());
                }
            }
        }
    };
    let field = |key: &str| line.split_whitespace().find_map(|f| f.strip_prefix(key)).map(str::to_owned);
    let grpc = field("grpc=").and_then(|a| a.parse().ok());
    let Some(grpc) = grpc else {
        let _ = child.kill();
        bail!("unexpected ready line from the server: {line}");
    };
    Ok(ServerChild { child, grpc, metrics: field("metrics=").unwrap_or_default() })
}

/// One model's outputs, or why there are none.
struct ModelOutputs {
    name: String,
    result: Result<(Vec<String>, Duration), String>,
}

async fn translate_all(grpc: SocketAddr, demo: &Demo<'_>) -> anyhow::Result<Vec<ModelOutputs>> {
    let mut client = TranslatorClient::connect(format!("http://{grpc}")).await.context("connecting to the server")?;
    let mut outputs = Vec::new();
    for name in demo.models {
        let request = TranslateRequest {
            model: name.clone(),
            source_language: demo.languages.0.into(),
            target_language: demo.languages.1.into(),
            sentences: demo.sources.clone(),
            options: None,
        };
        let started = Instant::now();
        let result = match client.translate(request).await {
            Ok(reply) => Ok((reply.into_inner().translations.into_iter().map(|t| t.text).collect(), started.elapsed())),
            Err(status) => Err(format!("{:?}: {}", status.code(), status.message())),
        };
        outputs.push(ModelOutputs { name: name.clone(), result });
    }
    Ok(outputs)
}

pub fn run(demo: &Demo) -> anyhow::Result<()> {
    let server = start_server(demo)?;
    println!("      server ready: grpc={} metrics={} (pid {})", server.grpc, server.metrics, server.child.id());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let outputs = runtime.block_on(translate_all(server.grpc, demo))?;

    let width = demo.models.iter().map(String::len).max().unwrap_or(0).max("reference".len());
    for (i, source) in demo.sources.iter().enumerate() {
        println!();
        println!("      {:<width$}  {source}", "source");
        println!("      {:<width$}  {}", "reference", demo.references.get(i).map_or("", String::as_str));
        for model in &outputs {
            let text = match &model.result {
                Ok((texts, _)) => texts.get(i).map_or("", String::as_str),
                Err(_) => "(failed)",
            };
            println!("      {:<width$}  {text}", model.name);
        }
    }
    println!();
    let mut failed = Vec::new();
    for model in &outputs {
        match &model.result {
            Ok((_, took)) => println!(
                "      {:<width$}  {} sentences in {:.0} ms through gRPC",
                model.name,
                demo.sources.len(),
                took.as_secs_f64() * 1e3
            ),
            Err(error) => {
                println!("      {:<width$}  failed: {error}", model.name);
                failed.push(model.name.clone());
            }
        }
    }
    if !failed.is_empty() {
        bail!("the server could not translate with {}", failed.join(", "));
    }
    if demo.serve.is_some() {
        let example = format!(
            r#"grpcurl -plaintext -d '{{"model": "{}", "source_language": "{}", "target_language": "{}", "sentences": ["Hello."]}}' {} xlmc.v1.Translator/Translate"#,
            demo.models.last().map_or("", String::as_str),
            demo.languages.0,
            demo.languages.1,
            server.grpc
        );
        println!("      serving on {} until Ctrl-C; try:\n      {example}", server.grpc);
        let mut server = server;
        let status = server.child.wait()?;
        println!("      server exited ({status})");
    }
    Ok(())
}
