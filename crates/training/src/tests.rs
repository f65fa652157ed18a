//! Training end to end on synthetic tasks: it learns, and a killed run resumes exactly.

use std::path::Path;

use tch::{Device, Tensor};

use xlmc_transformer::{Config, Seq2Seq};

use crate::{LogLine, Pair, TrainConfig, Trainer, batching::Rng, read_log};

const FIRST_WORD: u32 = 14;
const WORDS: u32 = 26;

/// A word-by-word "translation": each source word maps to a fixed other word.
fn mapping_task(n: usize, seed: u64) -> Vec<Pair> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let len = 3 + (rng.next_u64() % 6) as usize;
            let source: Vec<u32> = (0..len).map(|_| FIRST_WORD + (rng.next_u64() % u64::from(WORDS)) as u32).collect();
            let target = source.iter().map(|t| FIRST_WORD + (t - FIRST_WORD + 7) % WORDS).collect();
            (source, target)
        })
        .collect()
}

fn detokenize(ids: &[u32]) -> String {
    ids.iter().map(|t| format!("w{t}")).collect::<Vec<_>>().join(" ")
}

/// libtorch's generator is global and tests run in parallel: a model is seeded and built under
/// this lock, so its initial weights never depend on what other tests draw meanwhile.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn fresh_model(config: Config) -> Seq2Seq {
    let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(0);
    Seq2Seq::new(config, Device::Cpu).unwrap()
}

fn config() -> Config {
    Config { emb_dim: 64, ..Config::tiny(i64::from(FIRST_WORD + WORDS)) }
}

fn train_config(max_updates: i64) -> TrainConfig {
    TrainConfig {
        max_tokens: 400,
        lr: 2e-3,
        warmup_updates: 50,
        label_smoothing: 0.1,
        max_updates,
        eval_every: 100,
        checkpoint_every: 10,
        ..Default::default()
    }
}

#[test]
fn tiny_preset_learns_a_synthetic_mapping_to_95_bleu() {
    let (train, dev) = (mapping_task(2000, 1), mapping_task(100, 2));
    let dir = tempfile::tempdir().unwrap();
    let mut model = fresh_model(config());
    let trainer = Trainer {
        config: TrainConfig { checkpoint_every: 1000, ..train_config(400) },
        dir: dir.path().into(),
        train: &train,
        dev: &dev,
    };
    let state = trainer.run(&mut model, &detokenize, |_| {}).unwrap();
    let log = read_log(dir.path());
    let bleu = log.last().and_then(|l| l.dev_bleu).unwrap();
    assert!(bleu >= 95.0, "dev BLEU {bleu}; log tail {:?}", &log[log.len().saturating_sub(3)..]);
    assert!(log.first().unwrap().loss > 2.0 * log.last().unwrap().loss, "the loss falls");
    assert_eq!(state.update, 400);
}

fn weights(model: &Seq2Seq) -> Vec<(String, Vec<f32>)> {
    let mut all: Vec<(String, Vec<f32>)> = model
        .vs
        .variables()
        .into_iter()
        .map(|(name, t)| (name, Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn run(dir: &Path, max_updates: i64, train: &[Pair], dev: &[Pair]) -> Seq2Seq {
    let mut model = fresh_model(config());
    let trainer = Trainer { config: train_config(max_updates), dir: dir.into(), train, dev };
    trainer.run(&mut model, &detokenize, |_| {}).unwrap();
    model
}

#[test]
fn a_killed_run_resumes_with_no_update_lost_or_repeated() {
    let (train, dev) = (mapping_task(300, 3), mapping_task(10, 4));
    let straight = tempfile::tempdir().unwrap();
    let reference = run(straight.path(), 30, &train, &dev);

    let resumed = tempfile::tempdir().unwrap();
    run(resumed.path(), 20, &train, &dev);
    let saved = resumed.path().join("saved-20");
    copy_dir(&resumed.path().join("checkpoint"), &saved);
    run(resumed.path(), 25, &train, &dev);
    // Killed after logging updates 21–25 but before their checkpoint: the last one is at 20.
    std::fs::remove_dir_all(resumed.path().join("checkpoint")).unwrap();
    std::fs::rename(&saved, resumed.path().join("checkpoint")).unwrap();
    let model = run(resumed.path(), 30, &train, &dev);

    assert!(weights(&model) == weights(&reference), "same weights as an uninterrupted run");
    let strip = |log: Vec<LogLine>| -> Vec<(i64, f64)> { log.into_iter().map(|l| (l.update, l.loss)).collect() };
    let (got, want) = (strip(read_log(resumed.path())), strip(read_log(straight.path())));
    assert_eq!(got.iter().map(|l| l.0).collect::<Vec<_>>(), (1..=30).collect::<Vec<_>>());
    assert_eq!(got, want, "every update logged once, with the same loss");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn gradients_reach_only_trainable_weights() {
    // Sinusoidal position tables are fixed: training must leave them untouched.
    let config = Config { sinusoidal_embeddings: true, ..config() };
    let mut model = fresh_model(config);
    let before: Tensor = model.vs.variables()["encoder.position_embeddings.weight"].copy();
    let train = mapping_task(50, 5);
    let dir = tempfile::tempdir().unwrap();
    let trainer = Trainer { config: train_config(3), dir: dir.path().into(), train: &train, dev: &[] };
    trainer.run(&mut model, &detokenize, |_| {}).unwrap();
    let after = &model.vs.variables()["encoder.position_embeddings.weight"];
    assert!(after.equal(&before));
}
