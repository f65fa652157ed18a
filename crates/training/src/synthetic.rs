//! A synthetic translation task for tests and smoke runs: word-by-word "translation" where each
//! source word maps to a fixed other word, with a model config sized for it.

use xlmc_transformer::Config;

use crate::{Pair, batching::Rng};

/// First id after XLM's 14 specials.
const FIRST_WORD: u32 = 14;
const WORDS: u32 = 26;
/// Where a word's translation sits: `(w + SHIFT) mod WORDS`.
const SHIFT: u32 = 7;

/// `n` pairs of 3–8 words, the same for the same seed.
pub fn mapping_task(n: usize, seed: u64) -> Vec<Pair> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let len = 3 + rng.below(6);
            let source: Vec<u32> = (0..len).map(|_| FIRST_WORD + rng.below(WORDS as usize) as u32).collect();
            let target = source.iter().map(|t| FIRST_WORD + (t - FIRST_WORD + SHIFT) % WORDS).collect();
            (source, target)
        })
        .collect()
}

/// Ids as words (`w14 w15 …`), for BLEU on the task.
pub fn detokenize(ids: &[u32]) -> String {
    ids.iter().map(|t| format!("w{t}")).collect::<Vec<_>>().join(" ")
}

/// A tiny Transformer with room for the task's vocabulary.
pub fn model_config() -> Config {
    Config { emb_dim: 64, ..Config::tiny(i64::from(FIRST_WORD + WORDS)) }
}
