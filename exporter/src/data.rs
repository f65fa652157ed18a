//! `exporter data fetch|import`: build a corpus folder (splits + MANIFEST.json).

use anyhow::{Context, bail};
use xlmc_corpus::{FetchOptions, ImportOptions, Manifest, Split, UserCorpus};

use crate::cli::{DataCommand, FetchArgs, ImportArgs};

/// The command's summary text (splits, counts, where the manifest is).
pub fn run(command: &DataCommand) -> anyhow::Result<String> {
    match command {
        DataCommand::Fetch(args) => fetch(args),
        DataCommand::Import(args) => import(args),
    }
}

fn fetch(args: &FetchArgs) -> anyhow::Result<String> {
    let fetched = xlmc_corpus::fetch_en_fr(&FetchOptions { pair: args.pair.clone(), out: args.out.clone() })
        .with_context(|| format!("exporter data fetch --pair {} --out {}", args.pair, args.out.display()))?;
    let mut text = String::new();
    if !fetched.rebuilt {
        text +=
            &format!("{} is complete and valid (MANIFEST.json checksums match): nothing to do\n", args.out.display());
    }
    Ok(text + &summary(&fetched.manifest, &args.out))
}

fn import(args: &ImportArgs) -> anyhow::Result<String> {
    let corpus = match (&args.tsv, &args.source, &args.target) {
        (Some(tsv), None, None) => UserCorpus::Tsv(tsv.clone()),
        (None, Some(source), Some(target)) => UserCorpus::Moses { source: source.clone(), target: target.clone() },
        _ => bail!("give either --tsv FILE, or both --source FILE and --target FILE"),
    };
    let Some((source_language, target_language)) = args.pair.split_once('-') else {
        bail!("--pair {}: expected SRC-TGT, e.g. en-fr", args.pair);
    };
    let options = ImportOptions {
        corpus,
        source_language: source_language.to_owned(),
        target_language: target_language.to_owned(),
        out: args.out.clone(),
        held_out_percent: args.held_out_percent,
    };
    let (manifest, report) = xlmc_corpus::import_corpus(&options).context("exporter data import")?;
    let kept = format!(
        "kept {} pairs; skipped {} empty, {} longer than {} words, {} invalid UTF-8, {} malformed\n",
        report.kept,
        report.empty,
        report.too_long,
        xlmc_corpus::MAX_WORDS,
        report.invalid_utf8,
        report.malformed
    );
    Ok(kept + &summary(&manifest, &args.out))
}

fn summary(manifest: &Manifest, out: &std::path::Path) -> String {
    let mut text: String =
        Split::ALL.iter().map(|&split| format!("{:<5} {:>7} pairs\n", split.name(), manifest.count(split))).collect();
    text += &format!(
        "removed {} duplicates, {} cross-split repeats\n",
        manifest.removed_duplicates, manifest.removed_leaks
    );
    text + &format!("manifest: {}\n", out.join(xlmc_corpus::MANIFEST_FILE).display())
}
