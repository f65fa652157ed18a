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

/// Writes a whole new model directory at `out`: into a staging folder beside it, then renamed, so
/// `out` never holds a half-written model. An existing `out` is replaced only with `force`.
pub fn save_new(out: &Path, force: bool, model: &Seq2Seq, tokenizer: &Tokenizer) -> anyhow::Result<()> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("--out {}", out.display()))?;
    anyhow::ensure!(force || !out.exists(), "--out {} exists; pass --force to replace it", out.display());
    let staging = tempfile::Builder::new()
        .prefix(".xlmc-staging.")
        .tempdir_in(parent)
        .with_context(|| format!("--out {}", out.display()))?;
    save(staging.path(), model, tokenizer)?;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("--out {}", out.display()))?;
    }
    std::fs::rename(staging.keep(), out).with_context(|| format!("--out {}", out.display()))
}

/// sha256 of each weight file, in name order: identifies a model's weights (caches built from a
/// teacher must not be reused for another).
pub fn weights_fingerprint(dir: &Path) -> String {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "safetensors"));
    files.sort();
    files.iter().map(|p| xlmc_corpus::sha256_file(p).unwrap_or_default()).collect::<Vec<_>>().join(",")
}

/// Bytes of the weight files in a model directory.
pub fn weight_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
                .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                .sum()
        })
        .unwrap_or(0)
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
