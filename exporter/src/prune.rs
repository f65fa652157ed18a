//! `exporter prune`: a student made of chosen teacher layers (xlmc-transformer's
//! `Seq2Seq::prune`), written as a model directory with the teacher's tokenizer.

use std::{collections::BTreeSet, path::Path};

use anyhow::{Context, bail};
use xlmc_corpus::{Manifest, Split, split_paths};
use xlmc_tokenizer::Tokenizer;
use xlmc_transformer::spread_layers;

use crate::{cli::PruneArgs, model_dir};

/// `6-2` → (6, 2).
fn parse_keep(text: &str) -> anyhow::Result<(i64, i64)> {
    let parsed = text.split_once('-').and_then(|(e, d)| Some((e.trim().parse().ok()?, d.trim().parse().ok()?)));
    match parsed {
        Some((e, d)) if e > 0 && d > 0 => Ok((e, d)),
        _ => bail!("--keep {text:?}: expected ENCODER-DECODER layer counts, e.g. 6-2"),
    }
}

pub fn run(args: &PruneArgs) -> anyhow::Result<String> {
    let (teacher, tokenizer) = model_dir::load(&args.teacher, tch::Device::Cpu).context("--teacher")?;
    let (encoder_layers, decoder_layers) = match &args.keep {
        Some(keep) => {
            let (e, d) = parse_keep(keep)?;
            if e > teacher.config.n_enc_layers || d > teacher.config.n_dec_layers {
                bail!(
                    "--keep {keep}: the teacher has {}-{} layers",
                    teacher.config.n_enc_layers,
                    teacher.config.n_dec_layers
                );
            }
            (spread_layers(teacher.config.n_enc_layers, e), spread_layers(teacher.config.n_dec_layers, d))
        }
        None => {
            let all = |n: i64| (0..n).collect::<Vec<_>>();
            (
                args.encoder_layers.clone().unwrap_or_else(|| all(teacher.config.n_enc_layers)),
                args.decoder_layers.clone().unwrap_or_else(|| all(teacher.config.n_dec_layers)),
            )
        }
    };
    let student = teacher.prune(&encoder_layers, &decoder_layers).context("--encoder-layers/--decoder-layers")?;
    let (student, tokenizer, trim_report) = match &args.trim_vocab {
        Some(corpus) => {
            let (trimmed, report) = trim_vocabulary(&tokenizer, corpus)?;
            let kept: Vec<i64> = (0..trimmed.vocab_size() as u32)
                .map(|id| {
                    // Compact ids of the teacher's tokenizer (it may be trimmed itself).
                    let token = &trimmed.tokens(&[id])[0];
                    tokenizer.token_to_id(token).map(i64::from).context("trimmed token missing from the teacher")
                })
                .collect::<anyhow::Result<_>>()?;
            (student.trim_vocabulary(&kept).context("--trim-vocab")?, trimmed, report)
        }
        None => (student, tokenizer, String::new()),
    };
    model_dir::save_new(&args.out, args.force, &student, &tokenizer)?;
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let (teacher_bytes, student_bytes) = (model_dir::weight_bytes(&args.teacher), model_dir::weight_bytes(&args.out));
    Ok(format!(
        "teacher {}-{} layers: {} parameters, {:.1} MiB\nstudent {}-{} layers (encoder {encoder_layers:?}, decoder {decoder_layers:?}): {} parameters ({:.1}%), {:.1} MiB\nstudent → {}\n",
        teacher.config.n_enc_layers,
        teacher.config.n_dec_layers,
        teacher.parameters(),
        mib(teacher_bytes),
        student.config.n_enc_layers,
        student.config.n_dec_layers,
        student.parameters(),
        100.0 * student.parameters() as f64 / teacher.parameters() as f64,
        mib(student_bytes),
        args.out.display()
    ) + &trim_report)
}

/// The teacher's tokenizer kept to the tokens of `corpus`'s training split (both languages), and
/// a line saying what that kept and what it costs on the dev split (its tokens that become <unk>).
fn trim_vocabulary(tokenizer: &Tokenizer, corpus: &Path) -> anyhow::Result<(Tokenizer, String)> {
    let Some(manifest) = Manifest::load_valid(corpus) else {
        bail!("--trim-vocab {}: no valid corpus (MANIFEST.json missing or changed)", corpus.display());
    };
    let languages = (manifest.source_language.as_str(), manifest.target_language.as_str());
    let encode_split = |split: Split| -> anyhow::Result<Vec<Vec<u32>>> {
        let (source, target) = split_paths(corpus, split, languages);
        let mut ids = Vec::new();
        for path in [source, target] {
            let text = std::fs::read_to_string(&path).with_context(|| format!("--trim-vocab {}", path.display()))?;
            ids.extend(tokenizer.encode_batch(&text.lines().collect::<Vec<_>>())?);
        }
        Ok(ids)
    };
    let seen: BTreeSet<u32> = encode_split(Split::Train)?.into_iter().flatten().collect();
    let trimmed = tokenizer.trimmed(seen.iter().copied());
    let dev = encode_split(Split::Dev)?;
    let dev_tokens: usize = dev.iter().map(Vec::len).sum();
    let dev_unknown = dev.iter().flatten().filter(|id| !seen.contains(id)).count();
    let report = format!(
        "vocabulary {} → {} tokens (those of {}'s training split); dev tokens now <unk>: {dev_unknown} of {dev_tokens} ({:.3}%)\n",
        tokenizer.vocab_size(),
        trimmed.vocab_size(),
        corpus.display(),
        100.0 * dev_unknown as f64 / dev_tokens.max(1) as f64
    );
    Ok((trimmed, report))
}
