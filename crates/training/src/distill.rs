//! Word-level knowledge distillation (Hinton et al. 2015; Kim & Rush 2016):
//!
//! loss = α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1−α)·CE_ε(gold)
//!
//! summed over target tokens. The teacher's distribution comes either whole (online: the teacher
//! runs on the same batch, without gradients) or as its top-k log-probabilities (offline, read
//! from a cache); the top-k case renormalises over the k kept entries, so with k = vocabulary
//! size both give the same loss.

use std::path::Path;

use tch::{Kind, Tensor};
use xlmc_teacher_cache::{
    CacheError, CacheSpec, PairEntry, Part, TeacherCache, pair_hash, shards_to_build, write_shard,
};
use xlmc_transformer::Seq2Seq;

use crate::{
    Pair, TrainError, TrainableModel,
    loss::{label_smoothed, teacher_forced},
    trainer::{BatchLoss, Objective},
};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdConfig {
    /// Softmax temperature T of both distributions in the KL term.
    pub temperature: f64,
    /// Weight α of the KL term; 1 − α goes to gold cross-entropy. 0 = no distillation.
    pub alpha: f64,
}

impl Default for KdConfig {
    fn default() -> Self {
        Self { temperature: 1.0, alpha: 0.5 }
    }
}

/// The teacher as a student sees it. A student with a trimmed vocabulary (a subset of the
/// teacher's, `exporter prune --trim-vocab`) speaks its own compact ids: they are mapped to the
/// teacher's before it runs, and its logits are restricted to the student's columns, so softmax
/// renormalises over what the student can say.
#[derive(Debug)]
pub struct TeacherView<'t> {
    pub model: &'t Seq2Seq,
    /// Student id → teacher id, and the same as a tensor of columns.
    vocab: Option<(Vec<u32>, Tensor)>,
}

impl<'t> TeacherView<'t> {
    /// Teacher and student share one vocabulary.
    pub fn new(model: &'t Seq2Seq) -> Self {
        Self { model, vocab: None }
    }

    /// The student's id `i` is the teacher's `student_to_teacher[i]`.
    pub fn trimmed(model: &'t Seq2Seq, student_to_teacher: Vec<u32>) -> Self {
        let columns: Vec<i64> = student_to_teacher.iter().map(|&id| i64::from(id)).collect();
        let columns = Tensor::from_slice(&columns).to(model.vs.device());
        Self { model, vocab: Some((student_to_teacher, columns)) }
    }

    /// Teacher logits [N, student vocabulary] for the target tokens of `pairs` (student ids),
    /// in `teacher_forced`'s order; no gradients.
    pub fn logits(&self, pairs: &[(&[u32], &[u32])], (source_lang, target_lang): (i64, i64)) -> Tensor {
        tch::no_grad(|| match &self.vocab {
            None => teacher_forced(self.model, pairs, source_lang, target_lang, false).0,
            Some((map, columns)) => {
                let to_teacher = |ids: &[u32]| -> Vec<u32> { ids.iter().map(|&id| map[id as usize]).collect() };
                let mapped: Vec<(Vec<u32>, Vec<u32>)> =
                    pairs.iter().map(|(s, t)| (to_teacher(s), to_teacher(t))).collect();
                let mapped: Vec<(&[u32], &[u32])> = mapped.iter().map(|(s, t)| (s.as_slice(), t.as_slice())).collect();
                teacher_forced(self.model, &mapped, source_lang, target_lang, false).0.index_select(-1, columns)
            }
        })
    }

    /// What the cache key must include besides the teacher: the student's columns.
    pub fn vocabulary_key(&self) -> String {
        match &self.vocab {
            None => "same".into(),
            Some((map, _)) => format!("trimmed:{:016x}", pair_hash(map, &[])),
        }
    }
}

/// The teacher's distribution over the vocabulary at each target token.
#[derive(Debug)]
pub enum TeacherTargets {
    /// Logits [N, vocab].
    Full(Tensor),
    /// The k largest log-probabilities [N, k] (at T = 1) and their token ids [N, k].
    TopK { indices: Tensor, log_probs: Tensor },
}

/// Summed KD loss and summed gold NLL for student `logits` [N, vocab] and gold `targets` [N].
pub fn kd_loss(
    logits: &Tensor,
    teacher: &TeacherTargets,
    targets: &Tensor,
    kd: KdConfig,
    label_smoothing: f64,
) -> (Tensor, Tensor) {
    let (gold, nll) = label_smoothed(logits, targets, label_smoothing);
    if kd.alpha == 0.0 {
        return (gold, nll);
    }
    let t = kd.temperature;
    let student = (logits.to_kind(Kind::Float) / t).log_softmax(-1, Kind::Float);
    let (teacher_log, student_log) = match teacher {
        TeacherTargets::Full(teacher_logits) => {
            let teacher_log = (teacher_logits.to_kind(Kind::Float) / t).log_softmax(-1, Kind::Float);
            (teacher_log, student)
        }
        TeacherTargets::TopK { indices, log_probs } => {
            // log p_t / T renormalised over the kept entries = log softmax(z_t / T) on them.
            let teacher_log = (log_probs.to_kind(Kind::Float) / t).log_softmax(-1, Kind::Float);
            (teacher_log, student.gather(1, indices, false))
        }
    };
    let kl = (teacher_log.exp() * (&teacher_log - student_log)).sum(Kind::Float);
    let loss = kl * (kd.alpha * t * t) + gold * (1.0 - kd.alpha);
    (loss, nll)
}

