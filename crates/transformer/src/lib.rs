//! XLM's encoder-decoder Transformer in libtorch (through `tch`).
//!
//! - [`Config`]: XLM's shape parameters, with `tiny`/`small`/`base` presets;
//! - [`Transformer`]: one side (encoder or decoder) with XLM's parameter names, so XLM
//!   checkpoints map onto it key for key; `forward` returns hidden states and `logits` applies the
//!   tied output layer, so distillation can read either;
//! - [`Seq2Seq`]: both sides in one `VarStore` (`encoder.*`, `decoder.*`), saved as
//!   `config.json` + `model.safetensors`;
//! - [`Translator`]: the incremental decoder behind xlmc-decoding's `StepModel`.

mod attention;
mod checkpoint;
mod config;
mod model;
mod onnx;
mod prune;
mod step;

pub use checkpoint::{CheckpointError, INDEX_FILE, SaveOptions, Seq2Seq, WEIGHTS_FILE};
pub use config::Config;
pub use model::Transformer;
pub use onnx::{DECODER_FILE, ENCODER_FILE, OnnxGraphs};
pub use prune::{PruneError, spread_layers};
pub use step::{DecoderCache, StepError, Translator};

#[cfg(test)]
mod tests;
