//! The metric catalogue and the recorder that exports it.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::TelemetryError;

/// Metric names. Labels come from small closed sets: `model` (loaded bundles), `method` (RPC
/// names), `code` (gRPC status codes), `student`/`teacher` (loaded bundles), `route` (the
/// LibreTranslate API's paths, or `other`), `status` (HTTP status codes).
pub mod names {
    pub const REQUESTS_TOTAL: &str = "xlmc_requests_total";
    pub const REQUEST_DURATION: &str = "xlmc_request_duration_seconds";
    pub const QUEUE_DURATION: &str = "xlmc_queue_duration_seconds";
    pub const QUEUE_DEPTH: &str = "xlmc_queue_depth";
    pub const BATCH_SIZE: &str = "xlmc_batch_size";
    pub const SENTENCES_TOTAL: &str = "xlmc_sentences_total";
    pub const SENTENCES_ABANDONED_TOTAL: &str = "xlmc_sentences_abandoned_total";
    pub const DECODE_STEPS_TOTAL: &str = "xlmc_decode_steps_total";
    pub const GENERATED_TOKENS_TOTAL: &str = "xlmc_generated_tokens_total";
    pub const MODELS_LOADED: &str = "xlmc_models_loaded";
    pub const SHADOW_BLEU: &str = "xlmc_shadow_bleu";
    pub const SHADOW_LATENCY_RATIO: &str = "xlmc_shadow_latency_ratio";
    pub const BUILD_INFO: &str = "xlmc_build_info";
    pub const HTTP_REQUESTS_TOTAL: &str = "xlmc_http_requests_total";
    pub const HTTP_REQUEST_DURATION: &str = "xlmc_http_request_duration_seconds";

    /// Every name above (dashboards and docs are checked against it).
    pub const ALL: &[&str] = &[
        REQUESTS_TOTAL,
        REQUEST_DURATION,
        QUEUE_DURATION,
        QUEUE_DEPTH,
        BATCH_SIZE,
        SENTENCES_TOTAL,
        SENTENCES_ABANDONED_TOTAL,
        DECODE_STEPS_TOTAL,
        GENERATED_TOKENS_TOTAL,
        MODELS_LOADED,
        SHADOW_BLEU,
        SHADOW_LATENCY_RATIO,
        BUILD_INFO,
        HTTP_REQUESTS_TOTAL,
        HTTP_REQUEST_DURATION,
    ];
}

/// Latency buckets in seconds: 1 ms to 30 s, dense where interactive translation lives.
pub const DURATION_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Batch-size buckets (rows per decoding step).
pub const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Installs the global recorder and describes every metric. Call once per process.
pub fn install_metrics() -> Result<PrometheusHandle, TelemetryError> {
    let install = |e: metrics_exporter_prometheus::BuildError| TelemetryError::Install(e.to_string());
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
        .map_err(install)?
        .set_buckets_for_metric(Matcher::Full(names::BATCH_SIZE.into()), SIZE_BUCKETS)
        .map_err(install)?
        .install_recorder()
        .map_err(install)?;
    describe_all();
    metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

fn describe_all() {
    use names::*;
    describe_counter!(REQUESTS_TOTAL, "Finished RPCs by model, method and gRPC status code.");
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "RPC time from arrival to reply.");
    describe_histogram!(QUEUE_DURATION, Unit::Seconds, "Time a sentence waited before joining a batch.");
    describe_gauge!(QUEUE_DEPTH, "Sentences waiting to join a batch.");
    describe_histogram!(BATCH_SIZE, "Active rows per decoding step.");
    describe_counter!(SENTENCES_TOTAL, "Sentences translated.");
    describe_counter!(
        SENTENCES_ABANDONED_TOTAL,
        "Sentences dropped before finishing, by reason: `cancelled` (the client left) or `deadline`."
    );
    describe_counter!(DECODE_STEPS_TOTAL, "Decoder steps run.");
    describe_counter!(GENERATED_TOKENS_TOTAL, "Tokens generated (end-of-sentence excluded).");
    describe_gauge!(MODELS_LOADED, "Models currently serving.");
    describe_gauge!(SHADOW_BLEU, "BLEU of a student's output against its teacher's on shadowed traffic.");
    describe_gauge!(SHADOW_LATENCY_RATIO, "Student latency divided by teacher latency on shadowed traffic.");
    describe_gauge!(BUILD_INFO, "Always 1; the version label says which xlmc runs.");
    describe_counter!(HTTP_REQUESTS_TOTAL, "Finished LibreTranslate-API HTTP requests by route and status.");
    describe_histogram!(HTTP_REQUEST_DURATION, Unit::Seconds, "HTTP request time from arrival to reply.");
}
