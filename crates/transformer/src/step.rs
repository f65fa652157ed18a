//! The libtorch implementation of xlmc-decoding's [`StepModel`]: an encoder-decoder pair
//! decoded incrementally, cross-attention keys/values computed once per source, self-attention
//! keys/values cached per row.

use tch::{Device, Kind, Tensor};
use xlmc_bundle::contract::state::transformer::PER_LAYER;
use xlmc_decoding::{Columns, RowState, StepModel, xlm_source_layout};

use crate::{Config, Transformer};

/// Per-row decoding state, xlmc-decoding's row state over libtorch tensors: the masks, each
/// row's position, and per decoder layer the cross-attention keys/values
/// [rows, heads, src_len, head_dim] and the cached self-attention keys/values
/// [rows, heads, steps, head_dim], where `contract::state::transformer` puts them.
pub type DecoderCache = RowState<Tensor, Tensor>;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("source of {got} tokens (with its two </s>) exceeds the model's {max} positions")]
    TooLong { got: usize, max: i64 },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Translation from `source_lang` to `target_lang` with an encoder and a decoder.
#[derive(Debug)]
pub struct Translator<'m> {
    pub encoder: &'m Transformer,
    pub decoder: &'m Transformer,
    pub config: &'m Config,
    pub source_lang: i64,
    pub target_lang: i64,
}

impl Translator<'_> {
    fn device(&self) -> Device {
        self.encoder.device()
    }

    /// XLM's input layout: `</s> w1 … wn </s>`, padded with `pad_index`; and the lengths.
    pub fn batch(&self, sources: &[Vec<u32>]) -> Result<(Tensor, Tensor), StepError> {
        let longest = sources.iter().map(Vec::len).max().unwrap_or(0) + 2;
        if longest as i64 > self.config.max_positions {
            return Err(StepError::TooLong { got: longest, max: self.config.max_positions });
        }
        let (data, width, lengths) = xlm_source_layout(sources, self.config.eos_index, self.config.pad_index);
        let tokens = Tensor::from_slice(&data).view([sources.len() as i64, width as i64]).to(self.device());
        Ok((tokens, Tensor::from_slice(&lengths).to(self.device())))
    }
}

impl StepModel for Translator<'_> {
    type State = DecoderCache;
    type Error = StepError;

    fn vocab_size(&self) -> usize {
        self.config.n_words as usize
    }

    fn encode(&mut self, sources: &[Vec<u32>]) -> Result<DecoderCache, StepError> {
        let (tokens, lengths) = self.batch(sources)?;
        tch::no_grad(|| {
            let (encoded, source_mask) = self.encoder.forward(&tokens, &lengths, self.source_lang, None, false);
            let rows = sources.len() as i64;
            let (heads, head_dim) = self.decoder.head_shape();
            let empty = || Tensor::zeros([rows, heads, 0, head_dim], (encoded.kind(), self.device()));
            let mut tensors = Vec::with_capacity(self.config.n_dec_layers as usize * PER_LAYER);
            for (k, v) in self.decoder.cross_keys_values(&encoded) {
                tensors.extend([(Columns::Source(2), k), (Columns::Source(2), v)]);
                tensors.extend([(Columns::Steps(2), empty()), (Columns::Steps(2), empty())]);
            }
            let steps_mask = Tensor::zeros([rows, 0], (Kind::Bool, self.device()));
            Ok(DecoderCache::new(source_mask, steps_mask, sources.len(), tensors))
        })
    }

    fn step(&mut self, state: &mut DecoderCache, last_tokens: &[u32]) -> Result<Vec<f32>, StepError> {
        let tokens: Vec<i64> = last_tokens.iter().map(|&t| i64::from(t)).collect();
        let tokens = Tensor::from_slice(&tokens).to(self.device());
        tch::no_grad(|| {
            let hidden = self.decoder.step(&tokens, self.target_lang, state);
            let log_probs = self.decoder.logits(&hidden).log_softmax(-1, Kind::Float);
            Ok(Vec::<f32>::try_from(log_probs.flatten(0, -1).to(Device::Cpu))?)
        })
    }

    fn select(&mut self, state: &mut DecoderCache, rows: &[usize]) -> Result<(), StepError> {
        Ok(state.select(rows)?)
    }

    fn append(&mut self, state: &mut DecoderCache, other: DecoderCache) -> Result<(), StepError> {
        Ok(state.append(other)?)
    }
}
