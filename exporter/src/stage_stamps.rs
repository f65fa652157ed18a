//! What each pipeline stage was last built from. A stage is skipped only when its output is
//! valid *and* was made from the same inputs and settings (a make-like key: upstream
//! fingerprints + the stage's settings); a changed key removes the old output first, so a
//! retrained teacher never leaves stale students behind it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, ensure};
use sha2::{Digest, Sha256};

const STAMPS_FILE: &str = "pipeline-stamps.json";

/// sha256 over every file under `path` (relative names and contents), or of the file itself;
/// empty when nothing is there.
pub fn fingerprint(path: &Path) -> String {
    let mut files = Vec::new();
    collect_files(path, path, &mut files);
    files.sort();
    if files.is_empty() {
        return String::new();
    }
    let mut hasher = Sha256::new();
    for (relative, full) in files {
        hasher.update(relative.as_bytes());
        hasher.update([0]);
        hasher.update(xlmc_atomic_file::sha256_file(&full).unwrap_or_default().as_bytes());
    }
    hex::encode(hasher.finalize())
}

fn collect_files(root: &Path, path: &Path, files: &mut Vec<(String, PathBuf)>) {
    if path.is_file() {
        let relative = path.strip_prefix(root).unwrap_or(path).to_string_lossy().into_owned();
        files.push((relative, path.to_owned()));
    } else if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.filter_map(Result::ok) {
            collect_files(root, &entry.path(), files);
        }
    }
}

/// A stage's key from its parts (settings text, upstream fingerprints).
pub fn key(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

/// How one stage (or one output of it) went: for the closing table.
#[derive(Debug)]
pub struct StepTime {
    pub name: String,
    pub seconds: f64,
    pub skipped: bool,
}

/// The stamps of one pipeline output folder, numbered stage headers, and the time each took.
#[derive(Debug)]
pub struct Stages {
    path: PathBuf,
    stamps: BTreeMap<String, String>,
    total: usize,
    next: usize,
    pub times: Vec<StepTime>,
}

impl Stages {
    pub fn open(out: &Path, total: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(out).with_context(|| format!("--out {}", out.display()))?;
        let path = out.join(STAMPS_FILE);
        // An unreadable stamps file only costs rebuilding: every stage then checks its inputs again.
        let stamps =
            std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
        Ok(Self { path, stamps, total, next: 0, times: Vec::new() })
    }

    /// Prints `[n/total] name`.
    pub fn header(&mut self, name: &str) {
        self.next += 1;
        println!("[{}/{}] {name}", self.next, self.total);
    }

    /// Runs `build` unless `output` is valid and stamped with `key`. An output made from other
    /// inputs is removed first; the key is recorded before building, so an interrupted stage
    /// (a killed training run) resumes from its own checkpoint on the next run.
    pub fn step(
        &mut self,
        name: &str,
        output: &Path,
        key: &str,
        valid: impl Fn(&Path) -> bool,
        build: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let same_inputs = self.stamps.get(name).is_some_and(|k| k == key);
        if same_inputs && valid(output) {
            println!("      {}: built from the same inputs and valid: skipped", output.display());
            self.times.push(StepTime { name: name.into(), seconds: started.elapsed().as_secs_f64(), skipped: true });
            return Ok(());
        }
        if !same_inputs && output.exists() {
            println!("      {}: made from other inputs or settings: rebuilding it", output.display());
            remove(output)?;
        }
        self.stamps.insert(name.into(), key.into());
        self.save()?;
        build().with_context(|| format!("stage `{name}`"))?;
        ensure!(valid(output), "stage `{name}` finished without a valid {}", output.display());
        self.times.push(StepTime { name: name.into(), seconds: started.elapsed().as_secs_f64(), skipped: false });
        Ok(())
    }

    /// Records a step that has no output of its own to check (e.g. the demo translations).
    pub fn record(&mut self, name: &str, started: Instant, skipped: bool) {
        self.times.push(StepTime { name: name.into(), seconds: started.elapsed().as_secs_f64(), skipped });
    }

    fn save(&self) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.stamps)?;
        xlmc_atomic_file::write(&self.path, text.as_bytes()).with_context(|| format!("{}", self.path.display()))
    }
}

fn remove(path: &Path) -> anyhow::Result<()> {
    let result = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    result.with_context(|| format!("removing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_is_skipped_only_when_valid_and_built_from_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("model");
        let build = |text: &'static str| {
            let output = output.clone();
            move || -> anyhow::Result<()> {
                std::fs::create_dir_all(&output)?;
                std::fs::write(output.join("w"), text)?;
                Ok(())
            }
        };
        let valid = |p: &Path| p.join("w").is_file();
        let mut stages = Stages::open(dir.path(), 1).unwrap();
        stages.step("s", &output, "k1", valid, build("one")).unwrap();
        assert!(!stages.times[0].skipped);
        let first = fingerprint(&output);
        assert_eq!(first.len(), 64);

        // Same key, valid output: skipped (also after reopening the stamps).
        let mut stages = Stages::open(dir.path(), 1).unwrap();
        stages.step("s", &output, "k1", valid, build("two")).unwrap();
        assert!(stages.times[0].skipped);
        assert_eq!(fingerprint(&output), first);

        // Same key, output broken (an interrupted run): built again, in place.
        std::fs::remove_file(output.join("w")).unwrap();
        std::fs::write(output.join("partial"), "x").unwrap();
        stages.step("s", &output, "k1", valid, build("three")).unwrap();
        assert!(output.join("partial").is_file(), "resumed in place");

        // Another key: the old output is removed before building.
        stages.step("s", &output, "k2", valid, build("four")).unwrap();
        assert!(!output.join("partial").exists());
        assert_eq!(std::fs::read_to_string(output.join("w")).unwrap(), "four");

        // A build that leaves no valid output is an error naming the stage.
        let error = stages.step("t", &dir.path().join("none"), "k", valid, || Ok(())).unwrap_err();
        assert!(format!("{error:#}").contains("stage `t`"), "{error:#}");
    }

    #[test]
    fn fingerprints_see_names_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(fingerprint(&dir.path().join("missing")), "");
        std::fs::write(dir.path().join("a"), "1").unwrap();
        let one = fingerprint(dir.path());
        std::fs::write(dir.path().join("a"), "2").unwrap();
        let two = fingerprint(dir.path());
        std::fs::rename(dir.path().join("a"), dir.path().join("b")).unwrap();
        let renamed = fingerprint(dir.path());
        assert!(one != two && two != renamed && one != renamed);
        assert_ne!(key(&["a", "bc"]), key(&["ab", "c"]));
    }
}
