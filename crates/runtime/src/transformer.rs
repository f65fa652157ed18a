//! The ONNX Runtime implementation of xlmc-decoding's [`StepModel`] for an exported Transformer
//! bundle (graphs described in xlmc-transformer's `onnx` module): the same decoding core as the
//! libtorch model, so greedy/beam, per-sentence EOS and continuous joins behave identically.

use std::borrow::Cow;

use ndarray::{Array1, Array2, ArrayD};
use ort::session::{Session, SessionInputValue};
use serde::Deserialize;
use xlmc_bundle::Bundle;
use xlmc_decoding::{Columns, GrowingArray, RowState, StepModel, xlm_source_layout};

use crate::{
    RuntimeError, SessionOptions,
    arrays::{output, output_view, pad_columns, view},
};

pub use xlmc_bundle::contract::{DECODER_GRAPH as DECODER_FILE, ENCODER_GRAPH as ENCODER_FILE};
use xlmc_bundle::contract::{
    graph,
    state::transformer::{CROSS_K, CROSS_V, PAST_K, PAST_V, PER_LAYER, at},
};

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

/// Per-row state: the masks, each row's position, and per decoder layer the cross-attention
/// keys/values [rows, heads, src_len, head_dim] and the cached self-attention keys/values
/// [rows, heads, steps, head_dim], where `contract::state::transformer` puts them. Each is a
/// [`GrowingArray`]: a step appends its keys/values in place, and the graph reads the whole
/// allocation with the masks padded to it.
pub type OrtState = RowState<GrowingArray<f32>, Array2<bool>>;

/// Room for this many decoder steps is made when a batch is encoded (it doubles when full).
const FIRST_STEPS: usize = 16;

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
            cross.push((output::<f32, _>(&outputs, &graph::cross_k(i))?, output(&outputs, &graph::cross_v(i))?));
        }
        let source_mask = output(&outputs, graph::SOURCE_MASK)?;
        let empty = || GrowingArray::with_room(ArrayD::<f32>::zeros(vec![rows, heads, 0, head_dim]), 2, FIRST_STEPS);
        let mut tensors = Vec::with_capacity(layers * PER_LAYER);
        for (k, v) in cross {
            tensors.extend([
                (Columns::Source(2), GrowingArray::exact(k, 2)),
                (Columns::Source(2), GrowingArray::exact(v, 2)),
            ]);
            tensors.extend([(Columns::Steps(2), empty()), (Columns::Steps(2), empty())]);
        }
        Ok(OrtState::new(source_mask, Array2::from_elem((rows, 0), false), rows, tensors))
    }

    fn step(&mut self, state: &mut OrtState, last_tokens: &[u32]) -> Result<Vec<f32>, RuntimeError> {
        let rows = state.rows();
        let layers = self.model.spec.n_dec_layers as usize;
        let tokens = Array1::from_iter(last_tokens.iter().map(|&t| i64::from(t)));
        let positions = Array1::from_vec(state.positions().to_vec());
        let lang = Array1::from_vec(vec![self.target_lang]);
        // The graph reads the caches' whole allocations; the masks cover them, room masked out.
        let source_room = state.tensor(at(0, CROSS_K)).capacity();
        let steps_room = state.tensor(at(0, PAST_K)).capacity();
        let source_mask = pad_columns(state.source_mask(), source_room);
        let past_mask = pad_columns(state.steps_mask(), steps_room);
        let caches: Vec<_> = (0..layers * PER_LAYER).map(|i| state.tensor(i).allocation()).collect();
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            (graph::TOKENS.into(), view(&tokens)?),
            (graph::POSITIONS.into(), view(&positions)?),
            (graph::LANG.into(), view(&lang)?),
            (graph::SOURCE_MASK.into(), view(&source_mask)?),
            (graph::SELF_MASK.into(), view(&past_mask)?),
        ];
        for i in 0..layers {
            for (name, slot, room) in [
                (graph::cross_k(i), CROSS_K, source_room),
                (graph::cross_v(i), CROSS_V, source_room),
                (graph::past_k(i), PAST_K, steps_room),
                (graph::past_v(i), PAST_V, steps_room),
            ] {
                // Every layer's caches grow together, so one padded mask fits them all.
                let room_here = state.tensor(at(i, slot)).capacity();
                assert_eq!(room_here, room, "layer {i}'s cache {slot} has other room than layer 0's");
                inputs.push((name.into(), view(&caches[at(i, slot)])?));
            }
        }
        let outputs = self.model.decoder.run(inputs)?;
        drop(caches);
        let log_probs: Array2<f32> = output(&outputs, graph::LOG_PROBS)?;
        // Each row keeps its own steps from column 0, so its new step goes to the column of its
        // position: a row that joined a running batch is not padded in front.
        let columns: Vec<usize> = state.positions().iter().map(|&p| p as usize).collect();
        for i in 0..layers {
            for (name, slot) in [(graph::step_k(i), PAST_K), (graph::step_v(i), PAST_V)] {
                let step = output_view::<f32>(&outputs, &name)?;
                if step.shape() != [rows, self.model.spec.n_heads as usize, 1, self.model.spec.head_dim()] {
                    return Err(RuntimeError::Bundle(format!("output `{name}` has shape {:?}", step.shape())));
                }
                state.tensor_mut(at(i, slot)).put_columns(step, &columns);
            }
        }
        drop(outputs);
        let width = state.tensor(at(0, PAST_K)).columns();
        let mut steps_mask = pad_columns(state.steps_mask(), width).into_owned();
        for (row, &column) in columns.iter().enumerate() {
            steps_mask[[row, column]] = true;
        }
        state.advance(steps_mask);
        Ok(log_probs.into_raw_vec_and_offset().0)
    }

    fn select(&mut self, state: &mut OrtState, rows: &[usize]) -> Result<(), RuntimeError> {
        Ok(state.select(rows)?)
    }

    fn append(&mut self, state: &mut OrtState, other: OrtState) -> Result<(), RuntimeError> {
        Ok(state.append(other)?)
    }
}
