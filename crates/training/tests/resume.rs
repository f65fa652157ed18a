//! Exact resume, in a test binary of its own: bit-for-bit comparisons of two trainings need
//! nothing else running libtorch in the process, and one intra-op thread so every reduction is
//! split the same way (CPU BLAS otherwise sizes its thread team from the machine's load).

use std::path::Path;

use tch::Device;
use xlmc_training::{
    LogLine, Pair, TrainConfig, Trainer, read_log, snapshots,
    synthetic::{detokenize, mapping_task, model_config},
};
use xlmc_transformer::Seq2Seq;

fn train_config(max_updates: i64) -> TrainConfig {
    TrainConfig {
        max_tokens: 400,
        lr: 2e-3,
        warmup_updates: 50,
        max_updates,
        eval_every: 100,
        checkpoint_every: 10,
        snapshot_every: 5,
        ..Default::default()
    }
}

fn fresh_model() -> Seq2Seq {
    tch::manual_seed(0);
    Seq2Seq::new(model_config(), Device::Cpu).unwrap()
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
    let mut model = fresh_model();
    let trainer = Trainer { config: train_config(max_updates), dir: dir.into(), train, dev };
    trainer.run(&mut model, &detokenize, |_| {}).unwrap();
    model
}

#[test]
fn a_killed_run_resumes_with_no_update_lost_or_repeated() {
    tch::set_num_threads(1);
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
    // ...and while writing a snapshot at 30 (a half-written folder).
    let half_written = resumed.path().join("snapshots/.u30.tmp");
    std::fs::create_dir_all(&half_written).unwrap();
    // The snapshot at 25 came from updates that are redone: gone, even where the rerun stops short.
    run(resumed.path(), 22, &train, &dev);
    assert_eq!(taken(resumed.path()), [5, 10, 15, 20]);
    assert!(!half_written.exists(), "a half-written snapshot is cleared on resume");
    let model = run(resumed.path(), 30, &train, &dev);

    assert!(weights(&model) == weights(&reference), "same weights as an uninterrupted run");
    let strip = |log: Vec<LogLine>| -> Vec<(i64, f64)> { log.into_iter().map(|l| (l.update, l.loss)).collect() };
    let (got, want) = (strip(read_log(resumed.path())), strip(read_log(straight.path())));
    assert_eq!(got.iter().map(|l| l.0).collect::<Vec<_>>(), (1..=30).collect::<Vec<_>>());
    assert_eq!(got, want, "every update logged once, with the same loss");
    assert_eq!(taken(resumed.path()), (1..=6).map(|k| 5 * k).collect::<Vec<_>>());
    for ((update, ours), (_, theirs)) in snapshots(resumed.path()).iter().zip(snapshots(straight.path()).iter()) {
        let read = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
        assert!(read(ours) == read(theirs), "snapshot {update} is the uninterrupted run's");
    }
}

fn taken(run: &Path) -> Vec<i64> {
    snapshots(run).into_iter().map(|(update, _)| update).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
