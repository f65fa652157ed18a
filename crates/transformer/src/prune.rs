//! Layer pruning: a student made of chosen teacher layers, every weight copied from the teacher
//! (embeddings, positions, languages, output layer and the kept layers), so it starts where the
//! teacher is and distillation only has to close the gap the missing layers leave.

use std::collections::BTreeMap;

use tch::Tensor;

use crate::{CheckpointError, Config, Seq2Seq};

/// Per-layer module lists, named as in XLM (`attentions.{i}`, …).
const LAYER_MODULES: [&str; 6] = ["attentions", "layer_norm1", "encoder_attn", "layer_norm15", "ffns", "layer_norm2"];

/// `count` of `available` layers, evenly spread and always including the first: 6→2 keeps
/// [0, 5], 6→3 [0, 2, 5] (rounded), 6→1 [0] (the bottom layer, next to the embeddings, as in
/// Shleifer & Rush's shrink-and-fine-tune).
pub fn spread_layers(available: i64, count: i64) -> Vec<i64> {
    if count <= 1 {
        return vec![0];
    }
    (0..count).map(|i| ((i * (available - 1)) as f64 / (count - 1) as f64).round() as i64).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("{side} layers {layers:?}: {reason} (the teacher has {available}: 0..{available})")]
    Layers { side: &'static str, layers: Vec<i64>, available: i64, reason: &'static str },
    #[error("vocabulary trimming: {0}")]
    Vocabulary(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

fn check(side: &'static str, layers: &[i64], available: i64) -> Result<(), PruneError> {
    let error = |reason| Err(PruneError::Layers { side, layers: layers.to_vec(), available, reason });
    if layers.is_empty() {
        return error("at least one layer is needed");
    }
    if layers.iter().any(|&l| l < 0 || l >= available) {
        return error("out of range");
    }
    if layers.windows(2).any(|w| w[0] >= w[1]) {
        return error("must be increasing, without repeats");
    }
    Ok(())
}

/// Whether a weight has one row per vocabulary entry: the token embeddings (also the tied output
/// projection) and the output bias.
fn is_vocabulary_weight(name: &str) -> bool {
    name.ends_with(".embeddings.weight") && !name.contains("position") && !name.contains("lang")
        || name.ends_with("pred_layer.proj.bias")
}

/// `encoder.attentions.3.q_lin.weight` → `encoder.attentions.{map[3]}.q_lin.weight`.
fn teacher_name(student_name: &str, encoder: &[i64], decoder: &[i64]) -> String {
    let parts: Vec<&str> = student_name.splitn(4, '.').collect();
    if let [side, module, index, rest] = parts.as_slice()
        && LAYER_MODULES.contains(module)
        && let Ok(i) = index.parse::<usize>()
    {
        let map = if *side == "encoder" { encoder } else { decoder };
        return format!("{side}.{module}.{}.{rest}", map[i]);
    }
    student_name.to_owned()
}

impl Seq2Seq {
    /// A student with the teacher's layers `encoder_layers` and `decoder_layers` (increasing
    /// teacher indices), all weights copied.
    pub fn prune(&self, encoder_layers: &[i64], decoder_layers: &[i64]) -> Result<Seq2Seq, PruneError> {
        check("encoder", encoder_layers, self.config.n_enc_layers)?;
        check("decoder", decoder_layers, self.config.n_dec_layers)?;
        let config = Config {
            n_enc_layers: encoder_layers.len() as i64,
            n_dec_layers: decoder_layers.len() as i64,
            ..self.config.clone()
        };
        let mut student = Seq2Seq::new(config, self.vs.device())?;
        let teacher = self.vs.variables();
        let stored: BTreeMap<String, Tensor> = student
            .vs
            .variables()
            .into_keys()
            .filter_map(|name| {
                // A name the teacher lacks stays out and copy_from reports it.
                let source = teacher.get(&teacher_name(&name, encoder_layers, decoder_layers))?;
                Some((name, source.copy()))
            })
            .collect();
        student.copy_from(std::path::Path::new("teacher"), stored)?;
        Ok(student)
    }

    /// The same model over a smaller vocabulary: student id `i` is teacher id `kept[i]` (strictly
    /// increasing; the pad and EOS ids must keep their place). Embedding rows and output-layer
    /// entries are selected; every other weight is copied. On tokens it keeps, its logits are the
    /// teacher's at those columns.
    pub fn trim_vocabulary(&self, kept: &[i64]) -> Result<Seq2Seq, PruneError> {
        let n_words = self.config.n_words;
        let reason = if kept.windows(2).any(|w| w[0] >= w[1]) {
            Some("ids must be strictly increasing".to_owned())
        } else if kept.first().is_some_and(|&id| id < 0) || kept.last().is_some_and(|&id| id >= n_words) {
            Some(format!("ids must lie in 0..{n_words}"))
        } else {
            [self.config.eos_index, self.config.pad_index]
                .into_iter()
                .find(|&special| kept.get(special as usize) != Some(&special))
                .map(|special| format!("special id {special} must stay at its place"))
        };
        if let Some(reason) = reason {
            return Err(PruneError::Vocabulary(reason));
        }
        let config = Config { n_words: kept.len() as i64, ..self.config.clone() };
        let mut student = Seq2Seq::new(config, self.vs.device())?;
        let rows = Tensor::from_slice(kept).to(self.vs.device());
        let stored = self
            .vs
            .variables()
            .into_iter()
            .map(|(name, value)| {
                let value = if is_vocabulary_weight(&name) { value.index_select(0, &rows) } else { value.copy() };
                (name, value)
            })
            .collect();
        student.copy_from(std::path::Path::new("teacher"), stored)?;
        Ok(student)
    }
}
