//! `exporter average`: one model folder whose weights are the mean of several folders' (the last
//! checkpoints of one run, as Marian's and fairseq's averaging scripts do), written like
//! `exporter convert` writes (fp16 and shards optional) and reloaded before it reports.

use std::path::{Path, PathBuf};

use anyhow::Context;
use xlmc_tokenizer::Tokenizer;
use xlmc_transformer::Seq2Seq;

use crate::{cli::AverageArgs, model_dir};

pub fn run(args: &AverageArgs) -> anyhow::Result<String> {
    let (models, tokenizer) = match &args.run {
        Some(run) => run_snapshots(run, args.last.unwrap_or(8) as usize)?,
        None => {
            anyhow::ensure!(args.model.len() >= 2, "--model: give two or more model folders to average");
            (args.model.clone(), models_tokenizer(&args.model)?)
        }
    };
    let dirs: Vec<&Path> = models.iter().map(PathBuf::as_path).collect();
    let model =
        Seq2Seq::average(&dirs, tch::Device::Cpu).context(if args.run.is_some() { "--run" } else { "--model" })?;
    anyhow::ensure!(
        tokenizer.vocab_size() as i64 == model.config.n_words,
        "{}: the tokenizer has {} tokens but the model {}",
        models[0].display(),
        tokenizer.vocab_size(),
        model.config.n_words
    );
    model.save_with(&args.out, args.weights.save_options()).with_context(|| format!("--out {}", args.out.display()))?;
    tokenizer.save(&args.out).with_context(|| format!("--out {}: tokenizer", args.out.display()))?;
    let record = match (averaged_record(&models)?, &args.run) {
        (Some(record), _) => Some(record),
        // Snapshots hold weights only: the run's record says what training they had.
        (None, Some(run)) => model_dir::TrainingRecord::read(&run.join("model"))?
            .map(|record| model_dir::TrainingRecord { averaged_from: display_all(&models), ..record }),
        (None, None) => None,
    };
    if let Some(record) = record {
        record.write(&args.out)?;
    }
    let (reloaded, _) = model_dir::load(&args.out, tch::Device::Cpu).context("--out")?;
    Ok(format!(
        "{}: the mean of {} models, {} parameters, {:.1} MiB of {} safetensors\n",
        args.out.display(),
        models.len(),
        reloaded.parameters(),
        model_dir::weight_bytes(&args.out) as f64 / (1024.0 * 1024.0),
        if args.weights.half { "fp16" } else { "fp32" },
    ))
}

/// The tokenizer of the first folder, after checking every other folder has the same one.
/// (Tokenizers only: `Seq2Seq::average` reads each folder's weights once, checking every config.)
fn models_tokenizer(models: &[PathBuf]) -> anyhow::Result<Tokenizer> {
    let load_tokenizer =
        |dir: &Path| Tokenizer::load(dir).with_context(|| format!("--model {}: tokenizer", dir.display()));
    let tokenizer = load_tokenizer(&models[0])?;
    for dir in &models[1..] {
        same_vocabulary(&tokenizer, &load_tokenizer(dir)?).with_context(|| {
            format!("--model {}: its tokenizer differs from --model {}'s", dir.display(), models[0].display())
        })?;
    }
    Ok(tokenizer)
}

/// The newest `last` snapshots of a finished run, and the tokenizer of its `model/`.
fn run_snapshots(run: &Path, last: usize) -> anyhow::Result<(Vec<PathBuf>, Tokenizer)> {
    let all = xlmc_training::snapshots(run);
    anyhow::ensure!(
        all.len() >= last,
        "--run {}: --last {last} asks for more snapshots than {} holds ({}); `[train] snapshot_every` writes them",
        run.display(),
        run.join("snapshots").display(),
        if all.is_empty() {
            "none".to_string()
        } else {
            all.iter().map(|(update, _)| format!("u{update}")).collect::<Vec<_>>().join(", ")
        }
    );
    let model = run.join("model");
    let tokenizer = Tokenizer::load(&model).with_context(|| {
        format!("--run {}: tokenizer of {} (the run's finished model folder)", run.display(), model.display())
    })?;
    Ok((all[all.len() - last..].iter().map(|(_, dir)| dir.clone()).collect(), tokenizer))
}

fn display_all(dirs: &[PathBuf]) -> Vec<String> {
    dirs.iter().map(|d| d.display().to_string()).collect()
}

/// Token by token, the same vocabulary (and trimming and languages).
fn same_vocabulary(ours: &Tokenizer, theirs: &Tokenizer) -> anyhow::Result<()> {
    anyhow::ensure!(
        ours.full_vocab_size() == theirs.full_vocab_size() && ours.kept_ids() == theirs.kept_ids(),
        "{} tokens vs {}",
        theirs.full_vocab_size(),
        ours.full_vocab_size()
    );
    anyhow::ensure!(
        ours.languages() == theirs.languages(),
        "languages {:?} vs {:?}",
        theirs.languages(),
        ours.languages()
    );
    let ids: Vec<u32> = (0..ours.vocab_size() as u32).collect();
    let (a, b) = (ours.tokens(&ids), theirs.tokens(&ids));
    if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
        anyhow::bail!("token {i} is {:?} there, {:?} here", b[i], a[i]);
    }
    Ok(())
}

/// The training record of the most trained model among them (the averaged weights have had no
/// more training than that), listing what was averaged.
fn averaged_record(dirs: &[PathBuf]) -> anyhow::Result<Option<model_dir::TrainingRecord>> {
    let mut best: Option<model_dir::TrainingRecord> = None;
    for dir in dirs {
        if let Some(record) = model_dir::TrainingRecord::read(dir)?
            && best.as_ref().is_none_or(|b| record.updates > b.updates)
        {
            best = Some(record);
        }
    }
    Ok(best.map(|mut record| {
        record.averaged_from = display_all(dirs);
        record
    }))
}
