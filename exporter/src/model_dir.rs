//! A model directory: `config.json` + weights (xlmc-transformer's Seq2Seq, or xlmc-bigru's
//! BiGRU when `config.json` says `"architecture": "bigru"`) and the tokenizer files
//! (xlmc-tokenizer) side by side — what `train`/`distill` write and `translate` reads. Loading is
//! xlmc-model-folder's (the server's libtorch backend loads through it too); writing and the
//! training record are here.

use std::path::Path;

use anyhow::Context;
pub use xlmc_model_folder::{AnyModel, load, load_any};
use xlmc_tokenizer::Tokenizer;
use xlmc_training::TrainableModel;
use xlmc_transformer::Seq2Seq;

/// Any model as the trainer sees it.
pub trait Trainable {
    fn trainable(&mut self) -> &mut dyn TrainableModel;
}

impl Trainable for AnyModel {
    fn trainable(&mut self) -> &mut dyn TrainableModel {
        match self {
            AnyModel::Transformer(m) => m.as_mut(),
            AnyModel::BiGru(m) => m.as_mut(),
        }
    }
}

/// Writes any model and its tokenizer into `dir`.
pub fn save_any(dir: &Path, model: &AnyModel, tokenizer: &Tokenizer) -> anyhow::Result<()> {
    match model {
        AnyModel::Transformer(m) => save(dir, m, tokenizer),
        AnyModel::BiGru(m) => {
            m.save(dir).with_context(|| format!("saving the model to {}", dir.display()))?;
            tokenizer.save(dir).with_context(|| format!("saving the tokenizer to {}", dir.display()))
        }
    }
}

pub fn save(dir: &Path, model: &Seq2Seq, tokenizer: &Tokenizer) -> anyhow::Result<()> {
    model.save(dir).with_context(|| format!("saving the model to {}", dir.display()))?;
    tokenizer.save(dir).with_context(|| format!("saving the tokenizer to {}", dir.display()))
}

/// Writes a whole new model directory at `out`: into a staging folder beside it, then renamed, so
/// `out` never holds a half-written model. An existing `out` is replaced only with `force`.
pub fn save_new(out: &Path, force: bool, model: &Seq2Seq, tokenizer: &Tokenizer) -> anyhow::Result<()> {
    anyhow::ensure!(force || !out.exists(), "--out {} exists; pass --force to replace it", out.display());
    xlmc_atomic_file::replace_dir(out, true, |staging| save(staging, model, tokenizer))
        .with_context(|| format!("--out {}", out.display()))
}

/// sha256 of each weight file, in name order: identifies a model's weights (caches built from a
/// teacher must not be reused for another).
pub fn weights_fingerprint(dir: &Path) -> String {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "safetensors"));
    files.sort();
    files.iter().map(|p| xlmc_corpus::sha256_file(p).unwrap_or_default()).collect::<Vec<_>>().join(",")
}

/// Bytes of the weight files in a model directory.
pub fn weight_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
                .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                .sum()
        })
        .unwrap_or(0)
}

/// `training.json` in a model folder written by `exporter train`: how much training its weights
/// have had, over every run that led to them (`--init-from` chains add up).
pub const TRAINING_FILE: &str = "training.json";

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainingRecord {
    pub updates: i64,
    pub target_tokens: u64,
    pub train_seconds: f64,
    /// The runs, oldest first: each one's config file, updates and the folder it started from.
    #[serde(default)]
    pub runs: Vec<RunRecord>,
    /// Set by `exporter average`: the folders whose mean these weights are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub averaged_from: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    pub config: String,
    pub updates: i64,
    pub target_tokens: u64,
    pub train_seconds: f64,
    pub init_from: Option<String>,
}

impl TrainingRecord {
    /// The record of `dir`, or `None` when it has none (trained before records, imported).
    pub fn read(dir: &Path) -> anyhow::Result<Option<Self>> {
        read_json(&dir.join(TRAINING_FILE))
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        write_json(&dir.join(TRAINING_FILE), self)
    }

    /// This record followed by one more run.
    pub fn then(mut self, run: RunRecord) -> Self {
        self.updates += run.updates;
        self.target_tokens += run.target_tokens;
        self.train_seconds += run.train_seconds;
        self.runs.push(run);
        self
    }
}

/// A JSON file's value, or `None` when the file does not exist; errors name the file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    Ok(Some(serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?))
}

/// Writes `value` as pretty JSON, atomically.
pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(value).expect("serialises to JSON");
    xlmc_atomic_file::write(path, json.as_bytes()).with_context(|| format!("{}", path.display()))
}
