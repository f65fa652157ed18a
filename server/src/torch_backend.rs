//! The libtorch backend (feature `torch`): a model folder (`config.json` + weights + tokenizer,
//! what `exporter train`/`distill` write) served directly by tch, on the CPU or CUDA — a GPU path
//! wherever PyTorch's CUDA libraries are, beside ONNX Runtime's, like Triton's PyTorch backend.
//! The engine drives it through the same decoding core as the ORT bundles.

use std::path::Path;

use anyhow::Context;
use xlmc_bigru::BiGru;
use xlmc_bundle::Architecture;
use xlmc_model_folder::AnyModel;
use xlmc_tokenizer::Tokenizer;
use xlmc_transformer::Seq2Seq;

use crate::engine::{self, Backend, BatchLimits, EngineHandle};

impl Backend for Seq2Seq {
    type State = xlmc_transformer::DecoderCache;
    type Step<'a> = xlmc_transformer::Translator<'a>;

    fn step_model(&mut self, (source, target): (i64, i64)) -> Self::Step<'_> {
        self.translator(source, target)
    }
}

impl Backend for BiGru {
    type State = xlmc_bigru::State;
    type Step<'a> = xlmc_bigru::Translator<'a>;

    fn step_model(&mut self, (source, target): (i64, i64)) -> Self::Step<'_> {
        self.translator(source, target)
    }
}

/// A model folder loaded and its engine started.
#[derive(Debug)]
pub struct Loaded {
    pub tokenizer: Tokenizer,
    pub engine: EngineHandle,
    pub architecture: Architecture,
    /// `cpu` or `cuda:N`.
    pub device: String,
    pub parameters: u64,
}

/// Loads a model folder on `cuda` (else the CPU) and starts its engine.
pub fn load(name: &str, dir: &Path, cuda: bool, limits: BatchLimits) -> anyhow::Result<Loaded> {
    let device = xlmc_torch_device::select(cuda).context("--device cuda (libtorch backend)")?;
    let device_name = match device {
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".to_owned(),
    };
    // The loader `exporter` uses: the same folders are accepted and refused the same way.
    let (model, tokenizer) = xlmc_model_folder::load_any(dir, device)?;
    let (architecture, parameters) = (model.architecture(), model.parameters() as u64);
    let engine = match model {
        AnyModel::Transformer(model) => engine::spawn(name, *model, limits)?,
        AnyModel::BiGru(model) => engine::spawn(name, *model, limits)?,
    };
    Ok(Loaded { tokenizer, engine, architecture, device: device_name, parameters })
}
