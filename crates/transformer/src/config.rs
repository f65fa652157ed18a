//! [`Config`]: the hyper-parameters of an XLM encoder-decoder, saved beside its weights.

use serde::{Deserialize, Serialize};

/// XLM's `params` that shape the network (names follow XLM where it has them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Vocabulary size (XLM's `n_words`), specials included.
    pub n_words: i64,
    /// Model width (`emb_dim`); feed-forward layers are 4× wider.
    pub emb_dim: i64,
    pub n_enc_layers: i64,
    pub n_dec_layers: i64,
    pub n_heads: i64,
    pub dropout: f64,
    pub attention_dropout: f64,
    /// Languages (`n_langs`); language embeddings exist when there are several.
    pub n_langs: i64,
    /// Learned position embeddings for this many positions (XLM: 512).
    pub max_positions: i64,
    /// Fixed sinusoidal position embeddings instead of learned ones.
    pub sinusoidal_embeddings: bool,
    pub pad_index: i64,
    pub eos_index: i64,
}

impl Config {
    /// Seconds-scale models for tests.
    pub fn tiny(n_words: i64) -> Self {
        Self {
            n_words,
            emb_dim: 32,
            n_enc_layers: 2,
            n_dec_layers: 2,
            n_heads: 4,
            dropout: 0.0,
            attention_dropout: 0.0,
            n_langs: 2,
            max_positions: 512,
            sinusoidal_embeddings: false,
            pad_index: 2,
            eos_index: 1,
        }
    }

    /// The README demo's teacher (6+6 layers, 256 wide, ~19M parameters at 16k words): the
    /// committed default teacher was trained on a GPU; its fp16 weights stay under 40 MiB, and
    /// its six layers a side leave room for pruned students (6-2, 3-1, …) on CPU.
    pub fn small(n_words: i64) -> Self {
        Self {
            emb_dim: 256,
            n_enc_layers: 6,
            n_dec_layers: 6,
            n_heads: 4,
            dropout: 0.1,
            attention_dropout: 0.1,
            ..Self::tiny(n_words)
        }
    }

    /// Transformer-base sized (6+6 layers, 512 wide): a GPU model.
    pub fn base(n_words: i64) -> Self {
        Self {
            emb_dim: 512,
            n_enc_layers: 6,
            n_dec_layers: 6,
            n_heads: 8,
            dropout: 0.1,
            attention_dropout: 0.1,
            ..Self::tiny(n_words)
        }
    }

    pub fn head_dim(&self) -> i64 {
        self.emb_dim / self.n_heads
    }

    /// The parameters that shape the network (all but dropout) where `other` differs, each as
    /// `name: OTHER there, SELF here`.
    pub fn shape_differences(&self, other: &Config) -> Vec<String> {
        let fields: [(&str, String, String); 9] = [
            ("n_words", other.n_words.to_string(), self.n_words.to_string()),
            ("emb_dim", other.emb_dim.to_string(), self.emb_dim.to_string()),
            ("n_enc_layers", other.n_enc_layers.to_string(), self.n_enc_layers.to_string()),
            ("n_dec_layers", other.n_dec_layers.to_string(), self.n_dec_layers.to_string()),
            ("n_heads", other.n_heads.to_string(), self.n_heads.to_string()),
            ("n_langs", other.n_langs.to_string(), self.n_langs.to_string()),
            ("max_positions", other.max_positions.to_string(), self.max_positions.to_string()),
            ("sinusoidal_embeddings", other.sinusoidal_embeddings.to_string(), self.sinusoidal_embeddings.to_string()),
            (
                "pad_index/eos_index",
                format!("{}/{}", other.pad_index, other.eos_index),
                format!("{}/{}", self.pad_index, self.eos_index),
            ),
        ];
        fields
            .into_iter()
            .filter(|(_, a, b)| a != b)
            .map(|(name, a, b)| format!("{name}: {a} there, {b} here"))
            .collect()
    }

    /// Checks the numbers fit together.
    pub fn validate(&self) -> Result<(), String> {
        if self.emb_dim % self.n_heads != 0 {
            return Err(format!("emb_dim {} is not a multiple of n_heads {}", self.emb_dim, self.n_heads));
        }
        if self.n_words <= self.pad_index.max(self.eos_index) {
            return Err(format!("n_words {} leaves no room for the special ids", self.n_words));
        }
        if self.n_enc_layers < 1 || self.n_dec_layers < 1 || self.n_langs < 1 || self.max_positions < 2 {
            return Err("layers, languages and positions must be positive".into());
        }
        Ok(())
    }
}
