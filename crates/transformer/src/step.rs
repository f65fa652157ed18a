//! The libtorch implementation of xlmc-decoding's [`StepModel`]: an encoder-decoder pair
//! decoded incrementally, cross-attention keys/values computed once per source, self-attention
//! keys/values cached per row.

use tch::{Device, Kind, Tensor};
use xlmc_decoding::{StepModel, xlm_source_layout};

use crate::{Config, Transformer};

/// Per-row decoding state. Rows may have joined at different steps: each keeps its own
/// position, and `self_mask` marks which cached self-attention columns are its own.
#[derive(Debug)]
pub struct DecoderCache {
    pub(crate) source_mask: Tensor,             // [rows, src_len] bool
    pub(crate) cross_kv: Vec<(Tensor, Tensor)>, // per layer, [rows, heads, src_len, head_dim]
    pub(crate) self_kv: Vec<(Tensor, Tensor)>,  // per layer, [rows, heads, steps, head_dim]
    pub(crate) self_mask: Tensor,               // [rows, steps] bool
    pub(crate) positions: Tensor,               // [rows] i64: the next decoder position
}

impl DecoderCache {
    pub fn rows(&self) -> i64 {
        self.positions.size()[0]
    }

    /// Cross-attention keys and values per decoder layer (what the encoder produced).
    pub fn cross_keys_values(&self) -> &[(Tensor, Tensor)] {
        &self.cross_kv
    }

    fn tensors_mut(&mut self) -> impl Iterator<Item = &mut Tensor> {
        [&mut self.source_mask, &mut self.self_mask, &mut self.positions]
            .into_iter()
            .chain(self.cross_kv.iter_mut().chain(self.self_kv.iter_mut()).flat_map(|(k, v)| [k, v]))
    }
}

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

/// Drops the cached steps and source columns no row attends to: under continuous batching the
/// padding in front of late-joining rows (and after short sources) would otherwise only grow.
/// Masked columns contribute zeros, so only the summation order of what remains can change.
fn trim_unused_columns(state: &mut DecoderCache) -> Result<(), StepError> {
    let used = |mask: &Tensor| -> Result<Vec<bool>, StepError> {
        if mask.size()[0] == 0 || mask.size()[1] == 0 {
            return Ok(Vec::new());
        }
        Ok(Vec::<bool>::try_from(mask.any_dim(0, false).to(Device::Cpu))?)
    };
    let steps = used(&state.self_mask)?;
    let (first, end) = match (steps.iter().position(|&u| u), steps.iter().rposition(|&u| u)) {
        (Some(first), Some(last)) => (first, last + 1),
        _ => (steps.len(), steps.len()),
    };
    if first > 0 || end < steps.len() {
        let (start, len) = (first as i64, (end - first) as i64);
        state.self_mask = state.self_mask.narrow(1, start, len).contiguous();
        for (k, v) in state.self_kv.iter_mut() {
            *k = k.narrow(2, start, len).contiguous();
            *v = v.narrow(2, start, len).contiguous();
        }
    }
    let source = used(&state.source_mask)?;
    if let Some(last) = source.iter().rposition(|&u| u).filter(|&last| last + 1 < source.len()) {
        let len = last as i64 + 1;
        state.source_mask = state.source_mask.narrow(1, 0, len).contiguous();
        for (k, v) in state.cross_kv.iter_mut() {
            *k = k.narrow(2, 0, len).contiguous();
            *v = v.narrow(2, 0, len).contiguous();
        }
    }
    Ok(())
}

/// Pads dimension `dim` of `t` to `size` with `value`.
fn pad_to(t: &Tensor, dim: i64, size: i64, value: f64) -> Tensor {
    let current = t.size()[dim as usize];
    if current == size {
        return t.shallow_clone();
    }
    let mut shape = t.size();
    shape[dim as usize] = size - current;
    let padding = Tensor::full(shape.as_slice(), value, (t.kind(), t.device()));
    Tensor::cat(&[t, &padding], dim)
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
            Ok(DecoderCache {
                cross_kv: self.decoder.cross_keys_values(&encoded),
                self_kv: (0..self.config.n_dec_layers).map(|_| (empty(), empty())).collect(),
                self_mask: Tensor::zeros([rows, 0], (Kind::Bool, self.device())),
                positions: Tensor::zeros([rows], (Kind::Int64, self.device())),
                source_mask,
            })
        })
    }

    fn step(&mut self, state: &mut DecoderCache, last_tokens: &[u32]) -> Result<Vec<f32>, StepError> {
        let tokens: Vec<i64> = last_tokens.iter().map(|&t| i64::from(t)).collect();
        let tokens = Tensor::from_slice(&tokens).to(self.device());
        tch::no_grad(|| {
            let positions = state.positions.shallow_clone();
            let hidden = self.decoder.step(&tokens, &positions, self.target_lang, state);
            state.positions = positions + 1;
            let log_probs = self.decoder.logits(&hidden).log_softmax(-1, Kind::Float);
            Ok(Vec::<f32>::try_from(log_probs.flatten(0, -1).to(Device::Cpu))?)
        })
    }

    fn select(&mut self, state: &mut DecoderCache, rows: &[usize]) -> Result<(), StepError> {
        let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let index = Tensor::from_slice(&index).to(self.device());
        for tensor in state.tensors_mut() {
            *tensor = tensor.index_select(0, &index);
        }
        trim_unused_columns(state)?;
        Ok(())
    }

    fn append(&mut self, state: &mut DecoderCache, mut other: DecoderCache) -> Result<(), StepError> {
        // Align source lengths and cached steps; padded columns are masked out.
        let src_len = state.source_mask.size()[1].max(other.source_mask.size()[1]);
        let steps = state.self_mask.size()[1].max(other.self_mask.size()[1]);
        for cache in [&mut *state, &mut other] {
            cache.source_mask = pad_to(&cache.source_mask, 1, src_len, 0.0);
            cache.self_mask = pad_to(&cache.self_mask, 1, steps, 0.0);
            for (k, v) in cache.cross_kv.iter_mut() {
                *k = pad_to(k, 2, src_len, 0.0);
                *v = pad_to(v, 2, src_len, 0.0);
            }
            for (k, v) in cache.self_kv.iter_mut() {
                *k = pad_to(k, 2, steps, 0.0);
                *v = pad_to(v, 2, steps, 0.0);
            }
        }
        for (mine, theirs) in state.tensors_mut().zip(other.tensors_mut()) {
            *mine = Tensor::cat(&[&*mine, &*theirs], 0);
        }
        Ok(())
    }
}
