//! [`Seq2Seq`]: encoder + decoder in one `VarStore`, saved as `config.json` + `model.safetensors`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use tch::{Device, Tensor, nn};

use crate::{Config, Transformer, Translator};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

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

    pub fn translator(&self, source_lang: i64, target_lang: i64) -> Translator<'_> {
        Translator { encoder: &self.encoder, decoder: &self.decoder, config: &self.config, source_lang, target_lang }
    }

    /// Parameters, tied embeddings counted once.
    pub fn parameters(&self) -> i64 {
        self.vs.trainable_variables().iter().map(Tensor::numel).sum::<usize>() as i64
    }

    /// Writes `config.json` and `model.safetensors` into `dir`, each atomically.
    pub fn save(&self, dir: &Path) -> Result<(), CheckpointError> {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
        let config_path = dir.join(CONFIG_FILE);
        let json = serde_json::to_string_pretty(&self.config).expect("config serialises");
        xlmc_atomic_file::write(&config_path, json.as_bytes()).map_err(|e| file_error(&config_path, e))?;
        let mut named: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let path = dir.join(WEIGHTS_FILE);
        let tmp = dir.join(format!(".{WEIGHTS_FILE}.tmp"));
        Tensor::write_safetensors(&named, &tmp).map_err(|e| file_error(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| file_error(&path, e))
    }

    /// Reads a model saved by [`Seq2Seq::save`]. Every name and shape is checked before any
    /// value is copied, and all mismatches are reported together.
    pub fn load(dir: &Path, device: Device) -> Result<Self, CheckpointError> {
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(|e| file_error(&config_path, e))?;
        let config: Config = serde_json::from_str(&text).map_err(|e| file_error(&config_path, e))?;
        let mut model = Self::new(config, device)?;
        let path = dir.join(WEIGHTS_FILE);
        let stored: BTreeMap<String, Tensor> =
            Tensor::read_safetensors(&path).map_err(|e| file_error(&path, e))?.into_iter().collect();
        model.copy_from(&path, stored)?;
        Ok(model)
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
