//! [`Seq2Seq`]: encoder + decoder in one `VarStore`, saved as `config.json` + `model.safetensors`,
//! or, with [`SaveOptions`], as fp16 and/or shards `model-00001-of-0000N.safetensors` listed in
//! `model.safetensors.index.json` (the layout Hugging Face uses, so its tools read it too).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use tch::{Device, Kind, Tensor, nn};

use crate::{Config, Transformer, Translator};

pub use xlmc_bundle::contract::{CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE as INDEX_FILE};

/// How [`Seq2Seq::save_with`] stores the weights. Loading accepts every variant and computes in
/// fp32 whatever the stored precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SaveOptions {
    /// fp16 halves the files (for shipping a trained model); training checkpoints stay fp32.
    pub half: bool,
    /// Largest shard in bytes; `None` = one `model.safetensors`.
    pub max_shard_bytes: Option<u64>,
}

/// `model.safetensors.index.json`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ShardIndex {
    metadata: IndexMetadata,
    weight_map: BTreeMap<String, String>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct IndexMetadata {
    total_size: u64,
}

fn shard_name(index: usize, count: usize) -> String {
    format!("model-{:05}-of-{count:05}.safetensors", index + 1)
}

/// Weight files of any earlier save in `dir` (replaced ones are removed after a new save).
fn weight_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name == WEIGHTS_FILE || name == INDEX_FILE || (name.starts_with("model-") && name.ends_with(".safetensors"))
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error("invalid config: {0}")]
    Config(String),
    #[error(
        "{path} does not match its config: missing {missing:?}, unexpected {unexpected:?}, wrong shape {shapes:?}; nothing was loaded"
    )]
    Mismatch { path: PathBuf, missing: Vec<String>, unexpected: Vec<String>, shapes: Vec<String> },
    /// Another model's weights do not fit this one (`--init-from`): every differing shape
    /// parameter with both values, then every tensor whose shape differs.
    #[error("{path} does not fit this model: {}; nothing was loaded", differences.join("; "))]
    Incompatible { path: PathBuf, differences: Vec<String> },
}

fn file_error(path: &Path, detail: impl ToString) -> CheckpointError {
    CheckpointError::File { path: path.to_owned(), detail: detail.to_string() }
}

/// A translation model: XLM's encoder and decoder.
#[derive(Debug)]
pub struct Seq2Seq {
    pub vs: nn::VarStore,
    pub config: Config,
    pub encoder: Transformer,
    pub decoder: Transformer,
}

impl Seq2Seq {
    /// A freshly initialised model.
    pub fn new(config: Config, device: Device) -> Result<Self, CheckpointError> {
        config.validate().map_err(CheckpointError::Config)?;
        let vs = nn::VarStore::new(device);
        let encoder = Transformer::new(vs.root() / "encoder", &config, false);
        let decoder = Transformer::new(vs.root() / "decoder", &config, true);
        Ok(Self { vs, config, encoder, decoder })
    }

    /// The type both sides multiply in: `Kind::BFloat16` for mixed-precision training on CPUs
    /// with AVX-512 BF16 (or GPUs); `Kind::Float` (the default) everywhere else.
    pub fn set_matmul_kind(&mut self, kind: Kind) {
        self.encoder.set_matmul_kind(kind);
        self.decoder.set_matmul_kind(kind);
    }

