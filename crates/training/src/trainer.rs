//! The training loop: accumulation, clipping, evaluation, checkpoints with exact resume.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Instant,
};

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::{
    TrainError, TrainableModel,
    batching::batches,
    loss::label_smoothed,
    optimizer::{Adam, inverse_sqrt_lr},
    snapshots,
};

/// What one batch costs: the loss to minimise and the plain NLL of the gold tokens, both summed
/// over the batch's target tokens, and how many tokens that is.
#[derive(Debug)]
pub struct BatchLoss {
    pub loss: Tensor,
    pub nll: Tensor,
    pub tokens: usize,
}

/// The training objective: gold cross-entropy for a teacher, distillation for a student.
/// `batch` holds the indices of `pairs` in the training set (caches are keyed by them).
pub trait Objective {
    fn batch_loss(
        &mut self,
        model: &dyn TrainableModel,
        batch: &[usize],
        pairs: &[(&[u32], &[u32])],
        langs: (i64, i64),
        train: bool,
    ) -> Result<BatchLoss, TrainError>;
}

/// Label-smoothed cross-entropy against the gold targets.
#[derive(Debug, Clone, Copy)]
pub struct GoldObjective {
    pub label_smoothing: f64,
}

impl Objective for GoldObjective {
    fn batch_loss(
        &mut self,
        model: &dyn TrainableModel,
        _batch: &[usize],
        pairs: &[(&[u32], &[u32])],
        langs: (i64, i64),
        train: bool,
    ) -> Result<BatchLoss, TrainError> {
        let (logits, targets) = model.teacher_forced(pairs, langs, train);
        let (loss, nll) = label_smoothed(&logits, &targets, self.label_smoothing);
        Ok(BatchLoss { loss, nll, tokens: targets.size()[0] as usize })
    }
}

const CHECKPOINT: &str = "checkpoint";
const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const LOG_FILE: &str = "train_log.jsonl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Padded tokens per batch (longer side).
    pub max_tokens: usize,
    /// Batches per update (gradient accumulation).
    pub accumulate: usize,
    pub lr: f64,
    pub warmup_updates: i64,
    pub label_smoothing: f64,
    /// Global gradient-norm clip; 0 = off.
    pub clip_norm: f64,
    pub max_updates: i64,
    pub eval_every: i64,
    pub checkpoint_every: i64,
    /// Write the weights to `snapshots/u{update}/` every this many updates (0: never), for
    /// checkpoint averaging; `keep_snapshots` keeps the newest few (0: all).
    pub snapshot_every: i64,
    pub keep_snapshots: usize,
    /// Stop (evaluate, checkpoint) once this invocation has trained this long; a rerun goes on
    /// from there. For fixed-size GPU slots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_minutes: Option<f64>,
    pub seed: u64,
    pub source_lang: i64,
    pub target_lang: i64,
    /// Updates the starting weights already had (`exporter train --init-from` sets it from the
    /// model's `training.json`): the inverse-square-root decay goes on from there instead of
    /// climbing to `lr` again, after a linear ramp of `rewarmup_updates` for the fresh Adam
    /// moments. 0: a run from scratch.
    #[serde(skip_serializing_if = "is_zero")]
    pub schedule_offset: i64,
    pub rewarmup_updates: i64,
    /// The type the model's matrix products run in; weights, optimizer and loss stay fp32.
    pub matmul_precision: MatmulPrecision,
}

/// `fp32`, or `bf16`: mixed precision (bf16 products with fp32 accumulation, fp32 master
/// weights) — ≈ 5× faster matrix products on CPUs with AVX-512 BF16 (Zen 4, Sapphire Rapids)
/// and on GPUs; on CPUs without it libtorch emulates bf16 and is slower than fp32.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatmulPrecision {
    #[default]
    Fp32,
    Bf16,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            max_tokens: 2000,
            accumulate: 1,
            lr: 5e-4,
            warmup_updates: 4000,
            label_smoothing: 0.1,
            clip_norm: 5.0,
            max_updates: 100_000,
            eval_every: 1000,
            checkpoint_every: 1000,
            snapshot_every: 0,
            keep_snapshots: 0,
            max_minutes: None,
            seed: 0,
            source_lang: 0,
            target_lang: 1,
            schedule_offset: 0,
            rewarmup_updates: 100,
            matmul_precision: MatmulPrecision::Fp32,
        }
    }
}

