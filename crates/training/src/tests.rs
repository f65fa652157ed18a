//! Training end to end on a synthetic task (exact resume is tested in `tests/resume.rs`).

use tch::{Device, Tensor};

use xlmc_transformer::{Config, Seq2Seq};

use crate::{
    MatmulPrecision, TrainConfig, TrainError, Trainer, read_log,
    synthetic::{detokenize, mapping_task, model_config},
};

/// libtorch's generator is global and tests run in parallel: a model is seeded and built under
/// this lock, so its initial weights never depend on what other tests draw meanwhile.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn fresh_model(config: Config) -> Seq2Seq {
    let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(0);
    Seq2Seq::new(config, Device::Cpu).unwrap()
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
    learns_the_synthetic_mapping(MatmulPrecision::Fp32);
}

#[test]
fn tiny_preset_learns_the_mapping_with_bf16_matmuls_too() {
    learns_the_synthetic_mapping(MatmulPrecision::Bf16);
}

#[test]
fn bf16_is_refused_for_the_bigru_before_anything_is_written() {
    let mut bigru = xlmc_bigru::BiGru::new(xlmc_bigru::Config::tiny(model_config().n_words), Device::Cpu);
    let (train, dev) = (mapping_task(20, 1), mapping_task(5, 2));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let trainer = Trainer {
        config: TrainConfig { matmul_precision: MatmulPrecision::Bf16, ..train_config(5) },
        dir: out.clone(),
        train: &train,
        dev: &dev,
    };
    let err = trainer.run(&mut bigru, &detokenize, |_| {}).unwrap_err();
    assert!(matches!(err, TrainError::Precision(_)), "{err}");
    assert!(err.to_string().starts_with("matmul_precision: "), "{err}");
    assert!(!out.exists(), "nothing written");
}

