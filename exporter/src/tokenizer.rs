//! `exporter tokenizer train|import-fastbpe`.

use std::time::Instant;

use anyhow::{Context, bail};
use xlmc_corpus::{Manifest, Split, split_paths};
use xlmc_tokenizer::{Tokenizer, TrainOptions};

use crate::cli::{ImportFastBpeArgs, TokenizerCommand, TrainTokenizerArgs};

pub fn run(command: &TokenizerCommand) -> anyhow::Result<()> {
    match command {
        TokenizerCommand::Train(args) => train(args),
        TokenizerCommand::ImportFastbpe(args) => import(args),
    }
}

fn train(args: &TrainTokenizerArgs) -> anyhow::Result<()> {
    let Some(manifest) = Manifest::load_valid(&args.corpus) else {
        bail!(
            "--corpus {}: no valid corpus there (MANIFEST.json missing or checksums differ); run `exporter data fetch` first",
            args.corpus.display()
        );
    };
    let languages = (manifest.source_language.as_str(), manifest.target_language.as_str());
    let (source, target) = split_paths(&args.corpus, Split::Train, languages);
    let started = Instant::now();
    let tokenizer = xlmc_tokenizer::train(&TrainOptions {
        files: vec![source, target],
        vocab_size: args.vocab_size,
        min_frequency: args.min_frequency,
        languages: vec![languages.0.to_owned(), languages.1.to_owned()],
        show_progress: true,
    })?;
    let trained_in = started.elapsed();
    tokenizer.save(&args.out).with_context(|| format!("--out {}", args.out.display()))?;
    println!(
        "trained a {}-token shared vocabulary for {}-{} in {:.1}s → {}",
        tokenizer.vocab_size(),
        languages.0,
        languages.1,
        trained_in.as_secs_f64(),
        args.out.display()
    );
    check_round_trip(&tokenizer, &manifest, args)
}

/// Every dev sentence of both languages must decode back to itself (normalised).
fn check_round_trip(tokenizer: &Tokenizer, manifest: &Manifest, args: &TrainTokenizerArgs) -> anyhow::Result<()> {
    let languages = (manifest.source_language.as_str(), manifest.target_language.as_str());
    let (source, target) = split_paths(&args.corpus, Split::Dev, languages);
    let (mut checked, mut tokens, mut failures) = (0usize, 0usize, Vec::new());
    for path in [source, target] {
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            checked += 1;
            tokens += tokenizer.encode(line)?.len();
            if !tokenizer.round_trips(line)? {
                failures.push(format!("{}:{}", path.display(), n + 1));
            }
        }
    }
    println!(
        "round-trip on the dev split: {}/{checked} sentences exact, {:.1} tokens per sentence",
        checked - failures.len(),
        tokens as f64 / checked.max(1) as f64
    );
    if !failures.is_empty() {
        bail!("{} dev sentences do not round-trip, first: {}", failures.len(), failures[0]);
    }
    Ok(())
}

fn import(args: &ImportFastBpeArgs) -> anyhow::Result<()> {
    let languages: Vec<String> =
        args.languages.split(',').map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect();
    let tokenizer = xlmc_tokenizer::from_fastbpe(&args.codes, &args.vocab, languages)?;
    tokenizer.save(&args.out).with_context(|| format!("--out {}", args.out.display()))?;
    println!(
        "imported fastBPE vocabulary: {} ids (14 specials first) → {}",
        tokenizer.vocab_size(),
        args.out.display()
    );
    Ok(())
}