impl TrainConfig {
    /// Learning rate of the update after `update` of this run, whose weights had
    /// `schedule_offset` updates when it started.
    pub fn lr_at(&self, schedule_offset: i64, update: i64) -> f64 {
        let lr = inverse_sqrt_lr(self.lr, self.warmup_updates, schedule_offset + update);
        if schedule_offset == 0 {
            return lr;
        }
        lr * ((update + 1) as f64 / self.rewarmup_updates.max(1) as f64).min(1.0)
    }
}

/// Where training is; saved with every checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub update: i64,
    pub epoch: u64,
    /// Batches of `epoch` already consumed.
    pub batch_in_epoch: usize,
    pub best_dev_bleu: Option<f64>,
    /// [`TrainConfig::schedule_offset`] of the run, kept so a resumed run keeps its schedule.
    #[serde(default)]
    pub schedule_offset: i64,
}

/// One line of `train_log.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub update: i64,
    pub epoch: u64,
    pub lr: f64,
    pub loss: f64,
    pub nll: f64,
    pub tokens: usize,
    pub grad_norm: f64,
    pub elapsed_s: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub valid_nll: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dev_bleu: Option<f64>,
}

pub type Pair = (Vec<u32>, Vec<u32>);

/// Turns generated ids back into text for dev BLEU.
pub type Detokenize<'a> = &'a dyn Fn(&[u32]) -> String;

#[derive(Debug)]
pub struct Trainer<'a> {
    pub config: TrainConfig,
    pub dir: PathBuf,
    pub train: &'a [Pair],
    pub dev: &'a [Pair],
}

