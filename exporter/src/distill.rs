//! `exporter distill --teacher DIR --student DIR --config distill.toml`: trains a student (a
//! pruned teacher, or any xlmc model on the same vocabulary) with word-level knowledge
//! distillation from the teacher, online (the teacher runs on every batch). `--no-kd` trains the
//! same student on the gold targets only, for the ablation. Same machinery as `train`:
//! checkpoints with exact resume, JSONL log, curves, progress, `--device cuda`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use xlmc_corpus::{Manifest, Split};
use xlmc_tokenizer::Tokenizer;
use xlmc_training::{
    GoldObjective, TrainConfig, Trainer,
    distill::{KdConfig, OnlineKd},
    read_log,
};

use crate::{
    cli::DistillArgs,
    model_dir, torch_device,
    train::{encode_split, write_curves},
};

/// The TOML file `exporter distill --config` reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// Corpus folder (`exporter data fetch|import`).
    pub corpus: PathBuf,
    /// Output folder: `checkpoint/`, `train_log.jsonl`, `curves.svg`, and the final `model/`.
    pub out: PathBuf,
    #[serde(default)]
    pub kd: KdConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default = "default_max_sentence_tokens")]
    pub max_sentence_tokens: usize,
    #[serde(default = "default_dev_sentences")]
    pub dev_sentences: usize,
}

fn default_max_sentence_tokens() -> usize {
    100
}
fn default_dev_sentences() -> usize {
    500
}

/// Teacher and student must read and write the same token ids.
pub fn check_same_vocabulary(teacher: &Tokenizer, student: &Tokenizer) -> anyhow::Result<()> {
    ensure!(
        teacher.languages() == student.languages(),
        "teacher languages {:?} differ from the student's {:?}",
        teacher.languages(),
        student.languages()
    );
    ensure!(
        teacher.vocab_size() == student.vocab_size(),
        "teacher vocabulary has {} tokens, the student's {}: distillation needs one shared vocabulary",
        teacher.vocab_size(),
        student.vocab_size()
    );
    let ids: Vec<u32> = (0..teacher.vocab_size() as u32).collect();
    let (a, b) = (teacher.tokens(&ids), student.tokens(&ids));
    if let Some(id) = (0..ids.len()).find(|&i| a[i] != b[i]) {
        bail!(
            "teacher and student vocabularies differ (id {id}: {:?} vs {:?}): distillation needs one shared vocabulary",
            a[id],
            b[id]
        );
    }
    Ok(())
}

pub fn run(args: &DistillArgs) -> anyhow::Result<()> {
    // clap requires all three unless a subcommand is given.
    let (Some(teacher_dir), Some(student_dir), Some(config_path)) = (&args.teacher, &args.student, &args.config) else {
        bail!("--teacher, --student and --config are required");
    };
    let text = std::fs::read_to_string(config_path).with_context(|| format!("--config {}", config_path.display()))?;
    let config: DistillConfig = toml::from_str(&text).with_context(|| format!("--config {}", config_path.display()))?;
    let Some(manifest) = Manifest::load_valid(&config.corpus) else {
        bail!(
            "corpus {}: no valid corpus (MANIFEST.json missing or changed); run `exporter data fetch`",
            config.corpus.display()
        );
    };
    let device = torch_device::select(args.device)?;
    let (teacher, teacher_tokenizer) = model_dir::load(teacher_dir, device).context("--teacher")?;
    let (mut student, tokenizer) = model_dir::load(student_dir, device).context("--student")?;
    check_same_vocabulary(&teacher_tokenizer, &tokenizer).context("--teacher/--student")?;

    let mut train_config = config.train.clone();
    if let Some(max_updates) = args.max_updates {
        train_config.max_updates = max_updates;
    }
    if let Some(minutes) = args.max_minutes {
        train_config.max_minutes = Some(minutes);
    }
    train_config.source_lang = i64::from(tokenizer.language_id(&manifest.source_language)?);
    train_config.target_lang = i64::from(tokenizer.language_id(&manifest.target_language)?);
    let (train, dropped) =
        encode_split(&tokenizer, &config.corpus, &manifest, Split::Train, config.max_sentence_tokens, usize::MAX)?;
    let (dev, _) = encode_split(
        &tokenizer,
        &config.corpus,
        &manifest,
        Split::Dev,
        config.max_sentence_tokens,
        config.dev_sentences,
    )?;
    let kd = if args.no_kd { KdConfig { alpha: 0.0, ..config.kd } } else { config.kd };
    println!(
        "distilling: {} pairs ({dropped} left out), dev {}; teacher {} parameters, student {}; T = {}, α = {}{}",
        train.len(),
        dev.len(),
        teacher.parameters(),
        student.parameters(),
        kd.temperature,
        kd.alpha,
        if args.no_kd { " (--no-kd: gold targets only)" } else { "" }
    );

    let progress = ProgressBar::new(train_config.max_updates as u64);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} updates  {msg}")
            .expect("progress template")
            .progress_chars("=> "),
    );
    let detokenize = |ids: &[u32]| tokenizer.decode(ids).unwrap_or_default();
    let label_smoothing = train_config.label_smoothing;
    let trainer = Trainer { config: train_config, dir: config.out.clone(), train: &train, dev: &dev };
    let on_update = |line: &xlmc_training::LogLine| {
        progress.set_position(line.update as u64);
        let bleu = line.dev_bleu.map(|b| format!(" dev BLEU {b:.2}")).unwrap_or_default();
        progress.set_message(format!("loss {:.3} nll {:.3}{bleu}", line.loss, line.nll));
    };
    let state = if kd.alpha == 0.0 {
        // No teacher forward at all when it would be weighted by zero.
        trainer.run_with(&mut student, &mut GoldObjective { label_smoothing }, &detokenize, on_update)?
    } else {
        let mut objective = OnlineKd { teacher: &teacher, kd, label_smoothing };
        trainer.run_with(&mut student, &mut objective, &detokenize, on_update)?
    };
    progress.finish();
    write_kd_record(&config.out, kd, args)?;

    let final_dir = config.out.join("model");
    model_dir::save(&final_dir, &student, &tokenizer)?;
    let log = read_log(&config.out);
    write_curves(&config.out, &log)?;
    let last_bleu = log.iter().rev().find_map(|l| l.dev_bleu).unwrap_or(f64::NAN);
    println!(
        "done: {} updates, dev BLEU {last_bleu:.2} (best {:.2}); student → {}",
        state.update,
        state.best_dev_bleu.unwrap_or(f64::NAN),
        final_dir.display()
    );
    Ok(())
}

/// `distill.json` beside the log: what the run distilled from and with which T and α.
fn write_kd_record(out: &Path, kd: KdConfig, args: &DistillArgs) -> anyhow::Result<()> {
    let record = serde_json::json!({
        "teacher": args.teacher,
        "student_init": args.student,
        "mode": if kd.alpha == 0.0 { "none" } else { "online" },
        "temperature": kd.temperature,
        "alpha": kd.alpha,
    });
    let path = out.join("distill.json");
    xlmc_atomic_file::write(&path, serde_json::to_string_pretty(&record)?.as_bytes())
        .with_context(|| format!("{}", path.display()))
}