    pub fn translator(&self, source_lang: i64, target_lang: i64) -> Translator<'_> {
        Translator { encoder: &self.encoder, decoder: &self.decoder, config: &self.config, source_lang, target_lang }
    }

    /// Parameters, tied embeddings counted once.
    pub fn parameters(&self) -> i64 {
        self.vs.trainable_variables().iter().map(Tensor::numel).sum::<usize>() as i64
    }

    /// Writes `config.json` and `model.safetensors` (fp32) into `dir`, each atomically.
    pub fn save(&self, dir: &Path) -> Result<(), CheckpointError> {
        self.save_with(dir, SaveOptions::default())
    }

    /// Writes `config.json` and the weights as `options` say. Each file is written to a temporary
    /// name and renamed; the index (when sharded) is renamed last, after its shards, and weight
    /// files of an earlier save that the new one does not use are removed at the end.
    pub fn save_with(&self, dir: &Path, options: SaveOptions) -> Result<(), CheckpointError> {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
        let earlier = weight_files(dir);
        let config_path = dir.join(CONFIG_FILE);
        let json = serde_json::to_string_pretty(&self.config).expect("config serialises");
        xlmc_atomic_file::write(&config_path, json.as_bytes()).map_err(|e| file_error(&config_path, e))?;
        let mut named: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        if options.half {
            named = named.into_iter().map(|(n, t)| (n, t.to_kind(tch::Kind::Half))).collect();
        }
        let written: Vec<PathBuf> = match options.max_shard_bytes {
            None => vec![write_weights(dir, WEIGHTS_FILE, &named)?],
            Some(limit) => {
                let shards = split_into_shards(named, limit);
                let count = shards.len();
                let mut index = ShardIndex { metadata: IndexMetadata { total_size: 0 }, weight_map: BTreeMap::new() };
                let mut written = Vec::new();
                for (i, shard) in shards.iter().enumerate() {
                    let name = shard_name(i, count);
                    for (tensor_name, tensor) in shard {
                        index.metadata.total_size += tensor_bytes(tensor);
                        index.weight_map.insert(tensor_name.clone(), name.clone());
                    }
                    written.push(write_weights(dir, &name, shard)?);
                }
                let path = dir.join(INDEX_FILE);
                let json = serde_json::to_string_pretty(&index).expect("index serialises");
                xlmc_atomic_file::write(&path, json.as_bytes()).map_err(|e| file_error(&path, e))?;
                written.push(path);
                written
            }
        };
        for stale in earlier.iter().filter(|p| !written.contains(p)) {
            std::fs::remove_file(stale).map_err(|e| file_error(stale, e))?;
        }
        Ok(())
    }

    /// Reads a model saved by [`Seq2Seq::save`]. Every name and shape is checked before any
    /// value is copied, and all mismatches are reported together.
    pub fn load(dir: &Path, device: Device) -> Result<Self, CheckpointError> {
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(|e| file_error(&config_path, e))?;
        let config: Config = serde_json::from_str(&text).map_err(|e| file_error(&config_path, e))?;
        let mut model = Self::new(config, device)?;
        let (path, stored) = read_weights(dir)?;
        model.copy_from(&path, stored)?;
        Ok(model)
    }

    /// Copies the weights of the model folder `dir` into this model (`exporter train
    /// --init-from`). Its config must describe the same network; dropout may differ. Every
    /// difference — config parameters with both values, tensors with both shapes — is reported
    /// together and nothing is copied.
    pub fn init_from(&mut self, dir: &Path) -> Result<(), CheckpointError> {
        let (path, stored) = self.compatible_weights(dir)?;
        self.copy_from(&path, stored)
    }

    /// The element-wise mean of the weights of the model folders `dirs` (checkpoint averaging,
    /// as Marian and fairseq do it: the mean of the last few checkpoints of one run usually
    /// translates better than any of them). Each folder must describe the same network as the
    /// first (dropout may differ); every difference is reported and nothing is built. The mean
    /// is accumulated in fp64 whatever the stored precision.
    pub fn average(dirs: &[&Path], device: Device) -> Result<Self, CheckpointError> {
        let (first, rest) = dirs.split_first().ok_or_else(|| CheckpointError::Config("no model to average".into()))?;
        let mut model = Self::load(first, device)?;
        let mut sums: BTreeMap<String, Tensor> =
            model.vs.variables().into_iter().map(|(name, value)| (name, value.to_kind(Kind::Double))).collect();
        for dir in rest {
            let (_, stored) = model.compatible_weights(dir)?;
            for (name, value) in stored {
                let sum = sums.get_mut(&name).expect("compatible_weights checked every name");
                *sum += value.to_kind(Kind::Double).to(device);
            }
        }
        let count = dirs.len() as f64;
        let mean = sums.into_iter().map(|(name, sum)| (name, sum / count)).collect();
        model.copy_from(first, mean)?;
        Ok(model)
    }

    /// The weights of the model folder `dir` after checking that its config describes this
    /// network (dropout may differ) and that every tensor is here with the same shape.
    fn compatible_weights(&self, dir: &Path) -> Result<(PathBuf, BTreeMap<String, Tensor>), CheckpointError> {
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(|e| file_error(&config_path, e))?;
        let theirs: Config = serde_json::from_str(&text).map_err(|e| file_error(&config_path, e))?;
        let mut differences = self.config.shape_differences(&theirs);
        let (path, stored) = read_weights(dir)?;
        let variables = self.vs.variables();
        for (name, ours) in &variables {
            match stored.get(name) {
                None => differences.push(format!("{name}: missing there, {:?} here", ours.size())),
                Some(value) if value.size() != ours.size() => {
                    differences.push(format!("{name}: {:?} there, {:?} here", value.size(), ours.size()))
                }
                Some(_) => {}
            }
        }
        differences
            .extend(stored.keys().filter(|k| !variables.contains_key(*k)).map(|k| format!("{k}: not in this model")));
        if !differences.is_empty() {
            return Err(CheckpointError::Incompatible { path: dir.to_owned(), differences });
        }
        Ok((path, stored))
    }

    /// Copies `stored` into the variables after checking names and shapes.
    pub fn copy_from(&mut self, path: &Path, stored: BTreeMap<String, Tensor>) -> Result<(), CheckpointError> {
        let mut variables = self.vs.variables();
        let missing: Vec<String> = variables.keys().filter(|k| !stored.contains_key(*k)).cloned().collect();
        let unexpected: Vec<String> = stored.keys().filter(|k| !variables.contains_key(*k)).cloned().collect();
        let shapes: Vec<String> = stored
            .iter()
            .filter_map(|(name, value)| {
                let var = variables.get(name)?;
                (var.size() != value.size()).then(|| format!("{name}: {:?} vs {:?}", value.size(), var.size()))
            })
            .collect();
        if !(missing.is_empty() && unexpected.is_empty() && shapes.is_empty()) {
            let mut sorted = missing;
            sorted.sort();
            return Err(CheckpointError::Mismatch { path: path.to_owned(), missing: sorted, unexpected, shapes });
        }
        tch::no_grad(|| {
            for (name, value) in &stored {
                let var = variables.get_mut(name).expect("checked above");
                var.copy_(&value.to_kind(var.kind()).to(var.device()));
            }
        });
        Ok(())
    }
}

