//! `exporter data fetch|import`: build a corpus folder (splits + MANIFEST.json).

use anyhow::{Context, bail};
use xlmc_corpus::{FetchOptions, ImportOptions, Manifest, Split, UserCorpus};

use crate::cli::{DataCommand, FetchArgs, ImportArgs};

pub fn run(command: &DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::Fetch(args) => fetch(args),
        DataCommand::Import(args) => import(args),
    }
}

fn fetch(args: &FetchArgs) -> anyhow::Result<()> {
    let fetched = xlmc_corpus::fetch_en_fr(&FetchOptions { pair: args.pair.clone(), out: args.out.clone() })
        .with_context(|| format!("exporter data fetch --pair {} --out {}", args.pair, args.out.display()))?;
    if !fetched.rebuilt {
        println!("{} is complete and valid (MANIFEST.json checksums match): nothing to do", args.out.display());
    }
    print_summary(&fetched.manifest, &args.out);
    Ok(())
}

fn import(args: &ImportArgs) -> anyhow::Result<()> {
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
    println!(
        "kept {} pairs; skipped {} empty, {} longer than {} words, {} invalid UTF-8, {} malformed",
        report.kept,
        report.empty,
        report.too_long,
        xlmc_corpus::MAX_WORDS,
        report.invalid_utf8,
        report.malformed
    );
    print_summary(&manifest, &args.out);
    Ok(())
}

fn print_summary(manifest: &Manifest, out: &std::path::Path) {
    for split in Split::ALL {
        println!("{:<5} {:>7} pairs", split.name(), manifest.count(split));
    }
    println!("removed {} duplicates, {} cross-split repeats", manifest.removed_duplicates, manifest.removed_leaks);
    println!("manifest: {}", out.join(xlmc_corpus::MANIFEST_FILE).display());
}
