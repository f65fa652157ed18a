//! The one batched decoding core of xlmc, used by every backend (libtorch in `exporter`, ONNX
//! Runtime in the server).
//!
//! - [`StepModel`] is all a backend implements: encode a batch of sources into a state, run one
//!   decoder step for every row, keep/reorder rows, append rows of another state.
//! - [`Search`] advances all active sentences one step at a time. A sentence that produces EOS
//!   (or reaches its maximum length, where EOS is forced) is final at once: its rows leave the
//!   model state (`select`), so later steps do no work for it. New sentences can [`Search::join`]
//!   between steps, which is what continuous batching needs.
//! - [`decode`] is the plain "translate these sentences" loop on top.
//!
//! XLM's conventions: decoding starts from `</s>` ([`EOS_ID`]); the default maximum length is
//! `1.5 · source tokens + 10`. Greedy (`beam_size` 1) takes the arg-max, lowest id on ties;
//! beam search keeps `beam_size` hypotheses per sentence and ranks finished ones by
//! `log_prob / length^length_penalty`, where length counts generated tokens plus the EOS.

mod model;
mod options;
mod rows;
mod search;
mod slots;

pub use model::{StepModel, xlm_source_layout};
pub use options::{DecodeOptions, MaxLength};
#[cfg(feature = "ndarray")]
pub use rows::GrowingArray;
pub use rows::{Columns, RowMask, RowState, RowTensor};
pub use search::{Finish, Finished, Hypothesis, Search, decode, decode_joining};

/// XLM's end-of-sentence id, which also starts decoding.
pub const EOS_ID: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError<E: std::error::Error + 'static> {
    #[error("model: {0}")]
    Model(#[source] E),
    #[error("model returned {got} log-probabilities for {rows} rows of vocabulary {vocab}")]
    Shape { got: usize, rows: usize, vocab: usize },
    #[error("sentence id {0} is already being decoded")]
    DuplicateId(u64),
    #[error("beam_size must be at least 1")]
    ZeroBeam,
    /// Every call after a model error in `step`, `leave` or when joining rows to a running
    /// batch: the model state may no longer match the rows, so the search stops for good.
    #[error("an earlier model error ended this search: {0}")]
    Failed(String),
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;
