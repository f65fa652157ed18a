//! Training xlmc's libtorch models.
//!
//! [`Trainer`] runs updates over token-bucketed batches ([`batching`]) with [`Adam`] and XLM's
//! inverse-square-root warm-up, label-smoothed cross-entropy, gradient accumulation and
//! clipping; it evaluates dev loss and greedy dev BLEU on a schedule, appends one JSON line per
//! update to `train_log.jsonl`, and checkpoints (model, optimizer moments, position in the data)
//! so that a killed run resumes with no update lost or repeated; weight snapshots along the way
//! feed checkpoint averaging. The objective is pluggable
//! ([`Objective`]): gold cross-entropy for teachers, [`distill`] for students.

pub mod batching;
pub mod distill;
mod loss;
mod model;
mod optimizer;
mod snapshots;
pub mod synthetic;
mod trainer;

pub use loss::{decoder_io, label_smoothed, teacher_forced, unpad};
pub use model::{ModelError, TrainableModel};
pub use optimizer::{Adam, OptimizerError, inverse_sqrt_lr};
pub use snapshots::snapshots;
pub use trainer::{
    BatchLoss, GoldObjective, LOG_FILE, LogLine, MatmulPrecision, Objective, Pair, TrainConfig, TrainState, Trainer,
    has_checkpoint, read_log,
};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("checkpoint: {0}")]
    Checkpoint(#[source] ModelError),
    #[error("snapshot: {0}")]
    Snapshot(#[source] ModelError),
    #[error("checkpoint: {0}")]
    Optimizer(#[from] OptimizerError),
    #[error("checkpoint: {path}: {source}")]
    State { path: std::path::PathBuf, source: serde_json::Error },
    /// Dev evaluation (greedy decoding) failed.
    #[error("evaluation: {0}")]
    Evaluation(#[source] ModelError),
    /// The teacher cache does not match the training pairs (built for other data, damaged).
    #[error("teacher cache: {0}")]
    TeacherCache(#[from] xlmc_teacher_cache::CacheError),
    /// Nothing to train on: an epoch would have no batch and the loop would never advance.
    #[error("no training pairs")]
    NoTrainingPairs,
    /// `matmul_precision` asks for something the model cannot do.
    #[error("matmul_precision: {0}")]
    Precision(#[source] ModelError),
}

impl TrainError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrainError::Io { path: path.to_owned(), source }
    }
}

#[cfg(test)]
mod tests;
