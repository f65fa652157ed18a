//! `exporter distill --teacher DIR (--student DIR | --arch bigru) --config distill.toml`: trains
//! a student (a pruned teacher, any xlmc model on the same vocabulary, or a fresh BiGRU) with
//! word-level knowledge distillation, online (the teacher runs on every batch) or offline (its
//! top-k from a cache; `exporter distill cache` builds it). `--no-kd` trains the same student on
//! the gold targets only, for the ablation. Same machinery as `train`: checkpoints with exact
//! resume, JSONL log, curves, progress, `--device cuda`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xlmc_teacher_cache::{CacheSpec, Part, TeacherCache, pair_hash};
use xlmc_tokenizer::Tokenizer;
use xlmc_training::{
    GoldObjective, TrainConfig, Trainer,
    distill::{CacheBuild, KdConfig, OfflineKd, OnlineKd, TeacherView, build_cache},
    read_log,
};

use crate::{
    cli::{Arch, CacheArgs, DistillArgs},
    model_dir,
    model_dir::{AnyModel, Trainable},
    torch_device,
    train::{TrainingData, progress_bar, with_overrides, write_curves},
};

/// The TOML file `exporter distill --config` reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    #[serde(default = "crate::train::default_max_sentence_tokens")]
    pub max_sentence_tokens: usize,
    #[serde(default = "crate::train::default_dev_sentences")]
    pub dev_sentences: usize,
    /// `online`: the teacher runs on every batch; `offline`: its top-k log-probabilities are read
    /// from the cache (built first by `exporter distill cache`, or by this command when missing).
    #[serde(default)]
    pub mode: Mode,
    /// Log-probabilities kept per target token in offline mode.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Cache folder (default: `<out>/teacher-cache`).
    pub cache: Option<PathBuf>,
    /// Training pairs per cache shard.
    #[serde(default = "default_shard_pairs")]
    pub cache_shard_pairs: usize,
    /// Sizes of a fresh `--arch bigru` student.
    #[serde(default)]
    pub bigru: BiGruSizes,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BiGruSizes {
    pub emb_dim: i64,
    /// Per encoder direction; the decoder's state is twice as wide.
    pub hidden: i64,
    pub dropout: f64,
}

impl Default for BiGruSizes {
    fn default() -> Self {
        let small = xlmc_bigru::Config::small(0);
        Self { emb_dim: small.emb_dim, hidden: small.hidden, dropout: small.dropout }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Online,
    Offline,
}

fn default_top_k() -> usize {
    8
}
fn default_shard_pairs() -> usize {
    4096
}

impl DistillConfig {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("--config {}", path.display()))?;
        let config: Self = toml::from_str(&text).with_context(|| format!("--config {}", path.display()))?;
        ensure!(config.top_k >= 1, "--config {}: top_k must be at least 1", path.display());
        ensure!(config.cache_shard_pairs >= 1, "--config {}: cache_shard_pairs must be at least 1", path.display());
        Ok(config)
    }

    fn cache_dir(&self) -> PathBuf {
        self.cache.clone().unwrap_or_else(|| self.out.join("teacher-cache"))
    }

    /// Where `distill cache --shard` builds a part: `<cache>/parts/INDEX-of-COUNT`.
    fn parts_dir(&self) -> PathBuf {
        self.cache_dir().join("parts")
    }
}

/// Identifies a teacher's weights, the student's vocabulary and the exact training pairs a cache
/// is valid for.
fn cache_spec(
    teacher_dir: &Path,
    teacher: &TeacherView,
    train: &[xlmc_training::Pair],
    config: &DistillConfig,
) -> CacheSpec {
    let mut hasher = Sha256::new();
    hasher.update(model_dir::weights_fingerprint(teacher_dir));
    hasher.update(teacher.vocabulary_key());
    for (source, target) in train {
        hasher.update(pair_hash(source, target).to_le_bytes());
    }
    CacheSpec {
        key: hex::encode(hasher.finalize()),
        k: config.top_k,
        pairs: train.len(),
        shard_pairs: config.cache_shard_pairs,
    }
}

