//! Live per-model statistics for `ListModels`, and the shadow comparison of a student against
//! its teacher (`--shadow-rate`): BLEU of the student's outputs with the teacher's as reference,
//! and the student/teacher latency ratio, over the shadowed requests.

use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

use xlmc_proto::v1::ModelStats;
use xlmc_scoring::BleuStats;
use xlmc_telemetry::names;

#[derive(Debug, Default)]
pub struct LiveStats {
    requests: AtomicU64,
    sentences: AtomicU64,
    generated_tokens: AtomicU64,
    /// Requests seen by the shadow sampler.
    sampled: AtomicU64,
    shadow: Mutex<Shadow>,
}

#[derive(Debug, Default)]
struct Shadow {
    samples: u64,
    bleu: BleuStats,
    student_seconds: f64,
    teacher_seconds: f64,
}

impl LiveStats {
    pub fn record_request(&self, sentences: u64, generated_tokens: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.sentences.fetch_add(sentences, Ordering::Relaxed);
        self.generated_tokens.fetch_add(generated_tokens, Ordering::Relaxed);
    }

    /// Whether this request is shadowed: exactly `rate` of requests, evenly spread
    /// (request n is when ⌊n·rate⌋ grows), so rate 1 shadows all and 0.25 every fourth.
    pub fn sample(&self, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        let n = self.sampled.fetch_add(1, Ordering::Relaxed) + 1;
        (n as f64 * rate).floor() > ((n - 1) as f64 * rate).floor()
    }

    /// Adds one shadowed request: the student's and teacher's outputs, sentence by sentence, and
    /// how long each took; updates the gauges.
    pub fn record_shadow(
        &self,
        (student, teacher): (&str, &str),
        outputs: &[(String, String)],
        student_seconds: f64,
        teacher_seconds: f64,
    ) {
        let mut shadow = self.shadow.lock().expect("shadow stats");
        shadow.samples += outputs.len() as u64;
        for (hypothesis, reference) in outputs {
            shadow.bleu += BleuStats::sentence(hypothesis, reference);
        }
        shadow.student_seconds += student_seconds;
        shadow.teacher_seconds += teacher_seconds;
        let labels = [("student", student.to_owned()), ("teacher", teacher.to_owned())];
        metrics::gauge!(names::SHADOW_BLEU, &labels).set(shadow.bleu.score().score);
        metrics::gauge!(names::SHADOW_LATENCY_RATIO, &labels).set(ratio(&shadow));
    }

    pub fn snapshot(&self) -> ModelStats {
        let shadow = self.shadow.lock().expect("shadow stats");
        ModelStats {
            requests: self.requests.load(Ordering::Relaxed),
            sentences: self.sentences.load(Ordering::Relaxed),
            generated_tokens: self.generated_tokens.load(Ordering::Relaxed),
            shadow_samples: shadow.samples,
            shadow_bleu: if shadow.samples > 0 { shadow.bleu.score().score } else { 0.0 },
            shadow_latency_ratio: ratio(&shadow),
        }
    }
}

fn ratio(shadow: &Shadow) -> f64 {
    if shadow.teacher_seconds > 0.0 { shadow.student_seconds / shadow.teacher_seconds } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_takes_exactly_the_rate() {
        for (rate, expected) in [(1.0, 100), (0.25, 25), (0.05, 5), (0.0, 0)] {
            let stats = LiveStats::default();
            assert_eq!((0..100).filter(|_| stats.sample(rate)).count(), expected, "rate {rate}");
        }
    }

    #[test]
    fn shadow_bleu_is_corpus_bleu_over_every_shadowed_sentence() {
        let stats = LiveStats::default();
        let first = [("a b c d".to_owned(), "a b c d".to_owned())];
        let second = [("a b x d e".to_owned(), "a b c d e".to_owned())];
        stats.record_shadow(("s", "t"), &first, 1.0, 4.0);
        stats.record_shadow(("s", "t"), &second, 1.0, 4.0);
        let expected = xlmc_scoring::corpus_bleu(&["a b c d", "a b x d e"], &["a b c d", "a b c d e"]).unwrap().score;
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.shadow_samples, 2);
        assert!((snapshot.shadow_bleu - expected).abs() < 1e-12, "{snapshot:?}");
        assert!((snapshot.shadow_latency_ratio - 0.25).abs() < 1e-12);
    }
}
