//! `exporter pipeline`: the README's main command. Data → tokenizer → teacher → prune → word-level
//! KD → seq-KD → BiGRU → ONNX bundles → report → server + gRPC translations, each stage through
//! the same code as its own command. A stage is skipped when its output is valid and was built
//! from the same inputs and settings (`stage_stamps`); an interrupted training stage resumes from
//! its checkpoint.
//!
//! Settings come from `configs/pipeline-<preset>.toml`, which names the teacher and student
//! configs it builds on; the effective config of every training stage is written to
//! `<out>/configs/` and the equivalent command printed, so any stage can be rerun by hand.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, bail};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use xlmc_corpus::{Manifest, Split, split_paths};

use crate::{
    cli::{Command, DataCommand, DistillAction, DoctorArgs, FetchArgs, PipelineArgs, Precision},
    data,
    distill::{self, DistillConfig},
    doctor, export, model_dir, prune, report, seqkd,
    serve_demo::{self, Demo},
    stage_command::StageCommand,
    stage_stamps::{Stages, fingerprint, key},
    tokenizer,
    train::{self, TeacherConfig},
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
fn flag(value: impl ValueEnum) -> String {
    value.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default()
}

const STAGES: usize = 12;

/// A training config as text for its stage key: without `[train] max_minutes`, the time budget,
/// which changes how long a run goes on, not what it is.
fn key_text(config: &impl Serialize) -> anyhow::Result<String> {
    let mut value = toml::Value::try_from(config)?;
    if let Some(train) = value.get_mut("train").and_then(toml::Value::as_table_mut) {
        train.remove("max_minutes");
    }
    Ok(toml::to_string(&value)?)
}

fn write_config(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    xlmc_atomic_file::write(path, text.as_bytes()).with_context(|| format!("{}", path.display()))
}

fn model_loads(dir: &Path) -> bool {
    model_dir::load_any(dir, tch::Device::Cpu).is_ok()
}

fn indented(text: &str) {
    for line in text.lines() {
        println!("      {line}");
    }
}

/// First `n` lines of a file.
/// Prints a stage's command and runs exactly that line, parsed by the CLI's own parser.
fn run_stage(command: &StageCommand) -> anyhow::Result<()> {
    match command.parse()? {
        Command::Tokenizer(tokenizer) => tokenizer::run(&tokenizer),
        Command::Train(args) => train::run(&args),
        Command::Prune(args) => prune::run(&args).map(|text| indented(&text)),
        Command::Distill(distill) => match &distill.action {
            None => distill::run(&distill.train),
            Some(DistillAction::Seqkd(args)) => seqkd::run(args).map(|text| indented(&text)),
            Some(DistillAction::Cache(_)) => bail!("not a pipeline stage: {command}"),
        },
        Command::Export(args) => export::run(&args).map(|text| indented(&text)),
        Command::Report(args) => report::run(&args),
        _ => bail!("not a pipeline stage: {command}"),
    }
}

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
    let mut stages = Stages::open(&out, STAGES)?;

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
    let corpus_fp = fingerprint(&corpus.join(xlmc_corpus::MANIFEST_FILE));

    // The teacher: brought (its own tokenizer then), the config's trained one, or trained here.
    let (brought, flag_name) = match (&args.teacher, &settings.default_teacher) {
        (Some(dir), _) => (Some(dir.clone()), "--teacher"),
        (None, Some(dir)) if !args.train_teacher && args.corpus.is_none() => {
            (Some(config_dir.join(dir)), "default_teacher")
        }
        _ => (None, ""),
    };
    let teacher_dir = match &brought {
        Some(dir) => {
            stages.header("tokenizer");
            println!("      the teacher's own ({flag_name} {})", dir.display());
            stages.header("train teacher");
            if !model_loads(dir) {
                bail!(
                    "{flag_name} {}: not a model folder that loads (config.json, weights, tokenizer){}",
                    dir.display(),
                    if flag_name == "--teacher" { "" } else { "; pass --train-teacher to train one instead" }
                );
            }
            println!("      trained already: {} (--train-teacher trains one here instead)", dir.display());
            dir.clone()
        }
        None => {
            let tokenizer_dir = out.join("tokenizer");
            stages.header("tokenizer (shared BPE)");
            let tokenizer_key =
                key(&[&corpus_fp, &settings.vocab_size.to_string(), &settings.min_frequency.to_string()]);
            let command = StageCommand::new(&["tokenizer", "train"])
                .arg("--corpus", corpus.display())
                .arg("--vocab-size", settings.vocab_size)
                .arg("--min-frequency", settings.min_frequency)
                .arg("--out", tokenizer_dir.display());
            println!("      {command}");
            stages.step(
                "tokenizer",
                &tokenizer_dir,
                &tokenizer_key,
                |dir| xlmc_tokenizer::Tokenizer::load(dir).is_ok(),
                || run_stage(&command),
            )?;

            stages.header("train teacher");
            let mut teacher = TeacherConfig::read(&config_dir.join(&settings.teacher))?;
            teacher.corpus = corpus.clone();
            teacher.tokenizer = tokenizer_dir.clone();
            teacher.out = out.join("teacher");
            teacher.train.max_minutes = settings.teacher_minutes.or(teacher.train.max_minutes);
            let teacher_config = out.join("configs/teacher.toml");
            write_config(&teacher_config, &toml::to_string(&teacher)?)?;
            let teacher_key = key(&[&key_text(&teacher)?, &fingerprint(&tokenizer_dir), &corpus_fp]);
            let command =
                StageCommand::new(&["train"]).arg("--config", teacher_config.display()).arg("--device", &device);
            println!("      {command}");
            stages.step(
                "teacher",
                &teacher.out,
                &teacher_key,
                |dir| model_loads(&dir.join("model")),
                || run_stage(&command),
            )?;
            teacher.out.join("model")
        }
    };
    let teacher_fp = fingerprint(&teacher_dir);

    stages.header(&format!("prune the teacher to {} layers", settings.keep));
    let pruned = out.join(format!("pruned-{}", settings.keep));
    let command = StageCommand::new(&["prune"])
        .arg("--teacher", teacher_dir.display())
        .arg("--keep", &settings.keep)
        .arg("--out", pruned.display())
        .flag_if("--force", true);
    println!("      {command}");
    stages.step("prune", &pruned, &key(&[&teacher_fp, &settings.keep]), model_loads, || run_stage(&command))?;
    let pruned_fp = fingerprint(&pruned);

    let student_base = DistillConfig::read(&config_dir.join(&settings.student))?;
    let student = |name: &str, corpus: &Path| {
        let mut config = student_base.clone();
        config.corpus = corpus.to_owned();
        config.out = out.join(name);
        config.train.max_minutes = settings.student_minutes.or(config.train.max_minutes);
        config
    };
    // One distillation stage: its config written, the command printed, the student trained.
    let distill_stage = |stages: &mut Stages,
                         name: &str,
                         config: &DistillConfig,
                         init: Option<&Path>,
                         no_kd: bool,
                         inputs: &[&str]|
     -> anyhow::Result<()> {
        let path = out.join(format!("configs/{name}.toml"));
        write_config(&path, &toml::to_string(config)?)?;
        let from = match init {
            Some(dir) => format!("--student {}", dir.display()),
            None => "--arch bigru".into(),
        };
        let command = StageCommand::new(&["distill"])
            .arg("--teacher", teacher_dir.display())
            .arg_if("--student", init.map(Path::display))
            .arg_if("--arch", init.is_none().then_some("bigru"))
            .arg("--config", path.display())
            .flag_if("--no-kd", no_kd)
            .arg("--device", &device);
        println!("      {command}");
        let text = key_text(config)?;
        let mut parts = vec![text.as_str(), teacher_fp.as_str(), &from];
        parts.extend_from_slice(inputs);
        let stage_key = key(&parts);
        stages.step(name, &config.out, &stage_key, |dir| model_loads(&dir.join("model")), || run_stage(&command))
    };

    let kd_name = format!("student-{}-kd", settings.keep);
    stages.header("distill: word-level KD into the pruned student");
    let kd = student(&kd_name, &corpus);
    distill_stage(&mut stages, &kd_name, &kd, Some(&pruned), false, &[&pruned_fp, &corpus_fp])?;

    stages.header("sequence-level KD data (the teacher translates the training sources)");
    let seqkd_corpus = out.join("seqkd-corpus");
    let limit = (settings.seqkd.sentences > 0).then_some(settings.seqkd.sentences);
    let command = StageCommand::new(&["distill", "seqkd"])
        .arg("--teacher", teacher_dir.display())
        .arg("--corpus", corpus.display())
        .arg("--out", seqkd_corpus.display())
        .arg("--beam", settings.seqkd.beam)
        .arg_if("--limit", limit)
        .arg("--chunk", 256)
        .arg("--device", &device);
    println!("      {command}");
    let seqkd_key = key(&[&teacher_fp, &corpus_fp, &format!("{limit:?} beam {}", settings.seqkd.beam)]);
    stages.step(
        "seqkd-corpus",
        &seqkd_corpus,
        &seqkd_key,
        |dir| Manifest::load_valid(dir).is_some(),
        || run_stage(&command),
    )?;

    let seqkd_name = format!("student-{}-seqkd", settings.keep);
    stages.header("distill: sequence-level KD (the pruned student on the teacher's outputs)");
    let seqkd_config = student(&seqkd_name, &seqkd_corpus);
    let seqkd_fp = fingerprint(&seqkd_corpus.join(xlmc_corpus::MANIFEST_FILE));
    distill_stage(&mut stages, &seqkd_name, &seqkd_config, Some(&pruned), true, &[&pruned_fp, &seqkd_fp])?;

    let bigru_name = "student-bigru-kd".to_owned();
    stages.header("distill: BiGRU student, word-level KD");
    let bigru = student(&bigru_name, &corpus);
    distill_stage(&mut stages, &bigru_name, &bigru, None, false, &[&corpus_fp])?;

    let precision = flag(settings.precision);
    stages.header(&format!("export ONNX bundles ({precision})"));
    let bundles = out.join("bundles");
    // Name, model folder and its fingerprint (the teacher's is known already).
    let mut models = vec![("teacher".to_owned(), teacher_dir.clone(), teacher_fp.clone())];
    for (name, config) in [(&kd_name, &kd), (&seqkd_name, &seqkd_config), (&bigru_name, &bigru)] {
        let dir = config.out.join("model");
        let fp = fingerprint(&dir);
        models.push((name.clone(), dir, fp));
    }
    let mut bundle_fps = Vec::new();
    for (name, model, model_fp) in &models {
        let bundle = bundles.join(name);
        let export_key = key(&[model_fp, &precision]);
        let command = StageCommand::new(&["export"])
            .arg("--model", model.display())
            .arg("--out", bundle.display())
            .arg("--precision", &precision)
            .flag_if("--force", true);
        println!("      {command}");
        stages.step(
            &format!("bundle {name}"),
            &bundle,
            &export_key,
            |dir| xlmc_bundle::Bundle::open(dir).is_ok(),
            || run_stage(&command),
        )?;
        // A valid bundle's manifest holds the sha256 of each of its files (`Bundle::open` checked them).
        bundle_fps.push(fingerprint(&bundle.join(xlmc_bundle::MANIFEST_FILE)));
    }

    stages.header("report: teacher vs students");
    let report_dir = out.join("report");
    let names: Vec<String> = models.iter().map(|(name, ..)| name.clone()).collect();
    let r = &settings.report;
    let batch_sizes: Vec<String> = r.batch_sizes.iter().map(usize::to_string).collect();
    let command = StageCommand::new(&["report"])
        .arg("--models", names.join(","))
        .arg("--models-dir", bundles.display())
        .arg("--out", report_dir.display())
        .arg("--test", corpus.join("test").display())
        .arg("--source-lang", &languages.0)
        .arg("--target-lang", &languages.1)
        .arg_if("--sentences", (r.sentences > 0).then_some(r.sentences))
        .arg("--batch-size", 32)
        .arg("--beam", 1)
        .arg("--latency-sentences", r.latency_sentences)
        .arg("--speed-sentences", r.speed_sentences)
        .arg("--batch-sizes", batch_sizes.join(","))
        .arg("--device", &device);
    println!("      {command}");
    let report_key = key(&[&bundle_fps.join(","), &corpus_fp, &command.to_string()]);
    stages.step("report", &report_dir, &report_key, |dir| dir.join("report.json").is_file(), || run_stage(&command))?;

    stages.header("serve the bundles and translate through gRPC");
    let step = Instant::now();
    let (test_source, test_target) = split_paths(&corpus, Split::Test, (&languages.0, &languages.1));
    serve_demo::run(&Demo {
        bundles: &bundles,
        models: &names,
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
    println!("      report  → {}", report_dir.join("report.md").display());
    println!("      bundles → {} (serve them: server --models {})", bundles.display(), bundles.display());
    Ok(())
}
