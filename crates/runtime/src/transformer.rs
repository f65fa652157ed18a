//! The ONNX Runtime implementation of xlmc-decoding's [`StepModel`] for an exported Transformer
//! bundle (graphs described in xlmc-transformer's `onnx` module): the same decoding core as the
//! libtorch model, so greedy/beam, per-sentence EOS and continuous joins behave identically.

use std::borrow::Cow;

use ndarray::{Array1, Array2, Array4, Axis};
use ort::session::{Session, SessionInputValue};
use serde::Deserialize;
use xlmc_bundle::Bundle;
use xlmc_decoding::{StepModel, xlm_source_layout};

use crate::{
    RuntimeError, SessionOptions,
    arrays::{concat, keep_range, output, pad_axis, used_columns, view},
};

use xlmc_bundle::contract::graph;
pub use xlmc_bundle::contract::{DECODER_GRAPH as DECODER_FILE, ENCODER_GRAPH as ENCODER_FILE};

/// What the runtime needs of a Transformer's config (the bundle manifest's `config`).
#[derive(Debug, Clone, Deserialize)]
pub struct TransformerSpec {
    pub n_words: i64,
    pub emb_dim: i64,
    pub n_heads: i64,
    pub n_dec_layers: i64,
    pub max_positions: i64,
    pub pad_index: i64,
    pub eos_index: i64,
}

impl TransformerSpec {
    fn head_dim(&self) -> usize {
        (self.emb_dim / self.n_heads) as usize
    }
}

/// The encoder and one-step decoder sessions of a bundle.
#[derive(Debug)]
pub struct OrtTransformer {
    encoder: Session,
    decoder: Session,
    pub spec: TransformerSpec,
}

/// Per-row state: rows may have joined at different steps (continuous batching), so each keeps
/// its own position and `self_mask` marks which cached steps are its own.
#[derive(Debug, Clone)]
pub struct OrtState {
    source_mask: Array2<bool>,              // [rows, src_len]
    cross: Vec<(Array4<f32>, Array4<f32>)>, // per layer [rows, heads, src_len, head_dim]
    past: Vec<(Array4<f32>, Array4<f32>)>,  // per layer [rows, heads, steps, head_dim]
    self_mask: Array2<bool>,                // [rows, steps]
    positions: Vec<i64>,                    // the next decoder position of each row
}

impl OrtState {
    pub fn rows(&self) -> usize {
        self.positions.len()
    }

    /// Cross-attention keys and values per decoder layer (what the encoder produced).
    pub fn cross_keys_values(&self) -> &[(Array4<f32>, Array4<f32>)] {
        &self.cross
    }
}

impl OrtTransformer {
    pub fn load(bundle: &Bundle, options: &SessionOptions) -> Result<Self, RuntimeError> {
        let (spec, encoder, decoder) = crate::open_bundle::<TransformerSpec>(bundle, options)?;
        Ok(Self { encoder, decoder, spec })
    }

    /// A step model translating from `source_lang` to `target_lang` (ids in `lang2id` order).
    pub fn translator(&mut self, source_lang: i64, target_lang: i64) -> OrtTranslator<'_> {
        OrtTranslator { model: self, source_lang, target_lang }
    }
}

#[derive(Debug)]
pub struct OrtTranslator<'m> {
    model: &'m mut OrtTransformer,
    source_lang: i64,
    target_lang: i64,
}