fn tensor_bytes(tensor: &Tensor) -> u64 {
    (tensor.numel() * tensor.kind().elt_size_in_bytes()) as u64
}

/// Consecutive (name-sorted) tensors grouped so each group's data stays within `limit` bytes; a
/// tensor larger than `limit` gets a shard of its own.
fn split_into_shards(named: Vec<(String, Tensor)>, limit: u64) -> Vec<Vec<(String, Tensor)>> {
    let mut shards: Vec<Vec<(String, Tensor)>> = Vec::new();
    let mut current_bytes = 0;
    for (name, tensor) in named {
        let bytes = tensor_bytes(&tensor);
        match shards.last_mut() {
            Some(shard) if current_bytes + bytes <= limit => {
                current_bytes += bytes;
                shard.push((name, tensor));
            }
            _ => {
                current_bytes = bytes;
                shards.push(vec![(name, tensor)]);
            }
        }
    }
    shards
}

fn write_weights(dir: &Path, name: &str, named: &[(String, Tensor)]) -> Result<PathBuf, CheckpointError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    Tensor::write_safetensors(named, &tmp).map_err(|e| file_error(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| file_error(&path, e))?;
    Ok(path)
}

/// All stored tensors of `dir`: `model.safetensors`, or the shards its index names (each shard
/// must hold exactly the names the index gives it).
fn read_weights(dir: &Path) -> Result<(PathBuf, BTreeMap<String, Tensor>), CheckpointError> {
    let single = dir.join(WEIGHTS_FILE);
    let index_path = dir.join(INDEX_FILE);
    if single.exists() || !index_path.exists() {
        let stored = Tensor::read_safetensors(&single).map_err(|e| file_error(&single, e))?.into_iter().collect();
        return Ok((single, stored));
    }
    let text = std::fs::read_to_string(&index_path).map_err(|e| file_error(&index_path, e))?;
    let index: ShardIndex = serde_json::from_str(&text).map_err(|e| file_error(&index_path, e))?;
    let mut files: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (tensor, file) in &index.weight_map {
        files.entry(file.as_str()).or_default().push(tensor.as_str());
    }
    let mut stored = BTreeMap::new();
    for (file, mut expected) in files {
        if file.contains('/') || file.contains("..") {
            return Err(file_error(&index_path, format!("shard name {file:?} leaves the model folder")));
        }
        let path = dir.join(file);
        let tensors = Tensor::read_safetensors(&path).map_err(|e| file_error(&path, e))?;
        let mut found: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
        found.sort_unstable();
        expected.sort_unstable();
        if found != expected {
            return Err(file_error(&path, format!("holds {found:?} but {INDEX_FILE} lists {expected:?}")));
        }
        stored.extend(tensors);
    }
    Ok((index_path, stored))
}
