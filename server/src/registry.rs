//! The models a server holds, looked up by name: every bundle folder under `--models`, each with
//! its tokenizer and its engine thread. A bundle that fails to load stays listed as FAILED with
//! the reason (and NOT_SERVING in health); the others serve.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use xlmc_bundle::Bundle;
use xlmc_proto::v1::{ListModelsResponse, ModelInfo, ModelRole, ModelState};
use xlmc_runtime::{OrtModel, SessionOptions};
use xlmc_tokenizer::Tokenizer;

use crate::{
    engine::{self, BatchLimits, EngineHandle},
    error::RequestError,
    stats::LiveStats,
};

/// One served model.
#[derive(Debug)]
pub struct ServedModel {
    pub name: String,
    pub info: ModelInfo,
    /// Present while the model serves.
    pub serving: Option<(Arc<Tokenizer>, EngineHandle)>,
    pub stats: Arc<LiveStats>,
}

impl ServedModel {
    /// A model that loaded: `info` completed with its name and the SERVING state.
    fn serving(name: &str, info: ModelInfo, tokenizer: Tokenizer, engine: EngineHandle) -> Self {
        let info = ModelInfo { name: name.to_owned(), state: ModelState::Serving as i32, ..info };
        Self { name: name.to_owned(), info, serving: Some((Arc::new(tokenizer), engine)), stats: Default::default() }
    }

    /// The tokenizer and engine, or UNAVAILABLE with the reason the model is not serving.
    pub fn engine(&self) -> Result<&(Arc<Tokenizer>, EngineHandle), RequestError> {
        self.serving.as_ref().ok_or_else(|| RequestError::ModelUnavailable {
            model: self.name.clone(),
            reason: self.info.state_reason.clone(),
        })
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    models: BTreeMap<String, ServedModel>,
    default_model: Option<String>,
}

/// How models are loaded and batched.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub session: SessionOptions,
    pub batch: BatchLimits,
    /// The teacher's name; unset: the largest bundle.
    pub teacher: Option<String>,
    /// The model of requests that name none; unset: the smallest serving bundle.
    pub default_model: Option<String>,
}

