//! `exporter pipeline`: the README's main command. It runs every stage in order and skips a
//! stage whose output is already there; stages that later issues bring say so and are skipped.

use std::path::PathBuf;

use crate::{
    cli::{DoctorArgs, PipelineArgs, Preset},
    doctor,
};

/// A pipeline stage not built yet: its name and the issue that brings it.
struct Pending {
    name: &'static str,
    issue: u32,
}

const PENDING_STAGES: &[Pending] = &[
    Pending { name: "data fetch (en-fr corpus)", issue: 3 },
    Pending { name: "tokenizer (shared BPE)", issue: 3 },
    Pending { name: "train teacher", issue: 4 },
    Pending { name: "prune student", issue: 5 },
    Pending { name: "distill (word KD + seq-KD)", issue: 5 },
    Pending { name: "BiGRU student", issue: 5 },
    Pending { name: "export ONNX bundles", issue: 6 },
    Pending { name: "report", issue: 8 },
    Pending { name: "serve and translate", issue: 7 },
];

pub fn run(args: &PipelineArgs) -> anyhow::Result<()> {
    let work_dir = args.work_dir.clone().unwrap_or_else(|| default_work_dir(args.preset));
    println!("xlmc pipeline, preset {:?}, work dir {}", args.preset, work_dir.display());

    println!("[1/{}] check the stack", PENDING_STAGES.len() + 1);
    let report = doctor::check(&DoctorArgs { device: args.device })?;
    for line in report.to_string().lines() {
        println!("      {line}");
    }
    for (i, stage) in PENDING_STAGES.iter().enumerate() {
        println!(
            "[{}/{}] {}: not implemented yet (issue {})",
            i + 2,
            PENDING_STAGES.len() + 1,
            stage.name,
            stage.issue
        );
    }
    Ok(())
}

fn default_work_dir(preset: Preset) -> PathBuf {
    let name = match preset {
        Preset::Tiny => "tiny",
        Preset::Small => "small",
        Preset::Base => "base",
    };
    PathBuf::from("runs").join(name)
}
