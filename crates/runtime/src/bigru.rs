//! The ONNX Runtime step model of an exported BiGRU bundle (graphs in xlmc-bigru's `onnx`
//! module): the recurrent state `h` is the only thing a step changes.

use std::borrow::Cow;
use xlmc_bundle::contract::graph;

use ndarray::{Array1, Array2, Array3, Axis};
use ort::session::{Session, SessionInputValue};
use serde::Deserialize;
use xlmc_bundle::Bundle;
use xlmc_decoding::{StepModel, xlm_source_layout};

use crate::{
    RuntimeError, SessionOptions,
    arrays::{concat, keep_range, output, pad_axis, used_columns, view},
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

/// Per-row state: the decoder's hidden state and what it attends over.
#[derive(Debug, Clone)]
pub struct OrtBiGruState {
    h: Array2<f32>,            // [rows, 2H]
    encoded: Array3<f32>,      // [rows, src_len, 2H]
    keys: Array3<f32>,         // [rows, src_len, 2H]
    source_mask: Array2<bool>, // [rows, src_len]
}

impl OrtBiGruState {
    /// The encoder's states and the decoder state, for comparisons with libtorch.
    pub fn encoded_and_h(&self) -> (&Array3<f32>, &Array2<f32>) {
        (&self.encoded, &self.h)
    }
}

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
        Ok(OrtBiGruState {
            h: output(&outputs, graph::HIDDEN)?,
            encoded: output(&outputs, graph::ENCODED)?,
            keys: output(&outputs, graph::KEYS)?,
            source_mask: output(&outputs, graph::SOURCE_MASK)?,
        })
    }

    fn step(&mut self, state: &mut OrtBiGruState, last_tokens: &[u32]) -> Result<Vec<f32>, RuntimeError> {
        let tokens = Array1::from_iter(last_tokens.iter().map(|&t| i64::from(t)));
        let lang = Array1::from_vec(vec![self.target_lang]);
        let inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            (graph::TOKENS.into(), view(&tokens)?),
            (graph::LANG.into(), view(&lang)?),
            (graph::HIDDEN.into(), view(&state.h)?),
            (graph::ENCODED.into(), view(&state.encoded)?),
            (graph::KEYS.into(), view(&state.keys)?),
            (graph::SOURCE_MASK.into(), view(&state.source_mask)?),
        ];
        let outputs = self.model.decoder.run(inputs)?;
        let log_probs: Array2<f32> = output(&outputs, graph::LOG_PROBS)?;
        let h = output(&outputs, graph::HIDDEN_OUT)?;
        drop(outputs);
        state.h = h;
        Ok(log_probs.into_raw_vec_and_offset().0)
    }

    fn select(&mut self, state: &mut OrtBiGruState, rows: &[usize]) -> Result<(), RuntimeError> {
        state.h = state.h.select(Axis(0), rows);
        state.encoded = state.encoded.select(Axis(0), rows);
        state.keys = state.keys.select(Axis(0), rows);
        state.source_mask = state.source_mask.select(Axis(0), rows);
        // Source padding no remaining row needs goes (it only grows under continuous batching).
        let source = 0..used_columns(&state.source_mask).end;
        state.source_mask = keep_range(std::mem::take(&mut state.source_mask), 1, source.clone());
        state.encoded = keep_range(std::mem::take(&mut state.encoded), 1, source.clone());
        state.keys = keep_range(std::mem::take(&mut state.keys), 1, source);
        Ok(())
    }

    fn append(&mut self, state: &mut OrtBiGruState, mut other: OrtBiGruState) -> Result<(), RuntimeError> {
        let len = state.source_mask.ncols().max(other.source_mask.ncols());
        for s in [&mut *state, &mut other] {
            s.encoded = pad_axis(std::mem::take(&mut s.encoded), 1, len, 0.0);
            s.keys = pad_axis(std::mem::take(&mut s.keys), 1, len, 0.0);
            s.source_mask = pad_axis(std::mem::take(&mut s.source_mask), 1, len, false);
        }
        state.h = concat(0, &[state.h.view(), other.h.view()]);
        state.encoded = concat(0, &[state.encoded.view(), other.encoded.view()]);
        state.keys = concat(0, &[state.keys.view(), other.keys.view()]);
        state.source_mask = concat(0, &[state.source_mask.view(), other.source_mask.view()]);
        Ok(())
    }
}