fn learns_the_synthetic_mapping(matmul_precision: MatmulPrecision) {
    let (train, dev) = (mapping_task(2000, 1), mapping_task(100, 2));
    let dir = tempfile::tempdir().unwrap();
    let mut model = fresh_model(model_config());
    let trainer = Trainer {
        config: TrainConfig { checkpoint_every: 1000, matmul_precision, ..train_config(400) },
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

#[test]
fn gradients_reach_only_trainable_weights() {
    // Sinusoidal position tables are fixed: training must leave them untouched.
    let config = Config { sinusoidal_embeddings: true, ..model_config() };
    let mut model = fresh_model(config);
    let before: Tensor = model.vs.variables()["encoder.position_embeddings.weight"].copy();
    let train = mapping_task(50, 5);
    let dir = tempfile::tempdir().unwrap();
    let trainer = Trainer { config: train_config(3), dir: dir.path().into(), train: &train, dev: &[] };
    trainer.run(&mut model, &detokenize, |_| {}).unwrap();
    let after = &model.vs.variables()["encoder.position_embeddings.weight"];
    assert!(after.equal(&before));
}

#[test]
fn snapshots_keep_the_newest_and_load_as_models() {
    let mut model = fresh_model(model_config());
    let train = mapping_task(50, 5);
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig { snapshot_every: 3, keep_snapshots: 2, ..train_config(13) };
    let trainer = Trainer { config, dir: dir.path().into(), train: &train, dev: &[] };
    trainer.run(&mut model, &detokenize, |_| {}).unwrap();
    let kept = crate::snapshots(dir.path());
    assert_eq!(kept.iter().map(|(update, _)| *update).collect::<Vec<_>>(), [9, 12]);
    let names: Vec<String> = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "no temporary folder left behind: {names:?}");
    // The last snapshot (12) is one update before the end (13): loadable, and not the final weights.
    let at_12 = Seq2Seq::load(&kept[1].1, Device::Cpu).unwrap();
    let differs = |a: &Seq2Seq, b: &Seq2Seq| {
        let (a, b) = (a.vs.variables(), b.vs.variables());
        a.iter().any(|(name, t)| !t.equal(&b[name]))
    };
    assert!(differs(&at_12, &model));
}

#[test]
fn online_distillation_changes_only_the_student() {
    use crate::distill::{KdConfig, OnlineKd, TeacherView};
    let teacher = fresh_model(model_config());
    let mut student = teacher.prune(&[0], &[1]).unwrap();
    let snapshot = |m: &Seq2Seq| -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = m.vs.variables().into_iter().map(|(n, t)| (n, t.copy())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let (teacher_before, student_before) = (snapshot(&teacher), snapshot(&student));
    let train = mapping_task(100, 7);
    let dir = tempfile::tempdir().unwrap();
    let trainer = Trainer { config: train_config(3), dir: dir.path().into(), train: &train, dev: &[] };
    let mut objective = OnlineKd {
        teacher: TeacherView::new(&teacher),
        kd: KdConfig { temperature: 2.0, alpha: 0.5 },
        label_smoothing: 0.1,
    };
    trainer.run_with(&mut student, &mut objective, &detokenize, |_| {}).unwrap();
    for ((name, before), (_, after)) in teacher_before.iter().zip(snapshot(&teacher)) {
        assert!(before.equal(&after), "teacher {name} changed");
        assert!(!teacher.vs.variables()[name].grad().defined(), "teacher {name} got a gradient");
    }
    let changed = student_before.iter().zip(snapshot(&student)).filter(|((_, b), (_, a))| !b.equal(a)).count();
    assert!(changed > student_before.len() / 2, "the student trained: {changed} tensors changed");
}

#[test]
fn pruned_and_distilled_student_keeps_95_percent_and_bigru_90_percent_of_the_teacher_bleu() {
    use crate::distill::{KdConfig, OnlineKd, TeacherView};
    let (train, dev) = (mapping_task(2000, 1), mapping_task(100, 2));
    let teacher_dir = tempfile::tempdir().unwrap();
    let mut teacher = fresh_model(model_config());
    let trainer = Trainer {
        config: TrainConfig { checkpoint_every: 1000, ..train_config(400) },
        dir: teacher_dir.path().into(),
        train: &train,
        dev: &dev,
    };
    trainer.run(&mut teacher, &detokenize, |_| {}).unwrap();
    let (_, teacher_bleu) = trainer.evaluate(&teacher, &detokenize).unwrap();

    // Half the layers on each side, then word-level KD from the teacher.
    let mut student = teacher.prune(&[1], &[1]).unwrap();
    let (_, pruned_bleu) = trainer.evaluate(&student, &detokenize).unwrap();
    let student_dir = tempfile::tempdir().unwrap();
    let distiller = Trainer {
        config: TrainConfig { checkpoint_every: 1000, warmup_updates: 20, ..train_config(200) },
        dir: student_dir.path().into(),
        train: &train,
        dev: &dev,
    };
    let mut kd = OnlineKd {
        teacher: TeacherView::new(&teacher),
        kd: KdConfig { temperature: 2.0, alpha: 0.5 },
        label_smoothing: 0.1,
    };
    distiller.run_with(&mut student, &mut kd, &detokenize, |_| {}).unwrap();
    let (_, student_bleu) = distiller.evaluate(&student, &detokenize).unwrap();
    assert!(teacher_bleu >= 95.0, "teacher {teacher_bleu}");
    assert!(
        student_bleu >= 0.95 * teacher_bleu,
        "student {student_bleu} vs teacher {teacher_bleu} (pruned, before KD: {pruned_bleu})"
    );
    assert!(student.parameters() < teacher.parameters());

    // A BiGRU student on the same vocabulary, distilled by the same trainer.
    let mut bigru = {
        let _guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(0);
        xlmc_bigru::BiGru::new(xlmc_bigru::Config::tiny(model_config().n_words), Device::Cpu)
    };
    let bigru_dir = tempfile::tempdir().unwrap();
    let bigru_trainer = Trainer {
        config: TrainConfig { checkpoint_every: 1000, lr: 3e-3, warmup_updates: 50, ..train_config(800) },
        dir: bigru_dir.path().into(),
        train: &train,
        dev: &dev,
    };
    bigru_trainer.run_with(&mut bigru, &mut kd, &detokenize, |_| {}).unwrap();
    let (_, bigru_bleu) = bigru_trainer.evaluate(&bigru, &detokenize).unwrap();
    assert!(bigru_bleu >= 0.90 * teacher_bleu, "BiGRU {bigru_bleu} vs teacher {teacher_bleu}");
}

#[test]
fn a_continued_run_ramps_up_to_where_the_schedule_left_off_and_keeps_its_offset_on_resume() {
    let config = TrainConfig { lr: 1e-3, warmup_updates: 400, rewarmup_updates: 10, ..Default::default() };
    let from_scratch = |update| config.lr_at(0, update);
    // Far from the peak: a continued run does not climb back to `lr`.
    let continued = |update| config.lr_at(4000, update);
    assert!((continued(9) - from_scratch(4009)).abs() < 1e-15, "after the ramp it is the old schedule");
    assert!((continued(0) - from_scratch(4000) / 10.0).abs() < 1e-15, "the ramp starts low");
    assert!(continued(50) < 0.4 * config.lr);

    let (train, dev) = (mapping_task(200, 7), mapping_task(5, 8));
    let dir = tempfile::tempdir().unwrap();
    let run = |max_updates| {
        let mut model = fresh_model(model_config());
        let config = TrainConfig { schedule_offset: 4000, rewarmup_updates: 10, ..train_config(max_updates) };
        let trainer = Trainer { config, dir: dir.path().into(), train: &train, dev: &dev };
        trainer.run(&mut model, &detokenize, |_| {}).unwrap()
    };
    assert_eq!(run(10).schedule_offset, 4000);
    // Resumed by a caller that no longer passes the offset: the checkpoint keeps it.
    let mut model = fresh_model(model_config());
    let trainer = Trainer { config: train_config(15), dir: dir.path().into(), train: &train, dev: &dev };
    assert_eq!(trainer.run(&mut model, &detokenize, |_| {}).unwrap().schedule_offset, 4000);
    let expected = TrainConfig { rewarmup_updates: 100, ..train_config(15) }.lr_at(4000, 14);
    let lr = read_log(dir.path()).last().unwrap().lr;
    assert!((lr - expected).abs() < 1e-15, "{lr} vs {expected}");
}
