//! The ONNX Runtime step model of an exported BiGRU bundle (graphs in xlmc-bigru's `onnx`
//! module): the recurrent state `h` is the only thing a step changes.

use std::borrow::Cow;

use ndarray::{Array1, Array2, ArrayD};
use ort::session::{Session, SessionInputValue};
use serde::Deserialize;
use xlmc_bundle::{
    Bundle,
    contract::{
        graph,
        state::bigru::{ENCODED, HIDDEN as H, KEYS},
    },
};
use xlmc_decoding::{Columns, RowState, StepModel, xlm_source_layout};

use crate::{
    RuntimeError, SessionOptions,
    arrays::{output, view},
};

/// What the runtime needs of a BiGRU's config (the bundle manifest's `config`).
#[derive(Debug, Clone, Deserialize)]
pub struct BiGruSpec {
    pub n_words: i64,
    pub pad_index: i64,
    pub eos_index: i64,
}

#[derive(Debug)]
pub struct OrtBiGru {
    encoder: Session,
    decoder: Session,
    pub spec: BiGruSpec,
}

/// Per-row state: the source mask, and the decoder's hidden state [rows, 2H] with what it
/// attends over, the encoder states and their attention keys [rows, src_len, 2H]
/// (where `contract::state::bigru` puts them).
pub type OrtBiGruState = RowState<ArrayD<f32>, Array2<bool>>;

impl OrtBiGru {
    pub fn load(bundle: &Bundle, options: &SessionOptions) -> Result<Self, RuntimeError> {
        let (spec, encoder, decoder) = crate::open_bundle::<BiGruSpec>(bundle, options)?;
        Ok(Self { encoder, decoder, spec })
    }

    pub fn translator(&mut self, source_lang: i64, target_lang: i64) -> OrtBiGruTranslator<'_> {
        OrtBiGruTranslator { model: self, source_lang, target_lang }
    }
}

#[derive(Debug)]
pub struct OrtBiGruTranslator<'m> {
    model: &'m mut OrtBiGru,
    source_lang: i64,
    target_lang: i64,
}

impl StepModel for OrtBiGruTranslator<'_> {
    type State = OrtBiGruState;
    type Error = RuntimeError;

    fn vocab_size(&self) -> usize {
        self.model.spec.n_words as usize
    }

    fn encode(&mut self, sources: &[Vec<u32>]) -> Result<OrtBiGruState, RuntimeError> {
        let (tokens, width, lengths) = xlm_source_layout(sources, self.model.spec.eos_index, self.model.spec.pad_index);
        let tokens = Array2::from_shape_vec((sources.len(), width), tokens).expect("layout size");
        let lengths = Array1::from_vec(lengths);
        let lang = Array1::from_vec(vec![self.source_lang]);
        let inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            (graph::TOKENS.into(), view(&tokens)?),
            (graph::LENGTHS.into(), view(&lengths)?),
            (graph::LANG.into(), view(&lang)?),
        ];
        let outputs = self.model.encoder.run(inputs)?;
        let tensors = vec![
            (Columns::Fixed, output(&outputs, graph::HIDDEN)?),
            (Columns::Source(1), output(&outputs, graph::ENCODED)?),
            (Columns::Source(1), output(&outputs, graph::KEYS)?),
        ];
        let rows = sources.len();
        Ok(OrtBiGruState::new(
            output(&outputs, graph::SOURCE_MASK)?,
            Array2::from_elem((rows, 0), false),
            rows,
            tensors,
        ))
    }

    fn step(&mut self, state: &mut OrtBiGruState, last_tokens: &[u32]) -> Result<Vec<f32>, RuntimeError> {
        let tokens = Array1::from_iter(last_tokens.iter().map(|&t| i64::from(t)));
        let lang = Array1::from_vec(vec![self.target_lang]);
        let inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            (graph::TOKENS.into(), view(&tokens)?),
            (graph::LANG.into(), view(&lang)?),
            (graph::HIDDEN.into(), view(state.tensor(H))?),
            (graph::ENCODED.into(), view(state.tensor(ENCODED))?),
            (graph::KEYS.into(), view(state.tensor(KEYS))?),
            (graph::SOURCE_MASK.into(), view(state.source_mask())?),
        ];
        let outputs = self.model.decoder.run(inputs)?;
        let log_probs: Array2<f32> = output(&outputs, graph::LOG_PROBS)?;
        let h = output(&outputs, graph::HIDDEN_OUT)?;
        drop(outputs);
        *state.tensor_mut(H) = h;
        Ok(log_probs.into_raw_vec_and_offset().0)
    }

    fn select(&mut self, state: &mut OrtBiGruState, rows: &[usize]) -> Result<(), RuntimeError> {
        Ok(state.select(rows)?)
    }

    fn append(&mut self, state: &mut OrtBiGruState, other: OrtBiGruState) -> Result<(), RuntimeError> {
        Ok(state.append(other)?)
    }
}
