//! The pipeline's last stage: start the `server` binary on the exported bundles, translate a few
//! test sentences through gRPC with every model, and print each student's output beside the
//! teacher's and the reference — what a user checks first after a run.

use std::{
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use xlmc_proto::v1::{TranslateRequest, translator_client::TranslatorClient};
use xlmc_server::launch::{ReadyServer, sibling_binary};

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

fn start_server(demo: &Demo) -> anyhow::Result<ReadyServer> {
    let addr = demo.serve.map_or("127.0.0.1:0".to_owned(), |a| a.to_string());
    let mut command = Command::new(sibling_binary()?);
    command.arg("--models").arg(demo.bundles).args([
        "--teacher",
        &demo.models[0],
        "--addr",
        &addr,
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    if demo.serve.is_none() && std::env::var_os("RUST_LOG").is_none() {
        // The demo prints the translations; the server's info lines would bury them.
        command.env("RUST_LOG", "warn");
    }
    ReadyServer::start(command, STARTUP_TIMEOUT)
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
    let grpc = server.grpc()?;
    println!("      server ready: grpc={grpc} metrics={} (pid {})", server.metrics()?, server.child.id());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let outputs = runtime.block_on(translate_all(grpc, demo))?;

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
            grpc
        );
        println!("      serving on {grpc} until Ctrl-C; try:\n      {example}");
        let mut server = server;
        let status = server.child.wait()?;
        println!("      server exited ({status})");
    }
    Ok(())
}
