//! Server settings: every flag is also an `XLMC_*` environment variable.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::ensure;
use clap::Parser;

use xlmc_telemetry::LogFormat;

#[derive(Debug, Clone, Parser)]
#[command(name = "server", version, about = "Serve xlmc translation models over gRPC")]
pub struct Settings {
    /// A TOML file of settings, keys named like the flags (`max-batch-tokens = 4096`). Flags and
    /// `XLMC_*` variables win over it; it wins over the defaults.
    #[arg(long, env = "XLMC_CONFIG")]
    pub config: Option<PathBuf>,

    /// gRPC listen address. Port 0 picks a free port; the one chosen is printed at start-up.
    #[arg(long, env = "XLMC_ADDR", default_value = "127.0.0.1:50051")]
    pub addr: SocketAddr,

    /// Prometheus endpoint address (`GET /metrics`). Port 0 picks a free port.
    #[arg(long, env = "XLMC_METRICS_ADDR", default_value = "127.0.0.1:9090")]
    pub metrics_addr: SocketAddr,

    /// Also serve the LibreTranslate-compatible HTTP API (`POST /translate`, `GET /languages`)
    /// here, on the same models and limits; off unless set. Port 0 picks a free port.
    #[arg(long, env = "XLMC_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,

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

    /// Most BPE tokens one sentence may have after tokenization.
    #[arg(long, env = "XLMC_MAX_SOURCE_TOKENS", default_value_t = 256)]
    pub max_source_tokens: usize,

    /// Most model rows (sentences × beam) decoded together in one step.
    #[arg(long, env = "XLMC_MAX_BATCH_SENTENCES", default_value_t = 64)]
    pub max_batch_sentences: usize,

    /// Token budget of a batch: every row counts its source tokens plus those generated so far.
    #[arg(long, env = "XLMC_MAX_BATCH_TOKENS", default_value_t = 8192)]
    pub max_batch_tokens: usize,

    /// How long an idle model waits for more sentences before starting a batch (microseconds).
    #[arg(long, env = "XLMC_MAX_WAIT_US", default_value_t = 2000)]
    pub max_wait_us: u64,

    /// While a batch runs, waiting sentences join it every this many decoder steps, or at once
    /// when they are a quarter of the rows running (each join encodes and re-lays the batch's
    /// caches; 1 = at every step). Continuous batching only.
    #[arg(long, env = "XLMC_JOIN_EVERY_STEPS", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub join_every_steps: u64,

    /// `continuous`: sentences join and leave the running batch at every step; `static`: a batch
    /// runs until its last sentence finishes before the next one starts (for comparison).
    #[arg(long, env = "XLMC_BATCHING", default_value = "continuous", value_parser = ["continuous", "static"])]
    pub batching: String,

    /// Most sentences waiting per model; beyond it requests get RESOURCE_EXHAUSTED.
    #[arg(long, env = "XLMC_MAX_QUEUE_SENTENCES", default_value_t = 4096)]
    pub max_queue_sentences: usize,

    /// ONNX Runtime intra-op threads per model session.
    #[arg(long, env = "XLMC_INTRA_THREADS", default_value_t = 1)]
    pub intra_threads: usize,

    /// Where models run: `cpu`, or `cuda` (ONNX Runtime's CUDA execution provider; build with
    /// `--features cuda` and load onnxruntime-gpu, else one warning and the CPU).
    #[arg(long, env = "XLMC_DEVICE", default_value = "cpu", value_parser = ["cpu", "cuda"])]
    pub device: String,

    /// The teacher bundle's name (default: the largest bundle); the others are its students.
    #[arg(long, env = "XLMC_TEACHER")]
    pub teacher: Option<String>,

    /// The model of requests that name none (default: the smallest serving bundle).
    #[arg(long, env = "XLMC_DEFAULT_MODEL")]
    pub default_model: Option<String>,

    /// Fraction of student requests also translated by the teacher, off the critical path, to
    /// track student-vs-teacher BLEU and latency (`ListModels` stats, `xlmc_shadow_*` gauges).
    #[arg(long, env = "XLMC_SHADOW_RATE", default_value_t = 0.0)]
    pub shadow_rate: f64,

