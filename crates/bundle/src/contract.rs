//! The contract between xlmc's producers (`exporter`'s trainers and ONNX writers) and consumers
//! (ONNX Runtime step models, the server, `exporter translate`): architecture names, the files of
//! model folders and bundles, and every graph input and output name. Each is written here once;
//! both sides use these names, so a rename cannot leave one side behind.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The model architectures xlmc trains, exports and serves. Serialized lowercase, as
/// `config.json` and `manifest.json` spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Architecture {
    /// XLM's Transformer encoder–decoder (teachers and cut students).
    #[serde(rename = "transformer")]
    Transformer,
    /// The bidirectional-GRU student with attention.
    #[serde(rename = "bigru")]
    BiGru,
}

impl Architecture {
    pub const ALL: [Architecture; 2] = [Architecture::Transformer, Architecture::BiGru];

    pub fn name(self) -> &'static str {
        match self {
            Architecture::Transformer => "transformer",
            Architecture::BiGru => "bigru",
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Architecture {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Architecture::ALL.into_iter().find(|a| a.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Architecture::ALL.iter().map(|a| a.name()).collect();
            format!("unknown architecture `{name}` (known: {})", known.join(", "))
        })
    }
}

/// The architecture a model folder's `config.json` names in its `"architecture"` field; XLM
/// configs (teachers, cut students) have none and are Transformers.
pub fn folder_architecture(config: &serde_json::Value) -> Result<Architecture, String> {
    match config.get("architecture") {
        None => Ok(Architecture::Transformer),
        Some(serde_json::Value::String(name)) => name.parse(),
        Some(other) => Err(format!("\"architecture\" is {other}, not a name")),
    }
}

/// A model folder's config (`config.json`).
pub const CONFIG_FILE: &str = "config.json";
/// A model folder's weights in one file.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// A model folder's shard index when its weights are sharded (Hugging Face's layout).
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
/// A bundle's manifest.
pub const MANIFEST_FILE: &str = "manifest.json";
/// A bundle's encoder graph (both architectures).
pub const ENCODER_GRAPH: &str = "encoder.onnx";
/// A bundle's one-step decoder graph (both architectures).
pub const DECODER_GRAPH: &str = "decoder.onnx";

/// Input and output names of the bundles' ONNX graphs.
pub mod graph {
    /// Encoder input: source tokens `[batch, src_len]` (i64). Decoder input: each row's last
    /// token `[rows]`.
    pub const TOKENS: &str = "tokens";
    /// Encoder input: each source's length `[batch]` (i64).
    pub const LENGTHS: &str = "lengths";
    /// Language id of the side the graph reads, `[1]` (i64).
    pub const LANG: &str = "lang";
    /// Encoder output and decoder input: which source positions are real `[rows, src_len]`.
    pub const SOURCE_MASK: &str = "source_mask";
    /// Decoder output: log-probabilities of the next token `[rows, vocab]`.
    pub const LOG_PROBS: &str = "log_probs";

    /// Transformer decoder input: each row's position `[rows]` (i64).
    pub const POSITIONS: &str = "positions";
    /// Transformer: the encoder's cross-attention keys of decoder layer `layer` (an encoder
    /// output and a decoder input).
    pub fn cross_k<L: std::fmt::Display>(layer: L) -> String {
        format!("cross_k.{layer}")
    }

    /// Transformer: the cross-attention values of decoder layer `layer`.
    pub fn cross_v<L: std::fmt::Display>(layer: L) -> String {
        format!("cross_v.{layer}")
    }

    /// Transformer decoder input: layer `layer`'s self-attention key cache, `[rows, heads,
    /// room, head_dim]`. Row `r`'s steps so far are its first [`POSITIONS`]`[r]` columns (rows
    /// are left-aligned); the columns after them are room, never read. The step writes its own
    /// keys at column `positions[r]`, so `room` must exceed every position.
    pub fn past_k<L: std::fmt::Display>(layer: L) -> String {
        format!("past_k.{layer}")
    }

    /// Transformer decoder input: layer `layer`'s self-attention value cache, like [`past_k`].
    pub fn past_v<L: std::fmt::Display>(layer: L) -> String {
        format!("past_v.{layer}")
    }

    /// Transformer decoder output: the key cache with this step written in, the shape of
    /// [`past_k`]. A caller passes the same buffer as `past_k` and as this output, and ONNX
    /// Runtime writes the step into it in place (GroupQueryAttention's shared past/present
    /// buffer): no step copies the cache.
    pub fn present_k<L: std::fmt::Display>(layer: L) -> String {
        format!("present_k.{layer}")
    }

    /// Transformer decoder output: the value cache with this step written in, like [`present_k`].
    pub fn present_v<L: std::fmt::Display>(layer: L) -> String {
        format!("present_v.{layer}")
    }

    /// BiGRU encoder output and decoder input: the encoder states `[rows, src_len, d]`.
    pub const ENCODED: &str = "encoded";
    /// BiGRU: the attention keys projected from [`ENCODED`].
    pub const KEYS: &str = "keys";
    /// BiGRU decoder input (and encoder output: the initial one): the recurrent state `[rows, d]`.
    pub const HIDDEN: &str = "h";
    /// BiGRU decoder output: the recurrent state after this step.
    pub const HIDDEN_OUT: &str = "h_out";
}

/// Where each cached tensor sits in a decoding state (xlmc-decoding's `RowState`), the same for
/// the libtorch and the ONNX Runtime step model of an architecture, so their states compare
/// tensor by tensor.
pub mod state {
    /// Transformer: decoder layer `layer`'s tensors start at `PER_LAYER · layer`.
    pub mod transformer {
        pub const PER_LAYER: usize = 4;
        /// Cross-attention keys / values `[rows, heads, src_len, head_dim]`.
        pub const CROSS_K: usize = 0;
        pub const CROSS_V: usize = 1;
        /// Cached self-attention keys / values `[rows, heads, steps, head_dim]` (the ONNX
        /// decoder's with [`cache_head_dim`]).
        pub const PAST_K: usize = 2;
        pub const PAST_V: usize = 3;

        /// Tensor `slot` of decoder layer `layer`.
        pub const fn at(layer: usize, slot: usize) -> usize {
            PER_LAYER * layer + slot
        }

        /// The head size of the ONNX decoder's self-attention cache for a model whose heads
        /// have `head_dim` values: ONNX Runtime's GroupQueryAttention takes multiples of 8, so
        /// other sizes are padded with zeros (the padded projections are zero: nothing changes).
        pub const fn cache_head_dim(head_dim: usize) -> usize {
            head_dim.div_ceil(8) * 8
        }
    }

    /// BiGRU.
    pub mod bigru {
        /// The recurrent state `[rows, d]`.
        pub const HIDDEN: usize = 0;
        /// The encoder states and their attention keys `[rows, src_len, d]`.
        pub const ENCODED: usize = 1;
        pub const KEYS: usize = 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_spell_the_same_in_json_display_and_parsing() {
        for architecture in Architecture::ALL {
            let json = serde_json::to_string(&architecture).unwrap();
            assert_eq!(json, format!("\"{architecture}\""));
            assert_eq!(serde_json::from_str::<Architecture>(&json).unwrap(), architecture);
            assert_eq!(architecture.name().parse::<Architecture>().unwrap(), architecture);
        }
        assert_eq!(
            "lstm".parse::<Architecture>().unwrap_err(),
            "unknown architecture `lstm` (known: transformer, bigru)"
        );
        assert!(serde_json::from_str::<Architecture>("\"lstm\"").is_err());
    }
}
