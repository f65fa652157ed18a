//! Server settings: every flag is also an `XLMC_*` environment variable.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::ensure;
use clap::Parser;
use xlmc_telemetry::LogFormat;

#[derive(Debug, Clone, Parser)]
#[command(name = "server", version, about = "Serve xlmc translation models over gRPC")]
pub struct Settings {
    /// gRPC listen address. Port 0 picks a free port; the one chosen is printed at start-up.
    #[arg(long, env = "XLMC_ADDR", default_value = "127.0.0.1:50051")]
    pub addr: SocketAddr,

    /// Prometheus endpoint address (`GET /metrics`). Port 0 picks a free port.
    #[arg(long, env = "XLMC_METRICS_ADDR", default_value = "127.0.0.1:9090")]
    pub metrics_addr: SocketAddr,

    /// Folder of model bundles (one sub-folder per model) to serve.
    #[arg(long, env = "XLMC_MODELS")]
    pub models: Option<PathBuf>,

    /// Most sentences one request may carry.
    #[arg(long, env = "XLMC_MAX_SENTENCES_PER_REQUEST", default_value_t = 256)]
    pub max_sentences_per_request: usize,

    /// Most bytes (UTF-8) one sentence may have.
    #[arg(long, env = "XLMC_MAX_SENTENCE_BYTES", default_value_t = 4096)]
    pub max_sentence_bytes: usize,

    /// Largest beam a request may ask for.
    #[arg(long, env = "XLMC_MAX_BEAM_SIZE", default_value_t = 8)]
    pub max_beam_size: u32,

    /// Largest `max_length` a request may ask for (tokens).
    #[arg(long, env = "XLMC_MAX_OUTPUT_TOKENS", default_value_t = 512)]
    pub max_output_tokens: u32,

    /// Largest gRPC message accepted, in bytes; larger ones are refused by the transport.
    #[arg(long, env = "XLMC_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Log line format on stderr.
    #[arg(long, env = "XLMC_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

impl Settings {
    /// Constraints between flags, checked before anything starts.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.max_sentences_per_request > 0, "--max-sentences-per-request must be at least 1");
        ensure!(self.max_beam_size > 0, "--max-beam-size must be at least 1");
        ensure!(
            self.max_sentence_bytes <= self.max_message_bytes,
            "--max-sentence-bytes ({}) cannot exceed --max-message-bytes ({})",
            self.max_sentence_bytes,
            self.max_message_bytes
        );
        if let Some(models) = &self.models {
            ensure!(models.is_dir(), "--models {}: not a directory", models.display());
        }
        Ok(())
    }
}