impl Trainer<'_> {
    /// Trains `model` on the gold targets until `max_updates`, resuming from `dir/checkpoint`
    /// when it exists. `on_update` is called after every update (progress bars).
    pub fn run(
        &self,
        model: &mut dyn TrainableModel,
        detokenize: Detokenize<'_>,
        on_update: impl FnMut(&LogLine),
    ) -> Result<TrainState, TrainError> {
        let mut gold = GoldObjective { label_smoothing: self.config.label_smoothing };
        self.run_with(model, &mut gold, detokenize, on_update)
    }

    /// [`Trainer::run`] with any objective (distillation).
    pub fn run_with(
        &self,
        model: &mut dyn TrainableModel,
        objective: &mut dyn Objective,
        detokenize: Detokenize<'_>,
        mut on_update: impl FnMut(&LogLine),
    ) -> Result<TrainState, TrainError> {
        if self.train.is_empty() {
            return Err(TrainError::NoTrainingPairs);
        }
        model.set_matmul_precision(self.config.matmul_precision).map_err(TrainError::Precision)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| TrainError::io(&self.dir, e))?;
        let mut optimizer = Adam::new(model.var_store());
        let mut state = self.resume(model, &mut optimizer)?;
        let lengths: Vec<(usize, usize)> = self.train.iter().map(|(s, t)| (s.len(), t.len() + 1)).collect();
        let started = Instant::now();
        let out_of_time =
            || self.config.max_minutes.is_some_and(|minutes| started.elapsed().as_secs_f64() >= minutes * 60.0);
        let mut epoch_batches =
            (state.epoch, batches(&lengths, self.config.max_tokens, self.config.seed ^ state.epoch));
        while state.update < self.config.max_updates {
            if epoch_batches.0 != state.epoch {
                epoch_batches =
                    (state.epoch, batches(&lengths, self.config.max_tokens, self.config.seed ^ state.epoch));
            }
            let epoch_batches = &epoch_batches.1;
            if state.batch_in_epoch >= epoch_batches.len() {
                state.epoch += 1;
                state.batch_in_epoch = 0;
                continue;
            }
            // Dropout masks depend only on the update number: a resumed run draws the same ones.
            tch::manual_seed((self.config.seed as i64) ^ state.update);
            let (mut loss_sum, mut nll_sum, mut tokens) = (0.0, 0.0, 0usize);
            optimizer.zero_grad();
            for _ in 0..self.config.accumulate {
                let Some(batch) = epoch_batches.get(state.batch_in_epoch) else { break };
                state.batch_in_epoch += 1;
                let pairs: Vec<(&[u32], &[u32])> =
                    batch.iter().map(|&i| (self.train[i].0.as_slice(), self.train[i].1.as_slice())).collect();
                let langs = (self.config.source_lang, self.config.target_lang);
                let BatchLoss { loss, nll, tokens: n } = objective.batch_loss(&*model, batch, &pairs, langs, true)?;
                // Per-token mean over the whole update, whatever the batch split.
                loss_sum += loss.double_value(&[]);
                (loss / (n * self.config.accumulate) as f64).backward();
                nll_sum += nll.double_value(&[]);
                tokens += n;
            }
            let grad_norm = optimizer.clip_grad_norm(self.config.clip_norm);
            let lr = self.config.lr_at(state.schedule_offset, state.update);
            optimizer.step(lr);
            state.update += 1;
            let mut line = LogLine {
                update: state.update,
                epoch: state.epoch,
                lr,
                loss: loss_sum / tokens.max(1) as f64,
                nll: nll_sum / tokens.max(1) as f64,
                tokens,
                grad_norm,
                elapsed_s: started.elapsed().as_secs_f64(),
                valid_nll: None,
                dev_bleu: None,
            };
            let last = state.update == self.config.max_updates || out_of_time();
            if last || state.update % self.config.eval_every.max(1) == 0 {
                let (valid_nll, bleu) = self.evaluate(model, detokenize)?;
                line.valid_nll = Some(valid_nll);
                line.dev_bleu = Some(bleu);
                state.best_dev_bleu = Some(state.best_dev_bleu.map_or(bleu, |b| b.max(bleu)));
            }
            self.append_log(&line)?;
            on_update(&line);
            // Before the checkpoint: a run killed between the two redoes this update, snapshot
            // included, instead of resuming past a snapshot it never wrote.
            if self.config.snapshot_every > 0 && state.update % self.config.snapshot_every == 0 {
                snapshots::write(&self.dir, model, state.update, self.config.keep_snapshots)?;
            }
            if last || state.update % self.config.checkpoint_every.max(1) == 0 {
                self.checkpoint(model, &optimizer, &state)?;
            }
            if last {
                break;
            }
        }
        Ok(state)
    }

    /// Mean per-token NLL on dev (no dropout) and greedy dev BLEU.
    pub fn evaluate(&self, model: &dyn TrainableModel, detokenize: Detokenize<'_>) -> Result<(f64, f64), TrainError> {
        if self.dev.is_empty() {
            return Ok((f64::NAN, 0.0));
        }
        let (mut nll_sum, mut tokens) = (0.0, 0usize);
        tch::no_grad(|| {
            for chunk in self.dev.chunks(64) {
                let pairs: Vec<(&[u32], &[u32])> = chunk.iter().map(|(s, t)| (s.as_slice(), t.as_slice())).collect();
                let (logits, targets) = model.teacher_forced(&pairs, self.langs(), false);
                let (_, nll) = label_smoothed(&logits, &targets, 0.0);
                nll_sum += nll.to_kind(Kind::Double).double_value(&[]);
                tokens += targets.size()[0] as usize;
            }
        });
        let sources: Vec<Vec<u32>> = self.dev.iter().map(|(s, _)| s.clone()).collect();
        let mut hypotheses = Vec::with_capacity(sources.len());
        for chunk in sources.chunks(64) {
            let tokens = model.greedy(chunk, self.langs()).map_err(TrainError::Evaluation)?;
            hypotheses.extend(tokens.iter().map(|h| detokenize(h)));
        }
        let references: Vec<String> = self.dev.iter().map(|(_, t)| detokenize(t)).collect();
        let bleu = xlmc_scoring::corpus_bleu(&hypotheses, &references).map(|b| b.score).unwrap_or(0.0);
        Ok((nll_sum / tokens.max(1) as f64, bleu))
    }

    fn append_log(&self, line: &LogLine) -> Result<(), TrainError> {
        let path = self.dir.join(LOG_FILE);
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| TrainError::io(&path, e))?;
        writeln!(file, "{}", serde_json::to_string(line).expect("log line serialises"))
            .map_err(|e| TrainError::io(&path, e))
    }

    /// Writes `checkpoint.tmp/` completely, then swaps it in place of `checkpoint/`.
    fn langs(&self) -> (i64, i64) {
        (self.config.source_lang, self.config.target_lang)
    }

    fn checkpoint(&self, model: &dyn TrainableModel, optimizer: &Adam, state: &TrainState) -> Result<(), TrainError> {
        let (tmp, current, old) = (
            self.dir.join(format!("{CHECKPOINT}.tmp")),
            self.dir.join(CHECKPOINT),
            self.dir.join(format!("{CHECKPOINT}.old")),
        );
        for stale in [&tmp, &old] {
            if stale.exists() {
                std::fs::remove_dir_all(stale).map_err(|e| TrainError::io(stale, e))?;
            }
        }
        model.save_to(&tmp).map_err(TrainError::Checkpoint)?;
        optimizer.save(&tmp.join(OPTIMIZER_FILE))?;
        let json = serde_json::to_string_pretty(state).expect("state serialises");
        xlmc_atomic_file::write(&tmp.join(STATE_FILE), json.as_bytes()).map_err(|e| TrainError::io(&tmp, e))?;
        if current.exists() {
            std::fs::rename(&current, &old).map_err(|e| TrainError::io(&current, e))?;
        }
        std::fs::rename(&tmp, &current).map_err(|e| TrainError::io(&tmp, e))?;
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
        }
        Ok(())
    }

    /// Loads the last complete checkpoint (if any) into `model` and `optimizer`, and drops log
    /// lines written after it, so no update is lost or counted twice.
    fn resume(&self, model: &mut dyn TrainableModel, optimizer: &mut Adam) -> Result<TrainState, TrainError> {
        let Some(dir) = checkpoint_to_resume(&self.dir) else {
            self.truncate_log(0)?;
            snapshots::drop_after(&self.dir, 0)?;
            return Ok(TrainState { schedule_offset: self.config.schedule_offset, ..TrainState::default() });
        };
        model.load_from(&dir).map_err(TrainError::Checkpoint)?;
        optimizer.load(&dir.join(OPTIMIZER_FILE))?;
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        let state: TrainState = serde_json::from_str(&text).map_err(|source| TrainError::State { path, source })?;
        self.truncate_log(state.update)?;
        snapshots::drop_after(&self.dir, state.update)?;
        Ok(state)
    }

    fn truncate_log(&self, update: i64) -> Result<(), TrainError> {
        let path = self.dir.join(LOG_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
        let kept: String = text
            .lines()
            .filter(|l| serde_json::from_str::<LogLine>(l).is_ok_and(|line| line.update <= update))
            .map(|l| format!("{l}\n"))
            .collect();
        xlmc_atomic_file::write(&path, kept.as_bytes()).map_err(|e| TrainError::io(&path, e))
    }
}

/// The complete checkpoint in a run folder: `checkpoint/`, or `checkpoint.old/` when a run was
/// killed between the two renames that swap a new one in.
fn checkpoint_to_resume(dir: &Path) -> Option<PathBuf> {
    [dir.join(CHECKPOINT), dir.join(format!("{CHECKPOINT}.old"))].into_iter().find(|c| c.join(STATE_FILE).exists())
}

/// Whether `dir` holds a checkpoint a run would resume from.
pub fn has_checkpoint(dir: &Path) -> bool {
    checkpoint_to_resume(dir).is_some()
}

/// Reads a `train_log.jsonl`.
pub fn read_log(dir: &Path) -> Vec<LogLine> {
    std::fs::read_to_string(dir.join(LOG_FILE))
        .map(|text| text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
        .unwrap_or_default()
}
