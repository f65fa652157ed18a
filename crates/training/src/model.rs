//! [`TrainableModel`]: what the trainer needs from a model, implemented for the XLM Transformer
//! and the BiGRU student — so teachers, pruned students and BiGRU students share one trainer
//! (checkpoints, resume, evaluation, distillation).

use std::path::Path;

use tch::{Device, Tensor, nn};
use xlmc_bigru::BiGru;
use xlmc_decoding::{DecodeOptions, StepModel, decode};
use xlmc_transformer::Seq2Seq;

use crate::{
    MatmulPrecision,
    loss::{decoder_io, teacher_forced, unpad},
};

/// Greedy translations through the shared decoding core.
fn greedy_tokens(mut model: impl StepModel, sources: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let hypotheses = decode(&mut model, sources, DecodeOptions::default()).expect("dev decoding");
    hypotheses.into_iter().map(|h| h.tokens).collect()
}

pub trait TrainableModel {
    fn var_store(&self) -> &nn::VarStore;

    /// Logits [N, vocab] at every target token and those tokens [N] (`y1 … ym </s>` predicted
    /// after `</s> y1 … ym`), padding removed, pair by pair.
    fn teacher_forced(&self, pairs: &[(&[u32], &[u32])], langs: (i64, i64), train: bool) -> (Tensor, Tensor);

    /// Greedy translations (for dev BLEU).
    fn greedy(&self, sources: &[Vec<u32>], langs: (i64, i64)) -> Vec<Vec<u32>>;

    /// Writes the model's files into `dir`.
    fn save_to(&self, dir: &Path) -> Result<(), String>;

    /// Loads weights written by `save_to` into this model; its config must be the same.
    fn load_from(&mut self, dir: &Path) -> Result<(), String>;

    /// Makes the model's matrix products run in `precision` from now on.
    fn set_matmul_precision(&mut self, precision: MatmulPrecision) -> Result<(), String>;

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

    fn greedy(&self, sources: &[Vec<u32>], (s, t): (i64, i64)) -> Vec<Vec<u32>> {
        greedy_tokens(self.translator(s, t), sources)
    }

    fn save_to(&self, dir: &Path) -> Result<(), String> {
        self.save(dir).map_err(|e| e.to_string())
    }

    fn load_from(&mut self, dir: &Path) -> Result<(), String> {
        let loaded = Seq2Seq::load(dir, self.vs.device()).map_err(|e| e.to_string())?;
        if loaded.config != self.config {
            return Err(format!("{}: its config differs from this run's", dir.display()));
        }
        let stored = loaded.vs.variables().into_iter().collect();
        self.copy_from(dir, stored).map_err(|e| e.to_string())
    }

    fn set_matmul_precision(&mut self, precision: MatmulPrecision) -> Result<(), String> {
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

    fn greedy(&self, sources: &[Vec<u32>], (s, t): (i64, i64)) -> Vec<Vec<u32>> {
        greedy_tokens(self.translator(s, t), sources)
    }

    fn save_to(&self, dir: &Path) -> Result<(), String> {
        self.save(dir).map_err(|e| e.to_string())
    }

    fn load_from(&mut self, dir: &Path) -> Result<(), String> {
        let loaded = BiGru::load(dir, self.vs.device()).map_err(|e| e.to_string())?;
        if loaded.config != self.config {
            return Err(format!("{}: its config differs from this run's", dir.display()));
        }
        self.load_weights(dir).map_err(|e| e.to_string())
    }

    fn set_matmul_precision(&mut self, precision: MatmulPrecision) -> Result<(), String> {
        match precision {
            MatmulPrecision::Fp32 => Ok(()),
            MatmulPrecision::Bf16 => Err("bf16 is implemented for the Transformer only, not the BiGRU".into()),
        }
    }
}