/// Builds, completes or repairs the teacher cache; returns it opened.
fn ensure_cache(
    teacher: &TeacherView,
    teacher_dir: &Path,
    train: &[xlmc_training::Pair],
    config: &DistillConfig,
    langs: (i64, i64),
) -> anyhow::Result<TeacherCache> {
    let spec = cache_spec(teacher_dir, teacher, train, config);
    let dir = config.cache_dir();
    build_cache_folder(teacher, train, &spec, &dir, None, langs)?;
    TeacherCache::open(&dir, &spec).with_context(|| format!("teacher cache {}", dir.display()))
}

/// Builds the whole cache, or one part of it, in `dir`, with a progress bar and a summary line.
fn build_cache_folder(
    teacher: &TeacherView,
    train: &[xlmc_training::Pair],
    spec: &CacheSpec,
    dir: &Path,
    part: Option<Part>,
    langs: (i64, i64),
) -> anyhow::Result<()> {
    let bar = progress_bar(0, "{pos}/{len} cache shards  eta {eta}");
    let started = std::time::Instant::now();
    let build = CacheBuild { spec, dir, part, batch_pairs: 64 };
    let built = build_cache(teacher, train, build, langs, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64)
    })
    .with_context(|| format!("teacher cache {}", dir.display()))?;
    bar.finish_and_clear();
    let which = part.map_or(String::new(), |p| format!(", part {p}"));
    println!(
        "teacher cache {}: top-{} over {} pairs in {} shards{which} ({built} built now, {:.1} s)",
        dir.display(),
        spec.k,
        spec.pairs,
        spec.shards(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `exporter distill cache`: the teacher's top-k cache for a distillation config, built or
/// repaired (corrupt or missing shards are recomputed) without training.
pub fn run_cache(args: &CacheArgs) -> anyhow::Result<()> {
    let config = DistillConfig::read(&args.config)?;
    let device = torch_device::select(args.device)?;
    let (teacher, teacher_tokenizer) = model_dir::load(&args.teacher, device).context("--teacher")?;
    // The cache holds the teacher's view in the student's ids: a trimmed student has its own.
    let (tokenizer, student_to_teacher) = match &args.student {
        Some(dir) => {
            let tokenizer = Tokenizer::load(dir).with_context(|| format!("--student {}", dir.display()))?;
            let map = student_vocabulary(&teacher_tokenizer, &tokenizer).context("--teacher/--student")?;
            (tokenizer, map)
        }
        None => (teacher_tokenizer, None),
    };
    let data = TrainingData::load(&config.corpus, &tokenizer, config.max_sentence_tokens, config.dev_sentences)?;
    let view = teacher_view(&teacher, student_to_teacher);
    let spec = cache_spec(&args.teacher, &view, &data.train, &config);
    match (args.merge, args.shard) {
        (false, None) => build_cache_folder(&view, &data.train, &spec, &config.cache_dir(), None, data.langs),
        (false, Some(part)) => {
            let dir = config.parts_dir().join(part.folder_name());
            build_cache_folder(&view, &data.train, &spec, &dir, Some(part), data.langs)
        }
        (true, _) => {
            let parts = match &args.parts {
                Some(parts) => parts.clone(),
                None => {
                    let dir = config.parts_dir();
                    xlmc_teacher_cache::part_folders(&dir)
                        .with_context(|| format!("{}: no parts built here", dir.display()))?
                }
            };
            let out = config.cache_dir();
            let shards = xlmc_teacher_cache::merge(&parts, &out, &spec)
                .with_context(|| format!("merging the parts of teacher cache {}", out.display()))?;
            TeacherCache::open(&out, &spec).with_context(|| format!("teacher cache {}", out.display()))?;
            println!("teacher cache {}: {shards} shards merged from {} parts, verified", out.display(), parts.len());
            Ok(())
        }
    }
}

/// How the student's ids relate to the teacher's: `None` when they share one vocabulary,
/// `Some(student id → teacher id)` when the student's is a trimmed subset of the teacher's BPE
/// (`exporter prune --trim-vocab`). Anything else is refused, naming the first differing id.
pub fn student_vocabulary(teacher: &Tokenizer, student: &Tokenizer) -> anyhow::Result<Option<Vec<u32>>> {
    ensure!(
        teacher.languages() == student.languages(),
        "teacher languages {:?} differ from the student's {:?}",
        teacher.languages(),
        student.languages()
    );
    let ids: Vec<u32> = (0..student.vocab_size() as u32).collect();
    let tokens = student.tokens(&ids);
    if student.kept_ids().is_some() && teacher.kept_ids().is_none() {
        ensure!(
            teacher.kind() == student.kind() && teacher.full_vocab_size() == student.full_vocab_size(),
            "the student's trimmed vocabulary comes from another BPE ({} tokens) than the teacher's ({})",
            student.full_vocab_size(),
            teacher.full_vocab_size()
        );
        let map: Option<Vec<u32>> = tokens.iter().map(|token| teacher.token_to_id(token)).collect();
        return match map {
            Some(map) => Ok(Some(map)),
            None => bail!("the student's trimmed vocabulary has tokens the teacher lacks"),
        };
    }
    ensure!(
        teacher.vocab_size() == student.vocab_size(),
        "teacher vocabulary has {} tokens, the student's {}: distillation needs one shared vocabulary",
        teacher.vocab_size(),
        student.vocab_size()
    );
    let teacher_tokens = teacher.tokens(&ids);
    if let Some(id) = (0..ids.len()).find(|&i| teacher_tokens[i] != tokens[i]) {
        bail!(
            "teacher and student vocabularies differ (id {id}: {:?} vs {:?}): distillation needs one shared vocabulary",
            teacher_tokens[id],
            tokens[id]
        );
    }
    Ok(None)
}

fn teacher_view<'t>(teacher: &'t xlmc_transformer::Seq2Seq, student_to_teacher: Option<Vec<u32>>) -> TeacherView<'t> {
    match student_to_teacher {
        Some(map) => TeacherView::trimmed(teacher, map),
        None => TeacherView::new(teacher),
    }
}

