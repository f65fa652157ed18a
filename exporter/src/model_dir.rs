//! A model directory: `config.json` + `model.safetensors` (xlmc-transformer) and the tokenizer
//! files (xlmc-tokenizer) side by side — what `train` writes and `translate` reads.

use std::path::Path;

use anyhow::Context;
use xlmc_tokenizer::Tokenizer;
use xlmc_transformer::Seq2Seq;

pub fn save(dir: &Path, model: &Seq2Seq, tokenizer: &Tokenizer) -> anyhow::Result<()> {
    model.save(dir).with_context(|| format!("saving the model to {}", dir.display()))?;
    tokenizer.save(dir).with_context(|| format!("saving the tokenizer to {}", dir.display()))
}

pub fn load(dir: &Path, device: tch::Device) -> anyhow::Result<(Seq2Seq, Tokenizer)> {
    let model = Seq2Seq::load(dir, device).with_context(|| format!("--model {}", dir.display()))?;
    let tokenizer = Tokenizer::load(dir).with_context(|| format!("--model {}: tokenizer", dir.display()))?;
    anyhow::ensure!(
        tokenizer.vocab_size() as i64 == model.config.n_words,
        "--model {}: tokenizer has {} tokens but the model {}",
        dir.display(),
        tokenizer.vocab_size(),
        model.config.n_words
    );
    Ok((model, tokenizer))
}
