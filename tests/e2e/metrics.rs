//! `/metrics` of a real server: scraped, parsed, and checked against the requests sent.

use tonic::Code;
use xlmc_proto::v1::{DecodingOptions, TranslateRequest, translator_client::TranslatorClient};
use xlmc_telemetry::{DURATION_BUCKETS, names};
use xlmc_tests::{Exposition, ServerProcess, http_get};

const NOT_FOUND_SENT: usize = 5;
const INVALID_SENT: usize = 3;

#[tokio::test]
async fn counters_and_histograms_match_the_requests_sent() {
    let server = ServerProcess::start(&["--max-beam-size", "2"]);
    let mut client = TranslatorClient::connect(server.grpc_url()).await.expect("connect");
    for i in 0..NOT_FOUND_SENT {
        let request = TranslateRequest { model: format!("m{i}"), sentences: vec!["a".into()], ..Default::default() };
        assert_eq!(client.translate(request).await.unwrap_err().code(), Code::NotFound);
    }
    for _ in 0..INVALID_SENT {
        let request = TranslateRequest {
            model: "m".into(),
            options: Some(DecodingOptions { beam_size: Some(3), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(client.translate(request).await.unwrap_err().code(), Code::InvalidArgument);
    }

    let (status, body) = http_get(server.metrics, "/metrics");
    assert_eq!(status, 200);
    let page = Exposition::parse(&body);
    let count = |code: &str| {
        page.value(names::REQUESTS_TOTAL, &[("code", code), ("method", "Translate"), ("model", "unknown")])
    };
    assert_eq!(count("NotFound"), Some(NOT_FOUND_SENT as f64), "{body}");
    assert_eq!(count("InvalidArgument"), Some(INVALID_SENT as f64), "{body}");
    // Unknown model names never become label values.
    assert!(page.all(names::REQUESTS_TOTAL).iter().all(|s| s.labels["model"] == "unknown"));

    let duration = names::REQUEST_DURATION;
    assert_eq!(page.types.get(duration).map(String::as_str), Some("histogram"));
    let labels = [("method", "Translate"), ("model", "unknown")];
    assert_eq!(page.value(&format!("{duration}_count"), &labels), Some((NOT_FOUND_SENT + INVALID_SENT) as f64));
    let mut bounds: Vec<f64> =
        page.all(&format!("{duration}_bucket")).iter().map(|s| s.labels["le"].parse::<f64>().expect("le")).collect();
    bounds.retain(|b| b.is_finite());
    assert_eq!(bounds, DURATION_BUCKETS, "explicit buckets, not summaries");
    assert_eq!(page.value(names::BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
    assert_eq!(page.value(names::MODELS_LOADED, &[]), Some(0.0));
}

#[tokio::test]
async fn other_paths_are_not_found() {
    let server = ServerProcess::start(&[]);
    assert_eq!(http_get(server.metrics, "/").0, 404);
    assert_eq!(http_get(server.metrics, "/metrics").0, 200);
}

/// `promtool check metrics` (Debian's prometheus package) lints the page when it is installed;
/// .ci/run installs it.
#[tokio::test]
async fn promtool_accepts_the_exposition() {
    let Ok(promtool) = which("promtool") else {
        eprintln!("promtool not installed; skipping the promtool lint (CI installs it)");
        return;
    };
    let server = ServerProcess::start(&[]);
    let mut client = TranslatorClient::connect(server.grpc_url()).await.expect("connect");
    let _ = client.translate(TranslateRequest::default()).await;
    let (_, body) = http_get(server.metrics, "/metrics");
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("feed promtool");
    let output = child.wait_with_output().expect("promtool output");
    assert!(
        output.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The alerting rules operators get (`docs/operations/alerts.yml`) load in Prometheus and fire
/// exactly as their unit tests (`alerts.test.yml`) say; every metric they use is one the server
/// records.
#[test]
fn alerting_rules_pass_promtool_and_use_only_recorded_metrics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations");
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("xlmc_")) {
        let base = ["_bucket", "_sum", "_count"].iter().fold(word, |w, suffix| w.strip_suffix(suffix).unwrap_or(w));
        assert!(names::ALL.contains(&base), "alerts.yml uses {word}, which the server does not record");
    }
    let Ok(promtool) = which("promtool") else {
        assert!(std::env::var_os("CI").is_none(), "promtool is missing under CI (.ci/run installs prometheus)");
        eprintln!("promtool not installed; skipping the rule checks (CI installs it)");
        return;
    };
    for args in [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]] {
        let output = std::process::Command::new(&promtool).args(args).current_dir(&dir).output().expect("run promtool");
        assert!(
            output.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

pub(crate) fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}

/// The Grafana dashboard and the README's metrics table name exactly the metrics the server
/// records: nothing missing, nothing that does not exist.
#[test]
fn dashboard_and_readme_cover_every_metric_and_only_those() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("docs/operations/grafana-dashboard.json")).unwrap())
            .unwrap();
    let mut used = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in
                expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("xlmc_"))
            {
                let base =
                    ["_bucket", "_sum", "_count"].iter().fold(word, |w, suffix| w.strip_suffix(suffix).unwrap_or(w));
                used.insert(base.to_owned());
            }
        }
    }
    let known: std::collections::BTreeSet<String> = names::ALL.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(used, known, "dashboard metrics vs recorded metrics");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for name in names::ALL {
        assert!(readme.contains(&format!("| `{name}` |")), "README's metrics table lacks {name}");
    }
}
