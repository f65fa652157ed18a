//! Telemetry for xlmc's binaries: Prometheus metrics and logging.
//!
//! - [`names`] lists every metric xlmc records (one `xlmc_` prefix, seconds for durations);
//! - [`install_metrics`] installs the process-wide recorder with explicit histogram buckets and
//!   describes every metric, once, at start-up;
//! - [`serve_metrics`] answers `GET /metrics` on a listener the caller bound, so a server started
//!   on port 0 can report the address it really got;
//! - [`init_logging`] sets up `tracing` (text or JSON, filter from `RUST_LOG`);
//! - [`percentile`]: nearest-rank latency percentiles for reports.

mod endpoint;
mod logging;
mod percentile;
mod recorder;

pub use endpoint::serve_metrics;
pub use logging::{LogFormat, init_logging};
pub use percentile::percentile;
pub use recorder::{DURATION_BUCKETS, SIZE_BUCKETS, install_metrics, names};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("installing the Prometheus recorder: {0}")]
    Install(String),
    #[error("serving /metrics: {0}")]
    Serve(#[from] std::io::Error),
}
