//! `exporter train --config teacher.toml`: trains an XLM teacher (or any xlmc Transformer) on a
//! corpus folder with a shared tokenizer; resumes from its checkpoint when rerun.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use xlmc_corpus::{Manifest, Split, split_paths};
use xlmc_tokenizer::Tokenizer;
use xlmc_training::{Pair, TrainConfig, Trainer, has_checkpoint, read_log};
use xlmc_transformer::{Config, Seq2Seq};

use crate::{
    cli::{TrainArgs, TrainingRun},
    model_dir::{self, RunRecord, TrainingRecord},
    plot::{LineChart, Series, line_charts},
    torch_device,
};

/// The TOML file `exporter train --config` reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherConfig {
    /// Corpus folder (`exporter data fetch|import`).
    pub corpus: PathBuf,
    /// Tokenizer folder (`exporter tokenizer train`).
    pub tokenizer: PathBuf,
    /// Output folder: `checkpoint/`, `train_log.jsonl`, `curves.svg`, and the final `model/`.
    pub out: PathBuf,
    /// `tiny`, `small` or `base`; `[model]` entries override single fields.
    #[serde(default = "default_preset")]
    pub preset: String,
    #[serde(default)]
    pub model: ModelOverrides,
    #[serde(default)]
    pub train: TrainConfig,
    /// Pairs with a longer side (in tokens) are left out of training.
    #[serde(default = "default_max_sentence_tokens")]
    pub max_sentence_tokens: usize,
    /// Dev sentences used for validation loss and BLEU during training.
    #[serde(default = "default_dev_sentences")]
    pub dev_sentences: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOverrides {
    pub emb_dim: Option<i64>,
    pub n_enc_layers: Option<i64>,
    pub n_dec_layers: Option<i64>,
    pub n_heads: Option<i64>,
    pub dropout: Option<f64>,
    pub attention_dropout: Option<f64>,
    pub sinusoidal_embeddings: Option<bool>,
}

fn default_preset() -> String {
    "small".into()
}
pub(crate) fn default_max_sentence_tokens() -> usize {
    100
}
pub(crate) fn default_dev_sentences() -> usize {
    500
}

impl TeacherConfig {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("--config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("--config {}", path.display()))
    }

    pub fn model_config(&self, n_words: i64) -> anyhow::Result<Config> {
        let mut config = match self.preset.as_str() {
            "tiny" => Config::tiny(n_words),
            "small" => Config::small(n_words),
            "base" => Config::base(n_words),
            other => bail!("preset `{other}`: expected tiny, small or base"),
        };
        let m = &self.model;
        config.emb_dim = m.emb_dim.unwrap_or(config.emb_dim);
        config.n_enc_layers = m.n_enc_layers.unwrap_or(config.n_enc_layers);
        config.n_dec_layers = m.n_dec_layers.unwrap_or(config.n_dec_layers);
        config.n_heads = m.n_heads.unwrap_or(config.n_heads);
        config.dropout = m.dropout.unwrap_or(config.dropout);
        config.attention_dropout = m.attention_dropout.unwrap_or(config.attention_dropout);
        config.sinusoidal_embeddings = m.sinusoidal_embeddings.unwrap_or(config.sinusoidal_embeddings);
        config.validate().map_err(|e| anyhow::anyhow!("[model]: {e}"))?;
        Ok(config)
    }
}

/// Encodes a split into id pairs, leaving out empty and over-long ones; returns them and the
/// number left out.
/// `[train]` settings with the command line's `--max-updates` / `--max-minutes` applied.
pub(crate) fn with_overrides(train: &TrainConfig, run: &TrainingRun) -> TrainConfig {
    TrainConfig {
        max_updates: run.max_updates.unwrap_or(train.max_updates),
        max_minutes: run.max_minutes.or(train.max_minutes),
        ..train.clone()
    }
}

/// A progress bar `elapsed [=====>   ] <what>` (hidden when stderr is not a terminal).
pub(crate) fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!("{{elapsed_precise}} [{{bar:30}}] {what}"))
            .expect("progress template")
            .progress_chars("=> "),
    );
    bar
}

/// A corpus's train and dev pairs encoded with a tokenizer, and the language ids to train with.
pub(crate) struct TrainingData {
    pub train: Vec<Pair>,
    pub dev: Vec<Pair>,
    /// Train pairs left out (empty or too long).
    pub dropped: usize,
    pub langs: (i64, i64),
}