/// Online distillation: the teacher runs (no gradients, no dropout) on every batch.
#[derive(Debug)]
pub struct OnlineKd<'t> {
    pub teacher: TeacherView<'t>,
    pub kd: KdConfig,
    pub label_smoothing: f64,
}

impl Objective for OnlineKd<'_> {
    fn batch_loss(
        &mut self,
        model: &dyn TrainableModel,
        _batch: &[usize],
        pairs: &[(&[u32], &[u32])],
        langs: (i64, i64),
        train: bool,
    ) -> Result<BatchLoss, TrainError> {
        let (logits, targets) = model.teacher_forced(pairs, langs, train);
        let teacher = self.teacher.logits(pairs, langs);
        let (loss, nll) = kd_loss(&logits, &TeacherTargets::Full(teacher), &targets, self.kd, self.label_smoothing);
        Ok(BatchLoss { loss, nll, tokens: targets.size()[0] as usize })
    }
}

/// Where and how [`build_cache`] builds: the whole cache in `dir`, or one `part` of it (that
/// part's folder; `xlmc_teacher_cache::merge` assembles the parts), `batch_pairs` pairs per
/// teacher batch.
#[derive(Debug, Clone, Copy)]
pub struct CacheBuild<'a> {
    pub spec: &'a CacheSpec,
    pub dir: &'a Path,
    pub part: Option<Part>,
    pub batch_pairs: usize,
}

/// Builds (or completes, or repairs) the top-k cache of `teacher` over `pairs` — all its shards,
/// or one part's: every shard missing or failing its checksum is computed again.
/// `on_shard(done, total)` reports progress. Returns how many shards were built.
pub fn build_cache(
    teacher: &TeacherView,
    pairs: &[Pair],
    build: CacheBuild<'_>,
    langs: (i64, i64),
    mut on_shard: impl FnMut(usize, usize),
) -> Result<usize, CacheError> {
    let CacheBuild { spec, dir, part, batch_pairs } = build;
    let todo = shards_to_build(dir, spec, part)?;
    let total = (0..spec.shards()).filter(|&s| part.is_none_or(|p| p.owns(s))).count();
    on_shard(total - todo.len(), total);
    for (done, &shard) in todo.iter().enumerate() {
        let range = spec.shard_range(shard);
        let mut entries = Vec::with_capacity(range.len());
        for chunk in pairs[range].chunks(batch_pairs.max(1)) {
            let batch: Vec<(&[u32], &[u32])> = chunk.iter().map(|(s, t)| (s.as_slice(), t.as_slice())).collect();
            let (log_probs, indices) = tch::no_grad(|| {
                teacher.logits(&batch, langs).log_softmax(-1, Kind::Float).topk(spec.k as i64, -1, true, true)
            });
            let ids = Vec::<i64>::try_from(indices.flatten(0, -1).to(tch::Device::Cpu)).expect("topk ids");
            let probs = Vec::<f32>::try_from(log_probs.flatten(0, -1).to(tch::Device::Cpu)).expect("topk values");
            // Rows come pair by pair, token by token (teacher_forced's order): target + </s>.
            let mut at = 0;
            for (source, target) in chunk {
                let tokens = target.len() + 1;
                let n = tokens * spec.k;
                entries.push(PairEntry {
                    pair_hash: pair_hash(source, target),
                    tokens,
                    ids: ids[at..at + n].iter().map(|&i| i as u32).collect(),
                    log_probs: probs[at..at + n].to_vec(),
                });
                at += n;
            }
        }
        write_shard(dir, spec, shard, &entries)?;
        on_shard(total - todo.len() + done + 1, total);
    }
    Ok(todo.len())
}

/// Offline distillation: the teacher's top-k distributions come from a [`TeacherCache`].
#[derive(Debug)]
pub struct OfflineKd<'c> {
    pub cache: &'c TeacherCache,
    /// The training pairs the cache was built over (each entry is checked against its pair).
    pub pairs: &'c [Pair],
    pub kd: KdConfig,
    pub label_smoothing: f64,
}

