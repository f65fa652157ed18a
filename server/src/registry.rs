//! The models a server holds, looked up by name.
//!
//! Bundles (ONNX + tokenizer + manifest) and their decoding come with the export and server
//! issues; until then a server holds no model and every lookup answers NOT_FOUND, naming what
//! is available.

use std::collections::BTreeMap;

use xlmc_proto::v1::{ListModelsResponse, ModelInfo, TranslateRequest, Translation};

use crate::error::RequestError;

/// One served model.
#[derive(Debug)]
pub struct ServedModel {
    pub name: String,
    pub info: ModelInfo,
}

impl ServedModel {
    pub async fn translate(&self, _request: &TranslateRequest) -> Result<Vec<Translation>, RequestError> {
        // Only the bundle loader fills a registry, and it arrives together with decoding.
        Err(RequestError::NotImplemented("decoding through ORT bundles"))
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    models: BTreeMap<String, ServedModel>,
    default_model: Option<String>,
}

impl Registry {
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
            models: self.models.values().map(|m| m.info.clone()).collect(),
            default_model: self.default_model.clone().unwrap_or_default(),
        }
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
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
