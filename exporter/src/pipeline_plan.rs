//! The pipeline as a table of stages. Every stage after the data is a [`Stage`]: its name, the
//! inputs its key is made of, how its output is checked, the config file it writes and the one
//! command it runs. [`plan`] builds the table from the settings without running anything, and
//! [`execute`] runs it through the stage stamps, printing each command and then running exactly
//! that line (parsed by the CLI's own parser) — so the printed line and the run cannot differ.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::{
    cli::{Command, DistillAction},
    distill::{self, DistillConfig},
    export, model_dir,
    pipeline::PipelineConfig,
    prune, report, seqkd,
    stage_command::StageCommand,
    stage_stamps::{Stages, fingerprint, key},
    tokenizer,
    train::{self, TeacherConfig},
};

/// One stage of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The numbered section it opens, if any (the bundle exports share one).
    pub header: Option<String>,
    /// Its name in the stamps file.
    pub name: String,
    /// Its output folder.
    pub out: PathBuf,
    /// What its key is made of: the output is rebuilt when any of these changes.
    pub key: Vec<KeyPart>,
    pub output: Output,
    /// A config file written before the stage runs (its text is part of the key).
    pub config: Option<ConfigFile>,
    pub command: StageCommand,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    Text(String),
    /// A file's or folder's fingerprint, taken when the stage is about to run (an earlier stage
    /// may build it).
    Fingerprint(PathBuf),
    /// Several fingerprints, joined by commas.
    Fingerprints(Vec<PathBuf>),
}

/// What a stage makes, and so how its output is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Tokenizer,
    /// A model folder that loads.
    Model,
    /// A training run's folder, whose `model/` loads.
    TrainingRun,
    Corpus,
    Bundle,
    Report,
}

impl Output {
    pub fn is_valid(self, dir: &Path) -> bool {
        match self {
            Output::Tokenizer => xlmc_tokenizer::Tokenizer::load(dir).is_ok(),
            Output::Model => model_loads(dir),
            Output::TrainingRun => model_loads(&dir.join("model")),
            Output::Corpus => xlmc_corpus::Manifest::load_valid(dir).is_some(),
            Output::Bundle => xlmc_bundle::Bundle::open(dir).is_ok(),
            Output::Report => dir.join("report.json").is_file(),
        }
    }
}

pub fn model_loads(dir: &Path) -> bool {
    model_dir::load_any(dir, tch::Device::Cpu).is_ok()
}