impl Registry {
    /// Loads every sub-folder of `dir` that holds a bundle manifest.
    pub fn load(dir: &Path, options: &LoadOptions) -> anyhow::Result<Self> {
        let mut folders: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("--models {}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                // A bundle, or a model folder (served by the `torch` feature's backend).
                p.join(xlmc_bundle::MANIFEST_FILE).is_file() || p.join(xlmc_bundle::contract::CONFIG_FILE).is_file()
            })
            .collect();
        folders.sort();
        let mut registry = Registry::default();
        for folder in folders {
            let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let model = match load_one(&name, &folder, options) {
                Ok(model) => {
                    tracing::info!(model = %name, architecture = %model.info.architecture, "serving");
                    model
                }
                Err(error) => {
                    let reason = format!("{error:#}");
                    tracing::error!(model = %name, %reason, "bundle not loaded; the other models still serve");
                    ServedModel {
                        name: name.clone(),
                        info: ModelInfo {
                            name: name.clone(),
                            state: ModelState::Failed as i32,
                            state_reason: reason,
                            ..Default::default()
                        },
                        serving: None,
                        stats: Default::default(),
                    }
                }
            };
            registry.models.insert(name, model);
        }
        registry.assign_roles(options)?;
        Ok(registry)
    }

    fn assign_roles(&mut self, options: &LoadOptions) -> anyhow::Result<()> {
        let serving = || self.models.values().filter(|m| m.serving.is_some());
        let teacher = match &options.teacher {
            Some(name) => {
                anyhow::ensure!(self.models.contains_key(name), "--teacher {name}: no such bundle under --models");
                Some(name.clone())
            }
            None => serving().max_by_key(|m| m.info.bundle_bytes).map(|m| m.name.clone()),
        };
        let default = match &options.default_model {
            Some(name) => {
                anyhow::ensure!(
                    self.models.contains_key(name),
                    "--default-model {name}: no such bundle under --models"
                );
                Some(name.clone())
            }
            None => serving().min_by_key(|m| m.info.bundle_bytes).map(|m| m.name.clone()),
        };
        for model in self.models.values_mut() {
            let is_teacher = teacher.as_deref() == Some(model.name.as_str());
            model.info.role = if is_teacher { ModelRole::Teacher } else { ModelRole::Student } as i32;
            if !is_teacher {
                model.info.teacher = teacher.clone().unwrap_or_default();
            }
        }
        self.default_model = default;
        Ok(())
    }

    /// The model a request names, or the default model when it names none.
    pub fn resolve(&self, name: &str) -> Result<&ServedModel, RequestError> {
        let name = if name.is_empty() { self.default_model.as_deref().ok_or(RequestError::NoModels)? } else { name };
        self.models.get(name).ok_or_else(|| RequestError::UnknownModel {
            asked: name.to_owned(),
            available: if self.models.is_empty() {
                String::from("(none)")
            } else {
                self.models.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        })
    }

    pub fn list(&self) -> ListModelsResponse {
        ListModelsResponse {
            models: self
                .models
                .values()
                .map(|m| ModelInfo { stats: Some(m.stats.snapshot()), ..m.info.clone() })
                .collect(),
            default_model: self.default_model.clone().unwrap_or_default(),
        }
    }

    pub fn models(&self) -> impl Iterator<Item = &ServedModel> {
        self.models.values()
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

/// A libtorch model folder, served by tch (feature `torch`).
#[cfg(feature = "torch")]
fn load_model_folder(name: &str, folder: &Path, options: &LoadOptions) -> anyhow::Result<ServedModel> {
    let loaded = crate::torch_backend::load(name, folder, options.session.cuda, options.batch)?;
    let info = ModelInfo {
        architecture: loaded.architecture.to_string(),
        languages: loaded.tokenizer.languages().to_vec(),
        parameters: loaded.parameters,
        bundle_bytes: xlmc_bundle::folder_bytes(folder),
        backend: "libtorch".into(),
        device: loaded.device,
        ..Default::default()
    };
    Ok(ServedModel::serving(name, info, loaded.tokenizer, loaded.engine))
}

#[cfg(not(feature = "torch"))]
fn load_model_folder(_name: &str, folder: &Path, _options: &LoadOptions) -> anyhow::Result<ServedModel> {
    anyhow::bail!(
        "{}: a libtorch model folder ({} bytes, no manifest.json); this server was built without the `torch` \
         feature — export it with `exporter export --model … --out …`, or build with `--features torch`",
        folder.display(),
        xlmc_bundle::folder_bytes(folder)
    )
}

fn load_one(name: &str, folder: &Path, options: &LoadOptions) -> anyhow::Result<ServedModel> {
    if !folder.join(xlmc_bundle::MANIFEST_FILE).is_file() {
        return load_model_folder(name, folder, options);
    }
    let bundle = Bundle::open(folder)?;
    let tokenizer = Tokenizer::load(folder)?;
    let model = OrtModel::load(&bundle, &options.session)?;
    let handle = match model {
        OrtModel::Transformer(m) => engine::spawn(name, *m, options.batch)?,
        OrtModel::BiGru(m) => engine::spawn(name, *m, options.batch)?,
    };
    let graphs = [xlmc_bundle::contract::ENCODER_GRAPH, xlmc_bundle::contract::DECODER_GRAPH];
    let parameters = graphs.iter().map(|f| xlmc_onnx::stored_values(&bundle.file(f))).sum::<Result<u64, _>>()?;
    let info = ModelInfo {
        parameters,
        architecture: bundle.manifest.architecture.to_string(),
        languages: bundle.manifest.languages.clone(),
        bundle_bytes: bundle.manifest.files.values().map(|f| f.bytes).sum(),
        backend: "onnxruntime".into(),
        device: if options.session.cuda && xlmc_runtime::cuda_available() { "cuda:0" } else { "cpu" }.into(),
        ..Default::default()
    };
    Ok(ServedModel::serving(name, info, tokenizer, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_model_names_what_is_available() {
        let registry = Registry::default();
        let err = registry.resolve("student").unwrap_err();
        assert_eq!(err.to_string(), "unknown model `student`; this server has: (none)");
        assert!(matches!(registry.resolve(""), Err(RequestError::NoModels)));
    }
}