impl TrainingData {
    pub fn load(
        corpus: &Path,
        tokenizer: &Tokenizer,
        max_sentence_tokens: usize,
        dev_sentences: usize,
    ) -> anyhow::Result<Self> {
        let Some(manifest) = Manifest::load_valid(corpus) else {
            bail!(
                "corpus {}: no valid corpus (MANIFEST.json missing or changed); run `exporter data fetch`",
                corpus.display()
            );
        };
        let langs = (
            i64::from(tokenizer.language_id(&manifest.source_language)?),
            i64::from(tokenizer.language_id(&manifest.target_language)?),
        );
        let (train, dropped) =
            encode_split(tokenizer, corpus, &manifest, Split::Train, max_sentence_tokens, usize::MAX)?;
        if train.is_empty() {
            bail!(
                "corpus {}: no training pairs ({dropped} left out: empty or over {max_sentence_tokens} tokens)",
                corpus.display()
            );
        }
        let (dev, _) = encode_split(tokenizer, corpus, &manifest, Split::Dev, max_sentence_tokens, dev_sentences)?;
        Ok(Self { train, dev, dropped, langs })
    }
}

fn encode_split(
    tokenizer: &Tokenizer,
    corpus: &Path,
    manifest: &Manifest,
    split: Split,
    max_tokens: usize,
    limit: usize,
) -> anyhow::Result<(Vec<Pair>, usize)> {
    let (source_path, target_path) = split_paths(corpus, split, (&manifest.source_language, &manifest.target_language));
    let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("{}", p.display()));
    let (sources, targets) = (read(&source_path)?, read(&target_path)?);
    let sources: Vec<&str> = sources.lines().take(limit).collect();
    let targets: Vec<&str> = targets.lines().take(limit).collect();
    let (source_ids, target_ids) = (tokenizer.encode_batch(&sources)?, tokenizer.encode_batch(&targets)?);
    let total = source_ids.len();
    let pairs: Vec<Pair> = source_ids
        .into_iter()
        .zip(target_ids)
        .filter(|(s, t)| !s.is_empty() && !t.is_empty() && s.len() <= max_tokens && t.len() <= max_tokens)
        .collect();
    let dropped = total - pairs.len();
    Ok((pairs, dropped))
}

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let config = TeacherConfig::read(&args.config)?;
    let tokenizer =
        Tokenizer::load(&config.tokenizer).with_context(|| format!("tokenizer {}", config.tokenizer.display()))?;
    let mut train_config = with_overrides(&config.train, &args.run);
    let TrainingData { train, dev, dropped, langs } =
        TrainingData::load(&config.corpus, &tokenizer, config.max_sentence_tokens, config.dev_sentences)?;
    (train_config.source_lang, train_config.target_lang) = langs;
    println!(
        "training on {} pairs ({dropped} left out: empty or over {} tokens), validating on {}",
        train.len(),
        config.max_sentence_tokens,
        dev.len()
    );

    let device = torch_device::select(args.run.device)?;
    let model_config = config.model_config(tokenizer.vocab_size() as i64)?;
    let mut model = Seq2Seq::new(model_config, device)?;
    println!("model: {} parameters, device {device:?}", model.parameters());
    let start = Start::decide(&config, args, &mut model, &tokenizer)?;
    train_config.schedule_offset = start.record.updates;

    let progress = progress_bar(train_config.max_updates as u64, "{pos}/{len} updates  {msg}");
    let detokenize = |ids: &[u32]| tokenizer.decode(ids).unwrap_or_default();
    let trainer = Trainer { config: train_config, dir: config.out.clone(), train: &train, dev: &dev };
    let state = trainer.run(&mut model, &detokenize, |line| {
        progress.set_position(line.update as u64);
        let bleu = line.dev_bleu.map(|b| format!(" dev BLEU {b:.2}")).unwrap_or_default();
        progress.set_message(format!("loss {:.3} lr {:.2e}{bleu}", line.loss, line.lr));
    })?;
    progress.finish();

    let final_dir = config.out.join("model");
    model_dir::save(&final_dir, &model, &tokenizer)?;
    let log = read_log(&config.out);
    let this_run = RunRecord {
        config: args.config.display().to_string(),
        updates: state.update,
        target_tokens: log.iter().map(|l| l.tokens as u64).sum(),
        // `elapsed_s` restarts with each invocation: sum each stretch's last value.
        train_seconds: log
            .windows(2)
            .filter(|w| w[1].elapsed_s < w[0].elapsed_s)
            .map(|w| w[0].elapsed_s)
            .chain(log.last().map(|l| l.elapsed_s))
            .sum(),
        init_from: start.from.clone(),
    };
    start.record.then(this_run).write(&final_dir)?;
    write_curves(&config.out, &log)?;
    let last_bleu = log.iter().rev().find_map(|l| l.dev_bleu).unwrap_or(f64::NAN);
    println!(
        "done: {} updates, dev BLEU {last_bleu:.2} (best {:.2}); model → {}; curves → {}",
        state.update,
        state.best_dev_bleu.unwrap_or(f64::NAN),
        final_dir.display(),
        config.out.join("curves.svg").display()
    );
    Ok(())
}