impl Stage {
    /// The key from its parts, fingerprints taken now.
    pub fn key(&self) -> String {
        let parts: Vec<String> = self
            .key
            .iter()
            .map(|part| match part {
                KeyPart::Text(text) => text.clone(),
                KeyPart::Fingerprint(path) => fingerprint(path),
                KeyPart::Fingerprints(paths) => paths.iter().map(|p| fingerprint(p)).collect::<Vec<_>>().join(","),
            })
            .collect();
        key(&parts.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

/// What the table is built from.
#[derive(Debug)]
pub struct PlanInputs<'a> {
    pub settings: &'a PipelineConfig,
    /// The folder of the settings file (the configs it names are relative to it).
    pub config_dir: &'a Path,
    pub corpus: &'a Path,
    pub out: &'a Path,
    pub device: &'a str,
    pub languages: (&'a str, &'a str),
    /// A trained teacher to start from (with its own tokenizer); `None` trains one.
    pub teacher: Option<&'a Path>,
}

/// The table, and where its results land.
#[derive(Debug)]
pub struct Plan {
    pub stages: Vec<Stage>,
    pub bundles: PathBuf,
    /// Model names, the teacher first (the bundles' folder names).
    pub models: Vec<String>,
    pub report: PathBuf,
}

/// The sections [`plan`] makes, known before the corpus is (the stage counter prints it first):
/// tokenizer and teacher unless one is brought, prune, three students, seq-KD data, bundles,
/// report.
pub fn table_headers(teacher_brought: bool) -> usize {
    if teacher_brought { 7 } else { 9 }
}

/// A training config as text for its stage key: without `[train] max_minutes`, the time budget,
/// which changes how long a run goes on, not what it is.
fn key_text(config: &impl Serialize) -> anyhow::Result<String> {
    let mut value = toml::Value::try_from(config)?;
    if let Some(train) = value.get_mut("train").and_then(toml::Value::as_table_mut) {
        train.remove("max_minutes");
    }
    Ok(toml::to_string(&value)?)
}

pub fn plan(inputs: &PlanInputs<'_>) -> anyhow::Result<Plan> {
    let PlanInputs { settings, config_dir, corpus, out, device, languages, .. } = *inputs;
    let corpus_manifest = corpus.join(xlmc_corpus::MANIFEST_FILE);
    let mut stages = Vec::new();

    let teacher_dir = match inputs.teacher {
        Some(dir) => dir.to_owned(),
        None => {
            let tokenizer_dir = out.join("tokenizer");
            stages.push(Stage {
                header: Some("tokenizer (shared BPE)".into()),
                name: "tokenizer".into(),
                out: tokenizer_dir.clone(),
                key: vec![
                    KeyPart::Fingerprint(corpus_manifest.clone()),
                    KeyPart::Text(settings.vocab_size.to_string()),
                    KeyPart::Text(settings.min_frequency.to_string()),
                ],
                output: Output::Tokenizer,
                config: None,
                command: StageCommand::new(&["tokenizer", "train"])
                    .arg("--corpus", corpus.display())
                    .arg("--vocab-size", settings.vocab_size)
                    .arg("--min-frequency", settings.min_frequency)
                    .arg("--out", tokenizer_dir.display()),
            });
            let mut teacher = TeacherConfig::read(&config_dir.join(&settings.teacher))?;
            teacher.corpus = corpus.to_owned();
            teacher.tokenizer = tokenizer_dir.clone();
            teacher.out = out.join("teacher");
            teacher.train.max_minutes = settings.teacher_minutes.or(teacher.train.max_minutes);
            let path = out.join("configs/teacher.toml");
            stages.push(Stage {
                header: Some("train teacher".into()),
                name: "teacher".into(),
                out: teacher.out.clone(),
                key: vec![
                    KeyPart::Text(key_text(&teacher)?),
                    KeyPart::Fingerprint(tokenizer_dir),
                    KeyPart::Fingerprint(corpus_manifest.clone()),
                ],
                output: Output::TrainingRun,
                config: Some(ConfigFile { path: path.clone(), text: toml::to_string(&teacher)? }),
                command: StageCommand::new(&["train"]).arg("--config", path.display()).arg("--device", device),
            });
            teacher.out.join("model")
        }
    };
    let teacher_fp = KeyPart::Fingerprint(teacher_dir.clone());

    let pruned = out.join(format!("pruned-{}", settings.keep));
    stages.push(Stage {
        header: Some(format!("prune the teacher to {} layers", settings.keep)),
        name: "prune".into(),
        out: pruned.clone(),
        key: vec![teacher_fp.clone(), KeyPart::Text(settings.keep.clone())],
        output: Output::Model,
        config: None,
        command: StageCommand::new(&["prune"])
            .arg("--teacher", teacher_dir.display())
            .arg("--keep", &settings.keep)
            .arg("--out", pruned.display())
            .flag_if("--force", true),
    });

    let student_base = DistillConfig::read(&config_dir.join(&settings.student))?;
    // One distillation stage: `init` is the pruned student (None: a fresh BiGRU).
    let student = |header: &str, name: &str, corpus: &Path, init: Option<&Path>, no_kd: bool, inputs: Vec<KeyPart>| {
        let mut config = student_base.clone();
        config.corpus = corpus.to_owned();
        config.out = out.join(name);
        config.train.max_minutes = settings.student_minutes.or(config.train.max_minutes);
        let path = out.join(format!("configs/{name}.toml"));
        let from = match init {
            Some(dir) => format!("--student {}", dir.display()),
            None => "--arch bigru".into(),
        };
        let mut key = vec![KeyPart::Text(key_text(&config)?), teacher_fp.clone(), KeyPart::Text(from)];
        key.extend(inputs);
        anyhow::Ok(Stage {
            header: Some(header.to_owned()),
            name: name.to_owned(),
            out: config.out.clone(),
            key,
            output: Output::TrainingRun,
            config: Some(ConfigFile { path: path.clone(), text: toml::to_string(&config)? }),
            command: StageCommand::new(&["distill"])
                .arg("--teacher", teacher_dir.display())
                .arg_if("--student", init.map(Path::display))
                .arg_if("--arch", init.is_none().then_some("bigru"))
                .arg("--config", path.display())
                .flag_if("--no-kd", no_kd)
                .arg("--device", device),
        })
    };

    let kd_name = format!("student-{}-kd", settings.keep);
    stages.push(student(
        "distill: word-level KD into the pruned student",
        &kd_name,
        corpus,
        Some(&pruned),
        false,
        vec![KeyPart::Fingerprint(pruned.clone()), KeyPart::Fingerprint(corpus_manifest.clone())],
    )?);

    let seqkd_corpus = out.join("seqkd-corpus");
    let limit = (settings.seqkd.sentences > 0).then_some(settings.seqkd.sentences);
    stages.push(Stage {
        header: Some("sequence-level KD data (the teacher translates the training sources)".into()),
        name: "seqkd-corpus".into(),
        out: seqkd_corpus.clone(),
        key: vec![
            teacher_fp.clone(),
            KeyPart::Fingerprint(corpus_manifest.clone()),
            KeyPart::Text(format!("{limit:?} beam {}", settings.seqkd.beam)),
        ],
        output: Output::Corpus,
        config: None,
        command: StageCommand::new(&["distill", "seqkd"])
            .arg("--teacher", teacher_dir.display())
            .arg("--corpus", corpus.display())
            .arg("--out", seqkd_corpus.display())
            .arg("--beam", settings.seqkd.beam)
            .arg_if("--limit", limit)
            .arg("--chunk", 256)
            .arg("--device", device),
    });

    let seqkd_name = format!("student-{}-seqkd", settings.keep);
    stages.push(student(
        "distill: sequence-level KD (the pruned student on the teacher's outputs)",
        &seqkd_name,
        &seqkd_corpus,
        Some(&pruned),
        true,
        vec![KeyPart::Fingerprint(pruned.clone()), KeyPart::Fingerprint(seqkd_corpus.join(xlmc_corpus::MANIFEST_FILE))],
    )?);

    let bigru_name = "student-bigru-kd".to_owned();
    stages.push(student(
        "distill: BiGRU student, word-level KD",
        &bigru_name,
        corpus,
        None,
        false,
        vec![KeyPart::Fingerprint(corpus_manifest.clone())],
    )?);

    let precision = crate::pipeline::flag(settings.precision);
    let bundles = out.join("bundles");
    let mut models = vec![("teacher".to_owned(), teacher_dir.clone())];
    for name in [&kd_name, &seqkd_name, &bigru_name] {
        models.push((name.clone(), out.join(name).join("model")));
    }
    for (i, (name, model)) in models.iter().enumerate() {
        let bundle = bundles.join(name);
        stages.push(Stage {
            header: (i == 0).then(|| format!("export ONNX bundles ({precision})")),
            name: format!("bundle {name}"),
            out: bundle.clone(),
            key: vec![KeyPart::Fingerprint(model.clone()), KeyPart::Text(precision.clone())],
            output: Output::Bundle,
            config: None,
            command: StageCommand::new(&["export"])
                .arg("--model", model.display())
                .arg("--out", bundle.display())
                .arg("--precision", &precision)
                .flag_if("--force", true),
        });
    }

    let report_dir = out.join("report");
    let names: Vec<String> = models.iter().map(|(name, _)| name.clone()).collect();
    let r = &settings.report;
    let batch_sizes: Vec<String> = r.batch_sizes.iter().map(usize::to_string).collect();
    let command = StageCommand::new(&["report"])
        .arg("--models", names.join(","))
        .arg("--models-dir", bundles.display())
        .arg("--out", report_dir.display())
        .arg("--test", corpus.join("test").display())
        .arg("--source-lang", languages.0)
        .arg("--target-lang", languages.1)
        .arg_if("--sentences", (r.sentences > 0).then_some(r.sentences))
        .arg("--batch-size", 32)
        .arg("--beam", 1)
        .arg("--latency-sentences", r.latency_sentences)
        .arg("--speed-sentences", r.speed_sentences)
        .arg("--batch-sizes", batch_sizes.join(","))
        .arg("--speed-rounds", r.speed_rounds)
        .arg("--device", device);
    stages.push(Stage {
        header: Some("report: teacher vs students".into()),
        name: "report".into(),
        out: report_dir.clone(),
        key: vec![
            // A valid bundle's manifest holds the sha256 of each of its files (`Bundle::open` checks them).
            KeyPart::Fingerprints(names.iter().map(|n| bundles.join(n).join(xlmc_bundle::MANIFEST_FILE)).collect()),
            KeyPart::Fingerprint(corpus_manifest),
            KeyPart::Text(command.to_string()),
        ],
        output: Output::Report,
        config: None,
        command,
    });
    Ok(Plan { stages, bundles, models: names, report: report_dir })
}

/// Runs the table in order: each stage's config written, its command printed, and — unless its
/// output is valid and stamped with the same key — that command run.
pub fn execute(plan: &Plan, stamps: &mut Stages) -> anyhow::Result<()> {
    for stage in &plan.stages {
        if let Some(header) = &stage.header {
            stamps.header(header);
        }
        if let Some(config) = &stage.config {
            write_config(&config.path, &config.text)?;
        }
        println!("      {}", stage.command);
        let output = stage.output;
        stamps.step(&stage.name, &stage.out, &stage.key(), |dir| output.is_valid(dir), || run(&stage.command))?;
    }
    Ok(())
}

fn write_config(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    xlmc_atomic_file::write(path, text.as_bytes()).with_context(|| format!("{}", path.display()))
}

pub fn indented(text: &str) {
    for line in text.lines() {
        println!("      {line}");
    }
}

/// Runs exactly the printed line, parsed by the CLI's own parser.
fn run(command: &StageCommand) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests;
