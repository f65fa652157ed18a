//! The xlmc gRPC server.
//!
//! [`run`] binds the gRPC and metrics listeners, installs the metrics recorder, registers
//! `xlmc.v1.Translator`, `grpc.health.v1.Health` and reflection, prints where it listens, and
//! serves until SIGTERM or Ctrl-C, after which health turns NOT_SERVING, new connections are
//! refused and in-flight requests finish.

mod auth;
mod engine;
mod error;
pub mod launch;
mod libretranslate;
mod markup;
mod registry;
mod service;
mod settings;
mod stats;
#[cfg(feature = "torch")]
mod torch_backend;

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, OnceLock},
};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;
use xlmc_proto::v1::translator_server::TranslatorServer;

pub use engine::{BatchLimits, EngineHandle, Job, Lane};
pub use error::RequestError;
pub use registry::{LoadOptions, Registry};
pub use service::{Limits, TranslatorService, validate};
pub use settings::Settings;

/// The line printed on stdout once both listeners are bound; tests and scripts read the ports
/// from it when they started the server on port 0.
pub const READY_PREFIX: &str = "xlmc-server ready";

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let grpc_listener = TcpListener::bind(settings.addr).await.with_context(|| format!("--addr {}", settings.addr))?;
    let metrics_listener = TcpListener::bind(settings.metrics_addr)
        .await
        .with_context(|| format!("--metrics-addr {}", settings.metrics_addr))?;
    let http_listener = match settings.http_addr {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| format!("--http-addr {addr}"))?),
        None => None,
    };
    let grpc_addr = grpc_listener.local_addr()?;
    let metrics_addr = metrics_listener.local_addr()?;
    let http_addr = http_listener.as_ref().map(TcpListener::local_addr).transpose()?;

    // ONNX Runtime is the serving backend: load it now so a missing library fails start-up
    // with the places searched, not the first request.
    let onnxruntime = xlmc_runtime::locate_library()?;
    xlmc_runtime::environment()?;

    let handle = xlmc_telemetry::install_metrics()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::NotServing).await;
    health.set_not_serving::<TranslatorServer<TranslatorService>>().await;

    // gRPC serves from here on (health answers NOT_SERVING) while the models load below.
    let models = Arc::new(OnceLock::new());
    let service =
        TranslatorService::new(Limits::from(&settings), models.clone()).with_shadow_rate(settings.shadow_rate);
    let translator = TranslatorServer::new(service.clone())
        .max_decoding_message_size(settings.max_message_bytes)
        .max_encoding_message_size(settings.max_message_bytes);
    let translator = tonic::service::interceptor::InterceptedService::new(
        translator,
        auth::BearerToken::new(settings.auth_token.clone()),
    );
    // Both reflection versions: grpcurl and grpcui ask for v1, but Python's grpcio-reflection,
    // Postman and older tools only know v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(xlmc_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().context("building the reflection service (v1)")?;
    let reflection_v1alpha = reflection().build_v1alpha().context("building the reflection service (v1alpha)")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics_task = tokio::spawn(xlmc_telemetry::serve_metrics(metrics_listener, handle, wait_for(stop_rx.clone())));
    let http_task = http_listener.map(|listener| {
        let api = libretranslate::Api::new(service, settings.auth_token.clone(), settings.max_message_bytes);
        tokio::spawn(
            axum::serve(listener, api.router()).with_graceful_shutdown(wait_for(stop_rx.clone())).into_future(),
        )
    });
    let signal = shutdown_signal()?;
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel::<Vec<String>>();
    let shutdown = {
        let health = health.clone();
        async move {
            signal.await;
            tracing::info!("shutting down: health NOT_SERVING, finishing in-flight requests");
            health.set_not_serving::<TranslatorServer<TranslatorService>>().await;
            health.set_service_status("", ServingStatus::NotServing).await;
            if let Ok(serving) = loaded_rx.await {
                for model in &serving {
                    health.set_service_status(model, ServingStatus::NotServing).await;
                }
            }
            let _ = stop_tx.send(true);
        }
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = settings.tls()? {
        builder = builder.tls_config(tls).context("--tls-cert/--tls-key")?;
    }
    let grpc = tokio::spawn(
        builder
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(translator)
            .serve_with_incoming_shutdown(TcpListenerStream::new(grpc_listener), shutdown),
    );

    let registry = match &settings.models {
        Some(dir) => {
            let options = settings.load_options();
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || Registry::load(&dir, &options)).await??
        }
        None => Registry::default(),
    };
    let serving: Vec<String> = registry.models().filter(|m| m.serving.is_some()).map(|m| m.name.clone()).collect();
    for model in registry.models() {
        let status = if model.serving.is_some() { ServingStatus::Serving } else { ServingStatus::NotServing };
        health.set_service_status(&model.name, status).await;
    }
    metrics::gauge!(xlmc_telemetry::names::MODELS_LOADED).set(serving.len() as f64);
    let _ = models.set(registry);
    let _ = loaded_tx.send(serving);
    health.set_serving::<TranslatorServer<TranslatorService>>().await;
    health.set_service_status("", ServingStatus::Serving).await;
    announce(grpc_addr, metrics_addr, http_addr, &onnxruntime);

    grpc.await.context("gRPC server task")?.context("gRPC server")?;
    metrics_task.await.context("metrics endpoint task")??;
    if let Some(http) = http_task {
        http.await.context("HTTP API task")?.context("HTTP API (--http-addr)")?;
    }
    tracing::info!("stopped");
    Ok(())
}

fn announce(grpc: SocketAddr, metrics: SocketAddr, http: Option<SocketAddr>, onnxruntime: &Path) {
    use std::io::Write;
    tracing::info!(%grpc, %metrics, http = ?http, onnxruntime = %onnxruntime.display(), "serving");
    let http = http.map(|addr| format!(" http={addr}")).unwrap_or_default();
    let mut stdout = std::io::stdout().lock();
    let _ =
        writeln!(stdout, "{READY_PREFIX} grpc={grpc} metrics={metrics}{http} onnxruntime={}", onnxruntime.display());
    let _ = stdout.flush();
}

async fn wait_for(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is
/// called, not when the future is first polled: a signal arriving right after the ready line
/// must already take the graceful path.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
    })
}