/// Where a run's weights started: fresh, or another model folder (`--init-from`) and the training
/// it had. Kept in `out/init_from.json` so a rerun that resumes from the checkpoint (without the
/// flag) still knows.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Start {
    from: Option<String>,
    record: TrainingRecord,
}

const START_FILE: &str = "init_from.json";

impl Start {
    fn decide(
        config: &TeacherConfig,
        args: &TrainArgs,
        model: &mut Seq2Seq,
        tokenizer: &Tokenizer,
    ) -> anyhow::Result<Self> {
        let path = config.out.join(START_FILE);
        if has_checkpoint(&config.out) {
            if let Some(init) = &args.init_from {
                println!(
                    "--init-from {}: not used, {} holds a checkpoint to resume",
                    init.display(),
                    config.out.display()
                );
            }
            return Ok(model_dir::read_json(&path)?.unwrap_or_default());
        }
        let Some(init) = &args.init_from else {
            if path.exists() {
                std::fs::remove_file(&path).with_context(|| format!("{}", path.display()))?;
            }
            return Ok(Self::default());
        };
        let record = init_from(model, init, tokenizer, &config.tokenizer)?;
        println!(
            "starting from {} ({} updates); the schedule goes on from there after a {}-update ramp",
            init.display(),
            record.updates,
            config.train.rewarmup_updates
        );
        let start = Self { from: Some(init.display().to_string()), record };
        std::fs::create_dir_all(&config.out).with_context(|| format!("{}", config.out.display()))?;
        model_dir::write_json(&path, &start)?;
        Ok(start)
    }
}

/// Copies the weights of the model folder `init` into `model` after checking that its tokenizer
/// is the config's and its shape the config's; returns its training record.
fn init_from(
    model: &mut Seq2Seq,
    init: &Path,
    tokenizer: &Tokenizer,
    tokenizer_dir: &Path,
) -> anyhow::Result<TrainingRecord> {
    let theirs = Tokenizer::load(init).with_context(|| format!("--init-from {}: tokenizer", init.display()))?;
    let all = |t: &Tokenizer| t.tokens(&(0..t.vocab_size() as u32).collect::<Vec<_>>());
    if theirs.languages() != tokenizer.languages() || all(&theirs) != all(tokenizer) {
        bail!(
            "--init-from {}: its tokenizer ({} tokens, languages {:?}) is not the config's tokenizer {} ({} tokens, {:?}); train with the model's own",
            init.display(),
            theirs.vocab_size(),
            theirs.languages(),
            tokenizer_dir.display(),
            tokenizer.vocab_size(),
            tokenizer.languages()
        );
    }
    model.init_from(init).with_context(|| format!("--init-from {}", init.display()))?;
    Ok(TrainingRecord::read(init)?.unwrap_or_default())
}

pub(crate) fn write_curves(out: &Path, log: &[xlmc_training::LogLine]) -> anyhow::Result<()> {
    // A point per update is noise at a glance: the train loss is averaged over windows.
    let window = (log.len() / 200).max(1);
    let loss = Series {
        name: "train loss (smoothed)",
        points: log
            .chunks(window)
            .map(|c| (c[c.len() - 1].update as f64, c.iter().map(|l| l.loss).sum::<f64>() / c.len() as f64))
            .collect(),
        markers: false,
    };
    let valid = Series {
        name: "valid NLL",
        points: log.iter().filter_map(|l| l.valid_nll.map(|v| (l.update as f64, v))).collect(),
        markers: true,
    };
    let bleu = Series {
        name: "dev BLEU (greedy)",
        points: log.iter().filter_map(|l| l.dev_bleu.map(|b| (l.update as f64, b))).collect(),
        markers: true,
    };
    let svg = line_charts(&[
        LineChart {
            title: "training loss".into(),
            x_label: "updates",
            y_label: "nats per target token",
            series: vec![loss, valid],
        },
        LineChart { title: "dev BLEU per evaluation".into(), x_label: "updates", y_label: "BLEU", series: vec![bleu] },
    ]);
    let path = out.join("curves.svg");
    xlmc_atomic_file::write(&path, svg.as_bytes()).with_context(|| format!("{}", path.display()))
}