impl StepModel for OrtTranslator<'_> {
    type State = OrtState;
    type Error = RuntimeError;

    fn vocab_size(&self) -> usize {
        self.model.spec.n_words as usize
    }

    fn encode(&mut self, sources: &[Vec<u32>]) -> Result<OrtState, RuntimeError> {
        let spec = &self.model.spec;
        let (tokens, width, lengths) = xlm_source_layout(sources, spec.eos_index, spec.pad_index);
        if width as i64 > spec.max_positions {
            return Err(RuntimeError::TooLong { got: width, max: spec.max_positions });
        }
        let rows = sources.len();
        let (heads, head_dim, layers) = (spec.n_heads as usize, spec.head_dim(), spec.n_dec_layers as usize);
        let tokens = Array2::from_shape_vec((rows, width), tokens).expect("layout size");
        let lengths = Array1::from_vec(lengths);
        let lang = Array1::from_vec(vec![self.source_lang]);
        let inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            (graph::TOKENS.into(), view(&tokens)?),
            (graph::LENGTHS.into(), view(&lengths)?),
            (graph::LANG.into(), view(&lang)?),
        ];
        let outputs = self.model.encoder.run(inputs)?;
        let mut cross = Vec::with_capacity(layers);
        for i in 0..layers {
            cross.push((output(&outputs, &graph::cross_k(i))?, output(&outputs, &graph::cross_v(i))?));
        }
        let source_mask = output(&outputs, graph::SOURCE_MASK)?;
        let empty = || Array4::<f32>::zeros((rows, heads, 0, head_dim));
        Ok(OrtState {
            source_mask,
            cross,
            past: (0..layers).map(|_| (empty(), empty())).collect(),
            self_mask: Array2::from_elem((rows, 0), false),
            positions: vec![0; rows],
        })
    }

    fn step(&mut self, state: &mut OrtState, last_tokens: &[u32]) -> Result<Vec<f32>, RuntimeError> {
        let rows = state.rows();
        let tokens = Array1::from_iter(last_tokens.iter().map(|&t| i64::from(t)));
        let positions = Array1::from_vec(state.positions.clone());
        let lang = Array1::from_vec(vec![self.target_lang]);
        let ones = Array2::from_elem((rows, 1), true);
        let self_mask = concat(1, &[state.self_mask.view(), ones.view()]);
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            (graph::TOKENS.into(), view(&tokens)?),
            (graph::POSITIONS.into(), view(&positions)?),
            (graph::LANG.into(), view(&lang)?),
            (graph::SOURCE_MASK.into(), view(&state.source_mask)?),
            (graph::SELF_MASK.into(), view(&self_mask)?),
        ];
        for (i, ((cross_k, cross_v), (past_k, past_v))) in state.cross.iter().zip(&state.past).enumerate() {
            inputs.push((graph::cross_k(i).into(), view(cross_k)?));
            inputs.push((graph::cross_v(i).into(), view(cross_v)?));
            inputs.push((graph::past_k(i).into(), view(past_k)?));
            inputs.push((graph::past_v(i).into(), view(past_v)?));
        }
        let outputs = self.model.decoder.run(inputs)?;
        let log_probs: Array2<f32> = output(&outputs, graph::LOG_PROBS)?;
        let mut present = Vec::with_capacity(state.past.len());
        for i in 0..state.past.len() {
            present.push((output(&outputs, &graph::present_k(i))?, output(&outputs, &graph::present_v(i))?));
        }
        drop(outputs);
        state.past = present;
        state.self_mask = self_mask;
        state.positions.iter_mut().for_each(|p| *p += 1);
        Ok(log_probs.into_raw_vec_and_offset().0)
    }

    fn select(&mut self, state: &mut OrtState, rows: &[usize]) -> Result<(), RuntimeError> {
        state.source_mask = state.source_mask.select(Axis(0), rows);
        state.self_mask = state.self_mask.select(Axis(0), rows);
        state.positions = rows.iter().map(|&r| state.positions[r]).collect();
        for (k, v) in state.cross.iter_mut().chain(state.past.iter_mut()) {
            *k = k.select(Axis(0), rows);
            *v = v.select(Axis(0), rows);
        }
        // Columns no remaining row attends to go: under continuous batching the cached steps
        // (padding in front of rows that joined later) and the source width (padding after
        // shorter sources) would otherwise only ever grow. Masked columns contribute zeros; only
        // the summation order of what remains can change (as with any other padding).
        let steps = used_columns(&state.self_mask);
        let source = 0..used_columns(&state.source_mask).end;
        state.self_mask = keep_range(std::mem::take(&mut state.self_mask), 1, steps.clone());
        state.source_mask = keep_range(std::mem::take(&mut state.source_mask), 1, source.clone());
        for (k, v) in state.past.iter_mut() {
            *k = keep_range(std::mem::take(k), 2, steps.clone());
            *v = keep_range(std::mem::take(v), 2, steps.clone());
        }
        for (k, v) in state.cross.iter_mut() {
            *k = keep_range(std::mem::take(k), 2, source.clone());
            *v = keep_range(std::mem::take(v), 2, source.clone());
        }
        Ok(())
    }

    fn append(&mut self, state: &mut OrtState, mut other: OrtState) -> Result<(), RuntimeError> {
        // Align source lengths and cached steps; padded columns are masked out.
        let src_len = state.source_mask.ncols().max(other.source_mask.ncols());
        let steps = state.self_mask.ncols().max(other.self_mask.ncols());
        for s in [&mut *state, &mut other] {
            s.source_mask = pad_axis(std::mem::take(&mut s.source_mask), 1, src_len, false);
            s.self_mask = pad_axis(std::mem::take(&mut s.self_mask), 1, steps, false);
            for (k, v) in s.cross.iter_mut() {
                *k = pad_axis(std::mem::take(k), 2, src_len, 0.0);
                *v = pad_axis(std::mem::take(v), 2, src_len, 0.0);
            }
            for (k, v) in s.past.iter_mut() {
                *k = pad_axis(std::mem::take(k), 2, steps, 0.0);
                *v = pad_axis(std::mem::take(v), 2, steps, 0.0);
            }
        }
        let stack2 = |a: &Array2<bool>, b: &Array2<bool>| concat(0, &[a.view(), b.view()]);
        let stack4 = |a: &Array4<f32>, b: &Array4<f32>| concat(0, &[a.view(), b.view()]);
        state.source_mask = stack2(&state.source_mask, &other.source_mask);
        state.self_mask = stack2(&state.self_mask, &other.self_mask);
        state.positions.extend(other.positions);
        for (mine, theirs) in state.cross.iter_mut().zip(&other.cross).chain(state.past.iter_mut().zip(&other.past)) {
            mine.0 = stack4(&mine.0, &theirs.0);
            mine.1 = stack4(&mine.1, &theirs.1);
        }
        Ok(())
    }
}