impl Objective for OfflineKd<'_> {
    fn batch_loss(
        &mut self,
        model: &dyn TrainableModel,
        batch: &[usize],
        pairs: &[(&[u32], &[u32])],
        langs: (i64, i64),
        train: bool,
    ) -> Result<BatchLoss, TrainError> {
        let (logits, targets) = model.teacher_forced(pairs, langs, train);
        let k = self.cache.spec().k as i64;
        let (mut ids, mut log_probs) = (Vec::new(), Vec::new());
        for &i in batch {
            let (source, target) = &self.pairs[i];
            // A mismatch means the cache was built for other data: never train on it.
            let entry = self.cache.pair(i, pair_hash(source, target))?;
            ids.extend(entry.ids.iter().map(|&id| i64::from(id)));
            log_probs.extend(entry.log_probs);
        }
        let device = logits.device();
        let teacher = TeacherTargets::TopK {
            indices: Tensor::from_slice(&ids).view([-1, k]).to(device),
            log_probs: Tensor::from_slice(&log_probs).view([-1, k]).to(device),
        };
        let (loss, nll) = kd_loss(&logits, &teacher, &targets, self.kd, self.label_smoothing);
        Ok(BatchLoss { loss, nll, tokens: targets.size()[0] as usize })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(values: &[f32], shape: [i64; 2]) -> Tensor {
        Tensor::from_slice(values).view(shape)
    }

    fn value(t: &Tensor) -> f64 {
        t.double_value(&[])
    }

    #[test]
    fn kl_term_equals_a_hand_computation() {
        let student = [0.5f32, -1.0, 2.0, 0.0, 1.0, 1.5];
        let teacher = [1.0f32, 0.0, 1.0, -0.5, 2.0, 0.5];
        let (s, t) = (tensor(&student, [2, 3]), tensor(&teacher, [2, 3]));
        let targets = Tensor::from_slice(&[2i64, 1]);
        let temperature = 2.0;
        let (loss, _) = kd_loss(&s, &TeacherTargets::Full(t), &targets, KdConfig { temperature, alpha: 1.0 }, 0.0);
        let softmax = |row: &[f32]| {
            let e: Vec<f64> = row.iter().map(|&z| (f64::from(z) / temperature).exp()).collect();
            let sum: f64 = e.iter().sum();
            e.into_iter().map(|x| x / sum).collect::<Vec<_>>()
        };
        let mut expected = 0.0;
        for row in 0..2 {
            let (p, q) = (softmax(&teacher[row * 3..row * 3 + 3]), softmax(&student[row * 3..row * 3 + 3]));
            expected += p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum::<f64>();
        }
        expected *= temperature * temperature;
        assert!((value(&loss) - expected).abs() < 1e-5, "{} vs {expected}", value(&loss));
    }

    #[test]
    fn alpha_zero_is_plain_cross_entropy() {
        let s = tensor(&[0.5, -1.0, 2.0, 0.0, 1.0, 1.5], [2, 3]);
        let t = tensor(&[9.0, 0.0, -9.0, 3.0, 2.0, 1.0], [2, 3]);
        let targets = Tensor::from_slice(&[0i64, 2]);
        let (loss, nll) =
            kd_loss(&s, &TeacherTargets::Full(t), &targets, KdConfig { temperature: 3.0, alpha: 0.0 }, 0.1);
        let (gold, gold_nll) = label_smoothed(&s, &targets, 0.1);
        assert_eq!(value(&loss), value(&gold));
        assert_eq!(value(&nll), value(&gold_nll));
    }

    #[test]
    fn offline_from_a_full_cache_equals_online_on_the_same_batch() {
        use crate::synthetic::{mapping_task, model_config};
        tch::manual_seed(11);
        let teacher = Seq2Seq::new(model_config(), tch::Device::Cpu).unwrap();
        let student = teacher.prune(&[1], &[0]).unwrap();
        let pairs = mapping_task(30, 4);
        let dir = tempfile::tempdir().unwrap();
        let spec =
            CacheSpec { key: "t".into(), k: model_config().n_words as usize, pairs: pairs.len(), shard_pairs: 8 };
        let build = CacheBuild { spec: &spec, dir: dir.path(), part: None, batch_pairs: 5 };
        let built = build_cache(&TeacherView::new(&teacher), &pairs, build, (0, 1), |_, _| {}).unwrap();
        assert_eq!(built, 4);
        let cache = TeacherCache::open(dir.path(), &spec).unwrap();
        let kd = KdConfig { temperature: 2.0, alpha: 0.6 };
        let batch = [3usize, 17, 9, 25];
        let view: Vec<(&[u32], &[u32])> =
            batch.iter().map(|&i| (pairs[i].0.as_slice(), pairs[i].1.as_slice())).collect();
        let online = OnlineKd { teacher: TeacherView::new(&teacher), kd, label_smoothing: 0.1 }
            .batch_loss(&student, &batch, &view, (0, 1), false)
            .unwrap();
        let offline = OfflineKd { cache: &cache, pairs: &pairs, kd, label_smoothing: 0.1 }
            .batch_loss(&student, &batch, &view, (0, 1), false)
            .unwrap();
        let (a, b) = (value(&online.loss), value(&offline.loss));
        assert!((a - b).abs() < 1e-4 * a.abs().max(1.0), "online {a} vs offline {b}");
        assert_eq!(online.tokens, offline.tokens);

        // The cache over other pairs of the same count: an error naming the pair, not a panic.
        let mut other_pairs = pairs.clone();
        other_pairs[17].1.push(5);
        let err = OfflineKd { cache: &cache, pairs: &other_pairs, kd, label_smoothing: 0.1 }
            .batch_loss(&student, &batch, &view, (0, 1), false)
            .unwrap_err();
        assert!(matches!(err, TrainError::TeacherCache(_)), "{err}");
        assert!(err.to_string().starts_with("teacher cache: ") && err.to_string().contains("17"), "{err}");
    }

    #[test]
    fn a_trimmed_copy_of_the_teacher_has_nothing_left_to_learn_online_or_offline() {
        use crate::synthetic::{mapping_task, model_config};
        tch::manual_seed(5);
        // The teacher's words sit at every other id past the specials; the student keeps only those,
        // so the task's ids 14, 15, … are the student's compact ids for teacher ids 14, 16, ….
        let words = model_config().n_words - 14;
        let teacher =
            Seq2Seq::new(xlmc_transformer::Config { n_words: 14 + 2 * words, ..model_config() }, tch::Device::Cpu)
                .unwrap();
        let kept: Vec<i64> = (0..14).chain((0..words).map(|k| 14 + 2 * k)).collect();
        let student = teacher.trim_vocabulary(&kept).unwrap();
        let view = || TeacherView::trimmed(&teacher, kept.iter().map(|&id| id as u32).collect());
        let pairs = mapping_task(12, 9);
        let batch: Vec<usize> = (0..pairs.len()).collect();
        let views: Vec<(&[u32], &[u32])> = pairs.iter().map(|(s, t)| (s.as_slice(), t.as_slice())).collect();
        let kd = KdConfig { temperature: 2.0, alpha: 1.0 };
        let online = OnlineKd { teacher: view(), kd, label_smoothing: 0.0 }
            .batch_loss(&student, &batch, &views, (0, 1), false)
            .unwrap();
        let per_token = value(&online.loss) / online.tokens as f64;
        assert!(per_token.abs() < 1e-5, "KL per token {per_token}");

        let dir = tempfile::tempdir().unwrap();
        let spec = CacheSpec { key: view().vocabulary_key(), k: kept.len(), pairs: pairs.len(), shard_pairs: 5 };
        let build = CacheBuild { spec: &spec, dir: dir.path(), part: None, batch_pairs: 4 };
        build_cache(&view(), &pairs, build, (0, 1), |_, _| {}).unwrap();
        let cache = TeacherCache::open(dir.path(), &spec).unwrap();
        let offline = OfflineKd { cache: &cache, pairs: &pairs, kd, label_smoothing: 0.0 }
            .batch_loss(&student, &batch, &views, (0, 1), false)
            .unwrap();
        assert!(value(&offline.loss).abs() / offline.tokens as f64 <= 1e-5, "offline KL {}", value(&offline.loss));

        // The same check fails for a student that is not the teacher's copy.
        let other = Seq2Seq::new(student.config.clone(), tch::Device::Cpu).unwrap();
        let loss = OnlineKd { teacher: view(), kd, label_smoothing: 0.0 }
            .batch_loss(&other, &batch, &views, (0, 1), false)
            .unwrap();
        assert!(value(&loss.loss) / loss.tokens as f64 > 1e-2);
    }

    #[test]
    fn top_k_with_k_equal_to_the_vocabulary_gives_the_online_loss() {
        tch::manual_seed(3);
        let s = Tensor::randn([5, 7], (Kind::Float, tch::Device::Cpu));
        let t = Tensor::randn([5, 7], (Kind::Float, tch::Device::Cpu)) * 3.0;
        let targets = Tensor::from_slice(&[0i64, 6, 3, 3, 1]);
        let kd = KdConfig { temperature: 2.0, alpha: 0.7 };
        let (online, _) = kd_loss(&s, &TeacherTargets::Full(t.shallow_clone()), &targets, kd, 0.1);
        let (log_probs, indices) = t.log_softmax(-1, Kind::Float).topk(7, -1, true, true);
        let (offline, _) = kd_loss(&s, &TeacherTargets::TopK { indices, log_probs }, &targets, kd, 0.1);
        assert!((value(&online) - value(&offline)).abs() < 1e-5, "{} vs {}", value(&online), value(&offline));
    }
}
