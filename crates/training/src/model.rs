//! [`TrainableModel`]: what the trainer needs from a model, implemented for the XLM Transformer
//! and the BiGRU student — so teachers, pruned students and BiGRU students share one trainer
//! (checkpoints, resume, evaluation, distillation).

use std::path::{Path, PathBuf};

use tch::{Device, Tensor, nn};
use xlmc_bigru::BiGru;
use xlmc_decoding::{DecodeOptions, StepModel, decode};
use xlmc_transformer::Seq2Seq;

use crate::{
    MatmulPrecision,
    loss::{decoder_io, teacher_forced, unpad},
};

/// What a [`TrainableModel`] can fail at.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Transformer(#[from] xlmc_transformer::CheckpointError),
    #[error(transparent)]
    BiGru(#[from] xlmc_bigru::CheckpointError),
    #[error("{path}: its config differs from this run's")]
    ConfigDiffers { path: PathBuf },
    #[error("bf16 is implemented for the Transformer only, not the BiGRU")]
    Bf16Unsupported,
    #[error("greedy decoding: {0}")]
    Decoding(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Greedy translations through the shared decoding core.
fn greedy_tokens<M: StepModel>(mut model: M, sources: &[Vec<u32>]) -> Result<Vec<Vec<u32>>, ModelError>
where
    M::Error: Send + Sync,
{
    let hypotheses =
        decode(&mut model, sources, DecodeOptions::default()).map_err(|e| ModelError::Decoding(Box::new(e)))?;
    Ok(hypotheses.into_iter().map(|h| h.tokens).collect())
}

pub trait TrainableModel {
    fn var_store(&self) -> &nn::VarStore;

    /// Logits [N, vocab] at every target token and those tokens [N] (`y1 … ym </s>` predicted
    /// after `</s> y1 … ym`), padding removed, pair by pair.
    fn teacher_forced(&self, pairs: &[(&[u32], &[u32])], langs: (i64, i64), train: bool) -> (Tensor, Tensor);

    /// Greedy translations (for dev BLEU).
    fn greedy(&self, sources: &[Vec<u32>], langs: (i64, i64)) -> Result<Vec<Vec<u32>>, ModelError>;

    /// Writes the model's files into `dir`.
    fn save_to(&self, dir: &Path) -> Result<(), ModelError>;

    /// Loads weights written by `save_to` into this model; its config must be the same.
    fn load_from(&mut self, dir: &Path) -> Result<(), ModelError>;

    /// Makes the model's matrix products run in `precision` from now on.
    fn set_matmul_precision(&mut self, precision: MatmulPrecision) -> Result<(), ModelError>;

    fn device(&self) -> Device {
        self.var_store().device()
    }
}

impl TrainableModel for Seq2Seq {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn teacher_forced(&self, pairs: &[(&[u32], &[u32])], (s, t): (i64, i64), train: bool) -> (Tensor, Tensor) {
        teacher_forced(self, pairs, s, t, train)
    }

    fn greedy(&self, sources: &[Vec<u32>], (s, t): (i64, i64)) -> Result<Vec<Vec<u32>>, ModelError> {
        greedy_tokens(self.translator(s, t), sources)
    }

    fn save_to(&self, dir: &Path) -> Result<(), ModelError> {
        Ok(self.save(dir)?)
    }

    fn load_from(&mut self, dir: &Path) -> Result<(), ModelError> {
        let loaded = Seq2Seq::load(dir, self.vs.device())?;
        if loaded.config != self.config {
            return Err(ModelError::ConfigDiffers { path: dir.to_owned() });
        }
        let stored = loaded.vs.variables().into_iter().collect();
        Ok(self.copy_from(dir, stored)?)
    }

    fn set_matmul_precision(&mut self, precision: MatmulPrecision) -> Result<(), ModelError> {
        self.set_matmul_kind(match precision {
            MatmulPrecision::Fp32 => tch::Kind::Float,
            MatmulPrecision::Bf16 => tch::Kind::BFloat16,
        });
        Ok(())
    }
}

impl TrainableModel for BiGru {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn teacher_forced(&self, pairs: &[(&[u32], &[u32])], langs: (i64, i64), train: bool) -> (Tensor, Tensor) {
        let sources: Vec<Vec<u32>> = pairs.iter().map(|(s, _)| s.to_vec()).collect();
        let (src, src_len) = self.batch(&sources);
        let targets: Vec<&[u32]> = pairs.iter().map(|(_, t)| *t).collect();
        let (input, output, lengths) = decoder_io(&targets, self.config.pad_index, self.config.eos_index, src.device());
        let logits = self.forward(&src, &src_len, &input, langs, train);
        let positions = Tensor::arange(input.size()[1], (tch::Kind::Int64, src.device())).unsqueeze(0);
        let mask = positions.lt_tensor(&lengths.unsqueeze(1));
        unpad(&logits, &output, &mask)
    }

    fn greedy(&self, sources: &[Vec<u32>], (s, t): (i64, i64)) -> Result<Vec<Vec<u32>>, ModelError> {
        greedy_tokens(self.translator(s, t), sources)
    }

    fn save_to(&self, dir: &Path) -> Result<(), ModelError> {
        Ok(self.save(dir)?)
    }

    fn load_from(&mut self, dir: &Path) -> Result<(), ModelError> {
        let loaded = BiGru::load(dir, self.vs.device())?;
        if loaded.config != self.config {
            return Err(ModelError::ConfigDiffers { path: dir.to_owned() });
        }
        Ok(self.load_weights(dir)?)
    }

    fn set_matmul_precision(&mut self, precision: MatmulPrecision) -> Result<(), ModelError> {
        match precision {
            MatmulPrecision::Fp32 => Ok(()),
            MatmulPrecision::Bf16 => Err(ModelError::Bf16Unsupported),
        }
    }
}
