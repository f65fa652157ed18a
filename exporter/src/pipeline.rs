//! `exporter pipeline`: the README's main command. Data → tokenizer → teacher → prune → word-level
//! KD → seq-KD → BiGRU → ONNX bundles → report → server + gRPC translations, each stage through
//! the same code as its own command. A stage is skipped when its output is valid and was built
//! from the same inputs and settings (`stage_stamps`); an interrupted training stage resumes from
//! its checkpoint.
//!
//! Settings come from `configs/pipeline-<preset>.toml`, which names the teacher and student
//! configs it builds on; the effective config of every training stage is written to
//! `<out>/configs/` and the equivalent command printed, so any stage can be rerun by hand. The
//! stack check, the data and the demo are done here; the stages between them are the table of
//! `pipeline_plan`.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, bail};
use clap::ValueEnum;
use serde::Deserialize;
use xlmc_corpus::{Manifest, Split, split_paths};

use crate::{
    cli::{DataCommand, DoctorArgs, FetchArgs, PipelineArgs, Precision},
    data, doctor,
    pipeline_plan::{PlanInputs, execute, indented, model_loads, plan, table_headers},
    serve_demo::{self, Demo},
    stage_stamps::Stages,
};

/// The file `exporter pipeline --config` reads (`configs/pipeline-<preset>.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Corpus folder; the built-in en-fr corpus is fetched there when it is missing.
    pub corpus: PathBuf,
    /// Every stage's output goes under this folder.
    pub out: PathBuf,
    /// Shared BPE vocabulary size (specials included).
    pub vocab_size: usize,
    #[serde(default = "default_min_frequency")]
    pub min_frequency: u64,
    /// Teacher training config (relative to this file); its corpus, tokenizer and out are replaced.
    pub teacher: PathBuf,
    /// A trained teacher model folder (relative to this file) used instead of training one, with
    /// its own tokenizer — unless `--train-teacher`, `--teacher` or `--corpus` is given.
    pub default_teacher: Option<PathBuf>,
    /// Distillation config every student starts from (relative to this file); corpus and out replaced.
    pub student: PathBuf,
    /// Teacher layers kept by the pruned students, ENCODER-DECODER.
    pub keep: String,
    /// Training budgets in minutes (unset: the configs' `max_updates` decide alone).
    pub teacher_minutes: Option<f64>,
    pub student_minutes: Option<f64>,
    #[serde(default = "default_precision")]
    pub precision: Precision,
    pub seqkd: SeqKdSettings,
    pub report: ReportSettings,
    /// Test sentences translated through gRPC by every model at the end.
    pub demo_sentences: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeqKdSettings {
    /// Training pairs the teacher translates (0: all).
    pub sentences: usize,
    pub beam: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// Test sentences scored (0: all).
    pub sentences: usize,
    pub latency_sentences: usize,
    pub speed_sentences: usize,
    pub batch_sizes: Vec<usize>,
    /// `exporter report --speed-rounds`.
    pub speed_rounds: usize,
}

fn default_min_frequency() -> u64 {
    2
}
fn default_precision() -> Precision {
    Precision::Fp32
}

impl PipelineConfig {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("--config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("--config {}", path.display()))
    }
}

/// A value as its command-line flag spells it (`small`, `cuda`, `fp32`).
pub(crate) fn flag(value: impl ValueEnum) -> String {
    value.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default()
}

/// First `n` lines of a file.
fn head(path: &Path, n: usize) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    Ok(text.lines().take(n).map(str::to_owned).collect())
}

pub fn run(args: &PipelineArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let config_path =
        args.config.clone().unwrap_or_else(|| format!("configs/pipeline-{}.toml", flag(args.preset)).into());
    let settings = PipelineConfig::read(&config_path)?;
    let config_dir = config_path.parent().unwrap_or(Path::new("."));
    let corpus = args.corpus.clone().unwrap_or_else(|| settings.corpus.clone());
    let out = args.out.clone().unwrap_or_else(|| settings.out.clone());
    let device = flag(args.device);
    println!("xlmc pipeline: settings {}, output {}", config_path.display(), out.display());

    // The teacher: brought (its own tokenizer then), the config's trained one, or trained here.
    let (brought, flag_name) = match (&args.teacher, &settings.default_teacher) {
        (Some(dir), _) => (Some(dir.clone()), "--teacher"),
        (None, Some(dir)) if !args.train_teacher && args.corpus.is_none() => {
            (Some(config_dir.join(dir)), "default_teacher")
        }
        _ => (None, ""),
    };
    // The table is built once the corpus exists (fetched below) and its languages are known.
    let fixed = 3 + usize::from(brought.is_some()); // check, data, [teacher,] serve
    let mut stages = Stages::open(&out, fixed + table_headers(brought.is_some()))?;

    stages.header("check the stack");
    indented(&doctor::check(&DoctorArgs { device: args.device })?.to_string());

    stages.header("data");
    let step = Instant::now();
    if args.corpus.is_some() {
        if Manifest::load_valid(&corpus).is_none() {
            bail!(
                "--corpus {}: no valid corpus (MANIFEST.json missing or changed); build one with `exporter data import`",
                corpus.display()
            );
        }
        println!("      {}: your corpus, valid", corpus.display());
    } else {
        indented(&data::run(&DataCommand::Fetch(FetchArgs { pair: "en-fr".into(), out: corpus.clone() }))?);
    }
    stages.record("data", step, false);
    let manifest = Manifest::load_valid(&corpus).context("the corpus changed while the pipeline ran")?;
    let languages = (manifest.source_language.clone(), manifest.target_language.clone());

    if let Some(dir) = &brought {
        stages.header("teacher");
        if !model_loads(dir) {
            bail!(
                "{flag_name} {}: not a model folder that loads (config.json, weights, tokenizer){}",
                dir.display(),
                if flag_name == "--teacher" { "" } else { "; pass --train-teacher to train one instead" }
            );
        }
        println!("      trained already, with its own tokenizer: {flag_name} {}", dir.display());
        println!("      (--train-teacher trains the tokenizer and a teacher here instead)");
    }
    let plan = plan(&PlanInputs {
        settings: &settings,
        config_dir,
        corpus: &corpus,
        out: &out,
        device: &device,
        languages: (&languages.0, &languages.1),
        teacher: brought.as_deref(),
    })?;
    execute(&plan, &mut stages)?;

    stages.header("serve the bundles and translate through gRPC");
    let step = Instant::now();
    let (test_source, test_target) = split_paths(&corpus, Split::Test, (&languages.0, &languages.1));
    serve_demo::run(&Demo {
        bundles: &plan.bundles,
        models: &plan.models,
        languages: (&languages.0, &languages.1),
        sources: head(&test_source, settings.demo_sentences)?,
        references: head(&test_target, settings.demo_sentences)?,
        serve: args.serve,
    })?;
    stages.record("serve and translate", step, false);

    println!("\npipeline done in {:.1} min:", started.elapsed().as_secs_f64() / 60.0);
    for time in &stages.times {
        let what = if time.skipped { "skipped" } else { "ran" };
        println!("      {:<24} {what:<8} {:>8.1} s", time.name, time.seconds);
    }
    println!("      report  → {}", plan.report.join("report.md").display());
    println!("      bundles → {} (serve them: server --models {})", plan.bundles.display(), plan.bundles.display());
    Ok(())
}
