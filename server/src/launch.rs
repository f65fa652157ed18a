//! Starting a `server` process from another program (loadgen, `exporter pipeline`, the tests): it
//! is ready once it prints [`READY_PREFIX`](crate::READY_PREFIX) with the addresses it really
//! bound, which is how callers use port 0.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::READY_PREFIX;

/// The `server` binary beside the running one (xlmc's binaries are built into one folder).
pub fn sibling_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running binary")?;
    let server = exe.with_file_name("server");
    if !server.is_file() {
        bail!(
            "{} is not built: `cargo build --release -p xlmc-server` (or ./xlmc build) builds it beside {}",
            server.display(),
            exe.display()
        );
    }
    Ok(server)
}

/// A started server process that has printed its ready line; killed when dropped.
#[derive(Debug)]
pub struct ReadyServer {
    pub child: Child,
    ready_line: String,
}

impl ReadyServer {
    /// Spawns `command` (its stdout is read here, and drained afterwards so the server never
    /// blocks on a full pipe) and waits up to `timeout` for the ready line. Exiting before it, or
    /// the timeout, is an error naming the program.
    pub fn start(mut command: Command, timeout: Duration) -> anyhow::Result<Self> {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command.stdout(Stdio::piped()).spawn().with_context(|| format!("starting {program}"))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with(READY_PREFIX) {
                    let _ = tx.send(line);
                }
            }
        });
        let started = Instant::now();
        let ready_line = loop {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                break line;
            }
            if let Some(status) = child.try_wait()? {
                bail!("{program} exited ({status}) before it was ready");
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{program} was not ready after {} s", timeout.as_secs());
            }
        };
        Ok(Self { child, ready_line })
    }

    /// A `key=` field of the ready line (`grpc=`, `metrics=`, `http=`, `onnxruntime=`).
    pub fn field(&self, key: &str) -> Option<&str> {
        self.ready_line.split_whitespace().find_map(|f| f.strip_prefix(key))
    }

    fn address(&self, key: &str) -> anyhow::Result<SocketAddr> {
        let value = self.field(key).with_context(|| format!("no {key} in `{}`", self.ready_line))?;
        value.parse().with_context(|| format!("bad {key} in `{}`", self.ready_line))
    }

    pub fn grpc(&self) -> anyhow::Result<SocketAddr> {
        self.address("grpc=")
    }

    pub fn metrics(&self) -> anyhow::Result<SocketAddr> {
        self.address("metrics=")
    }

    /// The LibreTranslate-compatible HTTP API's address (only with `--http-addr`).
    pub fn http(&self) -> anyhow::Result<SocketAddr> {
        self.address("http=")
    }
}

impl Drop for ReadyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
