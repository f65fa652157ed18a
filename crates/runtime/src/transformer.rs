//! The ONNX Runtime implementation of xlmc-decoding's [`StepModel`] for an exported Transformer
//! bundle (graphs described in xlmc-transformer's `onnx` module): the same decoding core as the
//! libtorch model, so greedy/beam, per-sentence EOS and continuous joins behave identically.

use std::borrow::Cow;

use ndarray::{Array1, Array2, ArrayD};
use ort::{
    AsPointer,
    session::{Session, SessionInputValue},
    sys::OrtValue,
    value::{TensorRef, TensorRefMut},
};
use serde::Deserialize;
use xlmc_bundle::Bundle;
use xlmc_decoding::{Columns, GrowingArray, RowState, StepModel, xlm_source_layout};

use crate::{
    RuntimeError, SessionOptions,
    arrays::{output, pad_columns, view},
    in_place::{Name, Writable, run_in_place},
};

pub use xlmc_bundle::contract::{DECODER_GRAPH as DECODER_FILE, ENCODER_GRAPH as ENCODER_FILE};
use xlmc_bundle::contract::{
    graph,
    state::transformer::{CROSS_K, CROSS_V, PAST_K, PAST_V, PER_LAYER, at, cache_head_dim},
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
    names: DecoderNames,
    pub spec: TransformerSpec,
}

/// The decoder graph's input and output names, as `Run` takes them.
#[derive(Debug)]
struct DecoderNames {
    tokens: Name,
    positions: Name,
    lang: Name,
    source_mask: Name,
    log_probs: Name,
    /// Per state tensor (`contract::state::transformer` order): its input name, and for the
    /// self-attention caches the output written into the same tensor.
    tensors: Vec<(Name, Option<Name>)>,
}

impl DecoderNames {
    fn new(layers: usize) -> Self {
        let mut tensors: Vec<(Name, Option<Name>)> = Vec::with_capacity(layers * PER_LAYER);
        tensors.resize_with(layers * PER_LAYER, || (Name::new(""), None));
        for i in 0..layers {
            tensors[at(i, CROSS_K)] = (Name::new(&graph::cross_k(i)), None);
            tensors[at(i, CROSS_V)] = (Name::new(&graph::cross_v(i)), None);
            tensors[at(i, PAST_K)] = (Name::new(&graph::past_k(i)), Some(Name::new(&graph::present_k(i))));
            tensors[at(i, PAST_V)] = (Name::new(&graph::past_v(i)), Some(Name::new(&graph::present_v(i))));
        }
        Self {
            tokens: Name::new(graph::TOKENS),
            positions: Name::new(graph::POSITIONS),
            lang: Name::new(graph::LANG),
            source_mask: Name::new(graph::SOURCE_MASK),
            log_probs: Name::new(graph::LOG_PROBS),
            tensors,
        }
    }
}

/// Per-row state: the masks, each row's position, and per decoder layer the cross-attention
/// keys/values [rows, heads, src_len, head_dim] and the self-attention cache [rows, heads,
/// room, cache_head_dim], where `contract::state::transformer` puts them. Each is a
/// [`GrowingArray`]: the graph writes each step into the cache in place (row `r` at column
/// `positions[r]`) and reads only each row's own columns.
pub type OrtState = RowState<GrowingArray<f32>, Array2<bool>>;

/// Room for this many decoder steps is made when a batch is encoded (it doubles when full).
const FIRST_STEPS: usize = 16;

impl OrtTransformer {
    pub fn load(bundle: &Bundle, options: &SessionOptions) -> Result<Self, RuntimeError> {
        let (spec, encoder, decoder) = crate::open_bundle::<TransformerSpec>(bundle, options)?;
        let names = DecoderNames::new(spec.n_dec_layers as usize);
        Ok(Self { encoder, decoder, names, spec })
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
        let cache_dims = vec![rows, heads, 0, cache_head_dim(head_dim)];
        let empty = || GrowingArray::with_room(ArrayD::<f32>::zeros(cache_dims.clone()), 2, FIRST_STEPS);
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
        let tokens = Array1::from_iter(last_tokens.iter().map(|&t| i64::from(t)));
        let positions = Array1::from_vec(state.positions().to_vec());
        let lang = Array1::from_vec(vec![self.target_lang]);
        // The cross-attention caches are exact (every layer as wide as the source mask).
        let source_mask = pad_columns(state.source_mask(), state.tensor(at(0, CROSS_K)).capacity()).into_owned();
        let mut log_probs = Array2::<f32>::zeros((rows, self.model.spec.n_words as usize));
        // Each row writes its step at the column of its position (rows keep their steps from
        // column 0): room for the furthest is made before the graph writes in place.
        let furthest = state.positions().iter().max().map_or(0, |&p| p as usize + 1);
        let mut read = Vec::new();
        let mut written = Vec::new();
        for (i, (columns, tensor)) in state.tensors_mut().enumerate() {
            if matches!(columns, Columns::Steps(_)) {
                let cache = tensor.writable_allocation(furthest);
                let shape = cache.shape().to_vec();
                let data = cache.into_slice().expect("rows in use are contiguous");
                written.push((i, TensorRefMut::from_array_view_mut((shape, data))?));
            } else {
                let cache = tensor.allocation();
                let shape = cache.shape().to_vec();
                let data = cache.to_slice().expect("rows in use are contiguous");
                read.push((i, TensorRef::from_array_view((shape, data))?));
            }
        }
        {
            let names = &self.model.names;
            let small: [(&Name, SessionInputValue<'_>); 4] = [
                (&names.tokens, view(&tokens)?),
                (&names.positions, view(&positions)?),
                (&names.lang, view(&lang)?),
                (&names.source_mask, view(&source_mask)?),
            ];
            let mut inputs: Vec<(&Name, &dyn AsPointer<Sys = OrtValue>)> =
                small.iter().map(|(name, value)| (*name, &**value as &dyn AsPointer<Sys = OrtValue>)).collect();
            for (i, value) in &read {
                inputs.push((&names.tensors[*i].0, &**value));
            }
            for (i, value) in &written {
                inputs.push((&names.tensors[*i].0, &**value));
            }
            let log_probs_value = TensorRefMut::from_array_view_mut(&mut log_probs)?;
            let mut outputs: Vec<(&Name, &dyn Writable)> = vec![(&names.log_probs, &log_probs_value)];
            for (i, value) in &written {
                let present = names.tensors[*i].1.as_ref().expect("every self-attention cache is written");
                outputs.push((present, value));
            }
            run_in_place(&mut self.model.decoder, &inputs, &outputs)?;
        }
        drop((written, read));

        let width = state.tensor(at(0, PAST_K)).columns();
        let mut steps_mask = pad_columns(state.steps_mask(), width).into_owned();
        for (row, &position) in state.positions().iter().enumerate() {
            steps_mask[[row, position as usize]] = true;
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
