//! `exporter convert`: rewrites a model directory's weights as fp16 and/or size-capped shards
//! (for shipping: git hosts and artifact stores cap file sizes). Loading accepts every layout.

use anyhow::Context;

use crate::{cli::ConvertArgs, model_dir};

pub fn run(args: &ConvertArgs) -> anyhow::Result<String> {
    let (model, tokenizer) = model_dir::load(&args.model, tch::Device::Cpu).context("--model")?;
    model.save_with(&args.out, args.weights.save_options()).with_context(|| format!("--out {}", args.out.display()))?;
    tokenizer.save(&args.out).with_context(|| format!("--out {}: tokenizer", args.out.display()))?;
    // The training record goes with the weights (`train --init-from` continues its schedule).
    if let Some(record) = model_dir::TrainingRecord::read(&args.model)? {
        record.write(&args.out)?;
    }
    // Prove the result loads before saying so.
    let (reloaded, _) = model_dir::load(&args.out, tch::Device::Cpu).context("--out")?;
    let bytes = model_dir::weight_bytes(&args.out);
    Ok(format!(
        "{}: {} parameters, {} weights, {:.1} MiB of safetensors\n",
        args.out.display(),
        reloaded.parameters(),
        if args.weights.half { "fp16" } else { "fp32" },
        bytes as f64 / (1024.0 * 1024.0)
    ))
}
