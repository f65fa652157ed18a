//! `exporter translate --model DIR --input FILE`: batched decoding through the shared core.

use std::io::Write;

use anyhow::Context;
use xlmc_decoding::{DecodeOptions, Hypothesis};
use xlmc_tokenizer::Tokenizer;

use crate::{
    cli::{Device, TranslateArgs},
    model_dir, torch_device,
};

/// Translates `lines` in batches of `batch_size` with `decode_batch` (ids in, hypotheses out):
/// empty lines stay empty without touching the model; one output line per input line.
pub(crate) fn translate_lines(
    tokenizer: &Tokenizer,
    lines: &[&str],
    batch_size: usize,
    mut decode_batch: impl FnMut(&[Vec<u32>]) -> anyhow::Result<Vec<Hypothesis>>,
) -> anyhow::Result<Vec<String>> {
    let encoded = tokenizer.encode_batch(lines)?;
    let work: Vec<usize> = (0..lines.len()).filter(|&i| !encoded[i].is_empty()).collect();
    let mut translated = vec![String::new(); lines.len()];
    for chunk in work.chunks(batch_size.max(1)) {
        let sources: Vec<Vec<u32>> = chunk.iter().map(|&i| encoded[i].clone()).collect();
        for (&i, hypothesis) in chunk.iter().zip(decode_batch(&sources)?) {
            // One line out per line in: a decoded line break (byte-level BPE has tokens for them,
            // and an undertrained model emits them) must not shift every later line.
            translated[i] = tokenizer.decode(&hypothesis.tokens)?.replace(['\n', '\r'], " ");
        }
    }
    Ok(translated)
}

pub fn run(args: &TranslateArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input).with_context(|| format!("--input {}", args.input.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let options = DecodeOptions {
        beam_size: args.beam,
        length_penalty: args.length_penalty,
        max_length_cap: args.max_length,
        ..Default::default()
    };
    let translated = match (&args.model, &args.bundle) {
        (Some(dir), _) => {
            let device = torch_device::select(args.device)?;
            let (model, tokenizer) = model_dir::load_any(dir, device).context("--model")?;
            let langs = language_ids(&tokenizer, args.source_lang.as_deref(), args.target_lang.as_deref())?;
            translate_lines(&tokenizer, &lines, args.batch_size, |sources| Ok(model.decode(sources, langs, options)?))?
        }
        (None, Some(dir)) => {
            let (bundle, tokenizer) = crate::export::open_bundle(dir)?;
            let session = xlmc_runtime::SessionOptions { cuda: args.device == Device::Cuda, ..Default::default() };
            let mut model = xlmc_runtime::OrtModel::load(&bundle, &session)
                .with_context(|| format!("--bundle {}", dir.display()))?;
            let langs = language_ids(&tokenizer, args.source_lang.as_deref(), args.target_lang.as_deref())?;
            translate_lines(&tokenizer, &lines, args.batch_size, |sources| Ok(model.decode(sources, langs, options)?))?
        }
        (None, None) => anyhow::bail!("--model or --bundle is required"),
    };
    let text: String = translated.iter().map(|line| format!("{line}\n")).collect();
    match &args.output {
        // Whole file or nothing: a failed run never leaves a half-written output behind.
        Some(path) => {
            xlmc_atomic_file::write(path, text.as_bytes()).with_context(|| format!("--output {}", path.display()))
        }
        None => Ok(std::io::stdout().lock().write_all(text.as_bytes())?),
    }
}

/// `--source-lang`/`--target-lang` as ids (default: the tokenizer's first and second language).
pub(crate) fn language_ids(
    tokenizer: &Tokenizer,
    source_lang: Option<&str>,
    target_lang: Option<&str>,
) -> anyhow::Result<(i64, i64)> {
    let languages = tokenizer.languages();
    let source_lang = source_lang.or(languages.first().map(String::as_str)).unwrap_or_default();
    let target_lang = target_lang.or(languages.get(1).map(String::as_str)).unwrap_or_default();
    let source_id = i64::from(tokenizer.language_id(source_lang).context("--source-lang")?);
    let target_id = i64::from(tokenizer.language_id(target_lang).context("--target-lang")?);
    Ok((source_id, target_id))
}

#[cfg(test)]
mod tests {
    use xlmc_decoding::{Finish, Hypothesis};
    use xlmc_tokenizer::{Tokenizer, TrainOptions};

    use super::translate_lines;

    #[test]
    fn a_decoded_line_break_stays_on_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("text");
        std::fs::write(&text, "one line\nanother line\n").unwrap();
        let options = TrainOptions {
            files: vec![text],
            vocab_size: 300,
            min_frequency: 1,
            languages: vec!["en".into(), "fr".into()],
            show_progress: false,
        };
        let tokenizer: Tokenizer = xlmc_tokenizer::train(&options).unwrap();
        let broken = tokenizer.encode("a\nb\r\nc").unwrap();
        let out = translate_lines(&tokenizer, &["x", "", "y"], 8, |sources| {
            Ok(sources
                .iter()
                .map(|_| Hypothesis { tokens: broken.clone(), log_prob: 0.0, score: 0.0, finish: Finish::Eos })
                .collect())
        })
        .unwrap();
        assert_eq!(out, ["a b  c", "", "a b  c"]);
    }
}