pub fn run(args: &DistillArgs) -> anyhow::Result<()> {
    // clap requires all three unless a subcommand is given.
    let (Some(teacher_dir), Some(config_path)) = (&args.teacher, &args.config) else {
        bail!("--teacher and --config are required");
    };
    let config = DistillConfig::read(config_path)?;
    let device = torch_device::select(args.run.device)?;
    let (teacher, teacher_tokenizer) = model_dir::load(teacher_dir, device).context("--teacher")?;
    let (mut student, tokenizer, student_to_teacher) = match (&args.student, args.arch) {
        (Some(dir), _) => {
            let (student, tokenizer) = model_dir::load_any(dir, device).context("--student")?;
            let map = student_vocabulary(&teacher_tokenizer, &tokenizer).context("--teacher/--student")?;
            (student, tokenizer, map)
        }
        (None, Some(Arch::Bigru)) => {
            let sizes = config.bigru;
            let bigru = xlmc_bigru::Config {
                n_words: teacher.config.n_words,
                emb_dim: sizes.emb_dim,
                hidden: sizes.hidden,
                n_langs: teacher.config.n_langs,
                dropout: sizes.dropout,
                pad_index: teacher.config.pad_index,
                eos_index: teacher.config.eos_index,
            };
            (AnyModel::BiGru(Box::new(xlmc_bigru::BiGru::new(bigru, device))), teacher_tokenizer, None)
        }
        (None, None) => bail!("--student or --arch is required"),
    };

    let mut train_config = with_overrides(&config.train, &args.run);
    let TrainingData { train, dev, dropped, langs } =
        TrainingData::load(&config.corpus, &tokenizer, config.max_sentence_tokens, config.dev_sentences)?;
    (train_config.source_lang, train_config.target_lang) = langs;
    let kd = if args.no_kd { KdConfig { alpha: 0.0, ..config.kd } } else { config.kd };
    println!(
        "distilling: {} pairs ({dropped} left out), dev {}; teacher {} parameters, {} student {}; T = {}, α = {}{}",
        train.len(),
        dev.len(),
        teacher.parameters(),
        student.architecture(),
        student.parameters(),
        kd.temperature,
        kd.alpha,
        if args.no_kd { " (--no-kd: gold targets only)" } else { "" }
    );

    let progress = progress_bar(train_config.max_updates as u64, "{pos}/{len} updates  {msg}");
    let detokenize = |ids: &[u32]| tokenizer.decode(ids).unwrap_or_default();
    let label_smoothing = train_config.label_smoothing;
    let trainer = Trainer { config: train_config, dir: config.out.clone(), train: &train, dev: &dev };
    let on_update = |line: &xlmc_training::LogLine| {
        progress.set_position(line.update as u64);
        let bleu = line.dev_bleu.map(|b| format!(" dev BLEU {b:.2}")).unwrap_or_default();
        progress.set_message(format!("loss {:.3} nll {:.3}{bleu}", line.loss, line.nll));
    };
    let mode = if kd.alpha == 0.0 {
        "none"
    } else if config.mode == Mode::Offline {
        "offline"
    } else {
        "online"
    };
    let state = match mode {
        // No teacher at all when it would be weighted by zero.
        "none" => {
            trainer.run_with(student.trainable(), &mut GoldObjective { label_smoothing }, &detokenize, on_update)?
        }
        "offline" => {
            let cache = ensure_cache(&teacher_view(&teacher, student_to_teacher), teacher_dir, &train, &config, langs)?;
            let mut objective = OfflineKd { cache: &cache, pairs: &train, kd, label_smoothing };
            trainer.run_with(student.trainable(), &mut objective, &detokenize, on_update)?
        }
        _ => {
            let mut objective = OnlineKd { teacher: teacher_view(&teacher, student_to_teacher), kd, label_smoothing };
            trainer.run_with(student.trainable(), &mut objective, &detokenize, on_update)?
        }
    };
    progress.finish();
    write_kd_record(&config.out, kd, mode, config.top_k, args)?;

    let final_dir = config.out.join("model");
    model_dir::save_any(&final_dir, &student, &tokenizer)?;
    let log = read_log(&config.out);
    write_curves(&config.out, &log)?;
    let last_bleu = log.iter().rev().find_map(|l| l.dev_bleu).unwrap_or(f64::NAN);
    // Speed of this invocation's updates (the offline-vs-online comparison), evaluation included.
    let seconds = log.last().map_or(0.0, |l| l.elapsed_s);
    let tokens: usize = log.iter().rev().take_while(|l| l.elapsed_s <= seconds).map(|l| l.tokens).sum();
    println!(
        "done: {} updates (KD: {mode}, {:.0} target tokens/s), dev BLEU {last_bleu:.2} (best {:.2}); student → {}",
        state.update,
        tokens as f64 / seconds.max(1e-9),
        state.best_dev_bleu.unwrap_or(f64::NAN),
        final_dir.display()
    );
    Ok(())
}

/// `distill.json` beside the log: what the run distilled from and with which T and α.
fn write_kd_record(out: &Path, kd: KdConfig, mode: &str, top_k: usize, args: &DistillArgs) -> anyhow::Result<()> {
    let record = serde_json::json!({
        "teacher": args.teacher,
        "student_init": args.student,
        "arch": args.arch.map(|_| xlmc_bundle::Architecture::BiGru.name()),
        "mode": mode,
        "top_k": (mode == "offline").then_some(top_k),
        "temperature": kd.temperature,
        "alpha": kd.alpha,
    });
    let path = out.join("distill.json");
    xlmc_atomic_file::write(&path, serde_json::to_string_pretty(&record)?.as_bytes())
        .with_context(|| format!("{}", path.display()))
}