    /// Require `authorization: Bearer <token>` on xlmc.v1 calls (health and reflection stay
    /// open for probes). Prefer the environment variable to keep it out of `ps`.
    #[arg(long, env = "XLMC_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// Serve gRPC over TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "XLMC_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "XLMC_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Also require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "XLMC_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Largest gRPC message accepted, in bytes; larger ones are refused by the transport.
    #[arg(long, env = "XLMC_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Log line format on stderr.
    #[arg(long, env = "XLMC_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

impl Settings {
    /// Parses flags and environment, then fills what is still at its default from `--config`.
    pub fn from_args_and_config(args: Vec<std::ffi::OsString>) -> anyhow::Result<Self> {
        use anyhow::Context;
        use clap::{CommandFactory, FromArgMatches, parser::ValueSource};
        let matches = Self::command().try_get_matches_from(&args)?;
        let settings = Self::from_arg_matches(&matches)?;
        let Some(path) = &settings.config else { return Ok(settings) };
        let text = std::fs::read_to_string(path).with_context(|| format!("--config {}", path.display()))?;
        let table: toml::Table = text.parse().with_context(|| format!("--config {}", path.display()))?;
        let command = Self::command();
        let mut extra = Vec::new();
        for (key, value) in &table {
            let id = key.replace('-', "_");
            anyhow::ensure!(
                id != "config" && command.get_arguments().any(|a| a.get_id() == id.as_str()),
                "--config {}: unknown setting `{key}` (keys are the flags' names, e.g. `max-batch-tokens`)",
                path.display()
            );
            if !matches!(matches.value_source(&id), None | Some(ValueSource::DefaultValue)) {
                continue; // a flag or variable set it
            }
            let value = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => value.to_string(),
                other => anyhow::bail!(
                    "--config {}: `{key}` must be a string, number or boolean, not {other}",
                    path.display()
                ),
            };
            extra.push(std::ffi::OsString::from(format!("--{key}={value}")));
        }
        let mut all = args;
        all.splice(1.min(all.len())..1.min(all.len()), extra);
        Self::try_parse_from(all).with_context(|| format!("--config {}", path.display()))
    }

    /// The TLS configuration from --tls-cert/--tls-key(/--tls-client-ca), read now so a bad file
    /// fails start-up naming the flag.
    pub fn tls(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        use anyhow::Context;
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else { return Ok(None) };
        let read =
            |flag: &str, path: &PathBuf| std::fs::read(path).with_context(|| format!("{flag} {}", path.display()));
        let mut config =
            ServerTlsConfig::new().identity(Identity::from_pem(read("--tls-cert", cert)?, read("--tls-key", key)?));
        if let Some(ca) = &self.tls_client_ca {
            config = config.client_ca_root(Certificate::from_pem(read("--tls-client-ca", ca)?));
        }
        Ok(Some(config))
    }

    /// How bundles are loaded and batched.
    pub fn load_options(&self) -> crate::LoadOptions {
        crate::LoadOptions {
            session: xlmc_runtime::SessionOptions { intra_threads: self.intra_threads, cuda: self.device == "cuda" },
            batch: crate::BatchLimits {
                max_rows: self.max_batch_sentences,
                max_tokens: self.max_batch_tokens,
                max_wait: std::time::Duration::from_micros(self.max_wait_us),
                max_queue: self.max_queue_sentences,
                max_output_tokens: self.max_output_tokens as usize,
                continuous: self.batching == "continuous",
                join_every_steps: self.join_every_steps,
            },
            teacher: self.teacher.clone(),
            default_model: self.default_model.clone(),
        }
    }

    /// Constraints between flags, checked before anything starts.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.max_sentences_per_request > 0, "--max-sentences-per-request must be at least 1");
        ensure!(self.max_beam_size > 0, "--max-beam-size must be at least 1");
        ensure!(self.max_batch_sentences > 0, "--max-batch-sentences must be at least 1");
        ensure!(self.max_source_tokens > 0, "--max-source-tokens must be at least 1");
        ensure!(self.auth_token.as_ref().is_none_or(|t| !t.is_empty()), "--auth-token must not be empty");
        ensure!((0.0..=1.0).contains(&self.shadow_rate), "--shadow-rate {} must be within 0..=1", self.shadow_rate);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(config: &str, args: &[&str]) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(&path, config).unwrap();
        let mut argv: Vec<std::ffi::OsString> = vec!["server".into(), "--config".into(), path.clone().into()];
        argv.extend(args.iter().map(Into::into));
        Settings::from_args_and_config(argv)
    }

    #[test]
    fn config_file_fills_defaults_and_flags_win() {
        let s = parse(
            "max-batch-tokens = 4096\nbatching = \"static\"\nshadow-rate = 0.5\n",
            &["--max-batch-tokens", "100"],
        )
        .unwrap();
        assert_eq!(s.max_batch_tokens, 100, "the flag wins");
        assert_eq!(s.batching, "static");
        assert_eq!(s.shadow_rate, 0.5);
        let err = parse("max-batch-tokenz = 1\n", &[]).unwrap_err();
        assert!(err.to_string().contains("unknown setting `max-batch-tokenz`"), "{err:#}");
        let err = parse("batching = \"sometimes\"\n", &[]).unwrap_err();
        assert!(format!("{err:#}").contains("sometimes"), "{err:#}");
    }
}
