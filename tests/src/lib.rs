//! Helpers for xlmc's end-to-end tests: the workspace's binaries, a server process started on
//! port 0, plain HTTP GETs and a Prometheus text-format reader.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Command, ExitStatus, Stdio},
    time::Duration,
};

use xlmc_server::launch::ReadyServer;

/// How long a server may take to print its ready line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of a workspace binary built in the same profile as the running test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/e2e-<hash> → target/<profile>/<name>
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join(name);
    assert!(path.is_file(), "{} is not built; run `cargo build --bins` (./xlmc test does)", path.display());
    path
}

/// A `server` process on 127.0.0.1 port 0; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    server: ReadyServer,
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
    /// The ONNX Runtime library the server loaded.
    pub onnxruntime: PathBuf,
}

impl ServerProcess {
    /// Starts `server` with an empty environment plus `args`, and waits for its ready line.
    pub fn start(args: &[&str]) -> Self {
        Self::start_binary(&binary("server"), args)
    }

    /// Same as [`ServerProcess::start`] with a server binary from elsewhere (an install layout).
    pub fn start_binary(server: &std::path::Path, args: &[&str]) -> Self {
        let mut command = Command::new(server);
        command
            .env_clear()
            .env("RUST_LOG", "warn")
            .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
            .args(args)
            .stderr(Stdio::inherit());
        let server = ReadyServer::start(command, STARTUP_TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"));
        Self {
            grpc: server.grpc().unwrap(),
            metrics: server.metrics().unwrap(),
            onnxruntime: PathBuf::from(server.field("onnxruntime=").expect("onnxruntime= in the ready line")),
            server,
        }
    }

    /// The LibreTranslate-compatible API's address (started with `--http-addr 127.0.0.1:0`).
    pub fn http(&self) -> SocketAddr {
        self.server.http().unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.server.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = std::time::Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            if let Some(status) = self.server.child.try_wait().expect("wait server") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "server did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `GET path` over HTTP/1.0; returns the status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, &[], b"")
}

/// Any request over HTTP/1.0 with `headers` (name, value) and `body`; returns the status code and
/// body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send request head");
    // A server may answer (413) and close before reading a large body.
    let _ = stream.write_all(body);
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP head");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
    (status, body.to_owned())
}

/// One sample of the Prometheus text format: name, sorted labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parsed `/metrics` page: samples plus the `# TYPE` of each metric family.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub types: BTreeMap<String, String>,
}

impl Exposition {
    /// Parses the text format; panics with the offending line on anything malformed.
    pub fn parse(text: &str) -> Self {
        let mut page = Exposition::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line `{line}`"));
                page.types.insert(name.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') {
                page.samples.push(parse_sample(line));
            }
        }
        page
    }

    /// The value of the sample with this name and exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.samples.iter().find(|s| s.name == name && s.labels == wanted).map(|s| s.value)
    }

    /// Every sample of a name.
    pub fn all(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

fn parse_sample(line: &str) -> Sample {
    try_parse_sample(line).unwrap_or_else(|| panic!("bad sample line `{line}`"))
}

fn try_parse_sample(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    let valid_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    valid_name.then(|| Sample { name: name.to_owned(), labels, value })
}

/// `a="x",b="y"` with `\"`, `\\` and `\n` escapes.
fn parse_labels(body: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

/// `python3` with the test oracles (`.deps/oracles`, installed by `./xlmc test`) importable.
pub fn oracle_python() -> Command {
    let oracles = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.deps/oracles");
    assert!(oracles.is_dir(), "{} is missing: run `./xlmc test`, which installs the test oracles", oracles.display());
    let mut python = Command::new("python3");
    python.env("PYTHONPATH", oracles).env("PYTHONIOENCODING", "utf-8");
    python
}

/// A python with PyTorch, the oracle for reading real `torch.save` files (`XLMC_TORCH_PYTHON`, or
/// Debian's `python3-torch` under /usr/bin/python3, which `.ci/run` installs). `None` — and a note
/// — where there is none; under CI (`CI` set) a missing oracle fails the test instead.
pub fn torch_python() -> Option<Command> {
    let python = std::env::var("XLMC_TORCH_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let works = Command::new(&python)
        .args(["-c", "import torch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Some(Command::new(python));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{python} cannot import torch: install Debian's python3-torch (as .ci/run does) or set XLMC_TORCH_PYTHON"
    );
    eprintln!("note: {python} cannot import torch; skipping (apt-get install python3-torch, or set XLMC_TORCH_PYTHON)");
    None
}

/// The deterministic generator tests build their corpora with.
pub use xlmc_training::batching::Rng;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_values_and_types() {
        let page = Exposition::parse(
            "# TYPE x_total counter\nx_total{code=\"NotFound\",m=\"a\\\"b\"} 3\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nplain 1.5\n",
        );
        assert_eq!(page.value("x_total", &[("code", "NotFound"), ("m", "a\"b")]), Some(3.0));
        assert_eq!(page.value("h_bucket", &[("le", "+Inf")]), Some(2.0));
        assert_eq!(page.value("plain", &[]), Some(1.5));
        assert_eq!(page.types["h"], "histogram");
    }

    #[test]
    #[should_panic(expected = "bad sample line")]
    fn malformed_lines_are_rejected() {
        Exposition::parse("x{code=\"a\" 3\n");
    }
}
