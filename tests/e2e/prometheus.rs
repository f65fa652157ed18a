//! A real Prometheus (Debian's `prometheus`, which `.ci/run` installs) scraping a real server with
//! a teacher and a shadowed student under gRPC and HTTP traffic: every PromQL expression of the
//! Grafana dashboard returns data through Prometheus's HTTP API.

use std::time::{Duration, Instant};

use serde_json::Value;
use tonic::Code;
use xlmc_proto::v1::translator_client::TranslatorClient;
use xlmc_tests::{ServerProcess, http_get, http_request};

use crate::{grpc::request, metrics::which, train::teacher_and_student_bundles};

/// A Prometheus process, killed when dropped.
struct Prometheus {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Runs `query` at the current time; returns the `data.result` array.
    fn query(&self, query: &str) -> Vec<Value> {
        let encoded: String = query
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        let (status, body) = http_get(self.addr, &format!("/api/v1/query?query={encoded}"));
        let reply: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{query}: {e}: {body}"));
        assert_eq!((status, reply["status"].as_str()), (200, Some("success")), "{query}: {body}");
        reply["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_server_and_every_dashboard_query_returns_data() {
    let Ok(prometheus) = which("prometheus") else {
        assert!(std::env::var_os("CI").is_none(), "prometheus is missing under CI (.ci/run installs it)");
        eprintln!("prometheus not installed; skipping (CI installs it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    teacher_and_student_bundles(dir.path(), 40);
    // Idle engines wait 100 ms to fill a batch, so a 20 ms deadline passes in the queue.
    let server = ServerProcess::start(&[
        "--models",
        &path("models"),
        "--teacher",
        "teacher",
        "--shadow-rate",
        "1",
        "--http-addr",
        "127.0.0.1:0",
        "--max-wait-us",
        "100000",
    ]);

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        path("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: xlmc\n    static_configs:\n      - targets: ['{}']\n",
            server.metrics
        ),
    )
    .unwrap();
    let child = std::process::Command::new(prometheus)
        .args([
            format!("--config.file={}", path("prometheus.yml")),
            format!("--storage.tsdb.path={}", path("tsdb")),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start prometheus");
    let prometheus = Prometheus { child, addr: ([127, 0, 0, 1], port).into() };

    // Traffic for every panel, over more than a few scrapes: both models (the student's requests
    // are shadowed by the teacher), the HTTP API, and a deadline that passes in the queue.
    let mut client = TranslatorClient::connect(server.grpc_url()).await.expect("connect");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        for model in ["student", "teacher"] {
            client.translate(request(model, &["w1 w2", "w3 w4 w5"])).await.expect("Translate");
        }
        let body = br#"{"q": "w1 w2", "source": "en", "target": "fr"}"#;
        let (status, reply) =
            http_request(server.http(), "POST", "/translate", &[("Content-Type", "application/json")], body);
        assert_eq!(status, 200, "{reply}");
    }
    let mut hurried = tonic::Request::new(request("teacher", &["w1 w2 w3"]));
    hurried.set_timeout(Duration::from_millis(20));
    // The server answers DEADLINE_EXCEEDED just before the deadline; on a loaded machine tonic's
    // own CANCELLED can come first. Either way the sentence leaves the queue unfinished.
    let code = client.translate(hurried).await.unwrap_err().code();
    assert!(matches!(code, Code::DeadlineExceeded | Code::Cancelled), "{code:?}");

    // Prometheus holds the last counters and enough scrapes within a minute for `rate`.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        // `rate` needs two samples of a series in its window, and the abandoned counter only
        // exists from the scrape after the hurried request: count that series' own samples.
        let abandoned = prometheus.query("count_over_time(xlmc_sentences_abandoned_total[1m])");
        let scrapes = prometheus.query("count_over_time(up[1m])");
        let samples =
            |result: &[Value]| result.first().and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok()).unwrap_or(0.0);
        if samples(&abandoned) >= 3.0 && samples(&scrapes) >= 3.0 {
            break;
        }
        assert!(Instant::now() < deadline, "prometheus did not scrape the server enough: {scrapes:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations/grafana-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            // Grafana's rate interval: a window holding many 1 s scrapes of the traffic above.
            let expr = target["expr"].as_str().unwrap().replace("$__rate_interval", "1m");
            let result = prometheus.query(&expr);
            assert!(!result.is_empty(), "panel {:?}: `{expr}` returned no data", panel["title"]);
            checked += 1;
        }
    }
    assert_eq!(checked, 17, "every target of every panel");
}
