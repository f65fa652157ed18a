//! Speed in `exporter report`, made comparable across models: every model is timed in several
//! rounds, each round timing all models in turn, so that a slow minute of the machine slows one
//! round of every model rather than one model. A model's speed is its median over rounds; a
//! speed-up is the median of the per-round ratios (teacher and student timed minutes apart, not
//! a whole report apart), with its spread over rounds.

use serde::{Deserialize, Serialize};

use crate::report_model::{Measurement, Throughput};

/// What one timing pass of a model measures (`exporter report-model --timing-only` writes it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    /// Batch-1 latency per sentence, milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
    pub throughput: Vec<Throughput>,
}

/// One round as the report keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpeedRound {
    pub latency_p50_ms: f64,
    pub throughput: Vec<Throughput>,
}

impl SpeedRound {
    /// Tokens/s at `batch`, else at the largest batch measured.
    pub fn tokens_per_second(&self, batch: usize) -> f64 {
        throughput_at(&self.throughput, batch)
    }
}

pub fn throughput_at(throughput: &[Throughput], batch: usize) -> f64 {
    throughput.iter().find(|t| t.batch == batch).or(throughput.last()).map_or(f64::NAN, |t| t.tokens_per_second)
}

/// The middle value (the mean of the two middle ones for an even count); NaN for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

impl Measurement {
    /// Adds a timing round: latencies pool with the earlier rounds', throughput becomes the
    /// median per batch size.
    pub fn add_round(&mut self, timing: Timing) {
        self.rounds.push(SpeedRound {
            latency_p50_ms: xlmc_telemetry::percentile(&timing.latencies_ms, 50.0),
            throughput: timing.throughput.clone(),
        });
        self.latencies_ms.extend(timing.latencies_ms);
        self.latencies_ms.sort_by(f64::total_cmp);
        self.latency_p50_ms = xlmc_telemetry::percentile(&self.latencies_ms, 50.0);
        self.latency_p95_ms = xlmc_telemetry::percentile(&self.latencies_ms, 95.0);
        self.latency_p99_ms = xlmc_telemetry::percentile(&self.latencies_ms, 99.0);
        self.throughput = timing
            .throughput
            .iter()
            .map(|t| {
                let at = |f: fn(&Throughput) -> f64| {
                    let values: Vec<f64> = self
                        .rounds
                        .iter()
                        .filter_map(|r| r.throughput.iter().find(|x| x.batch == t.batch))
                        .map(f)
                        .collect();
                    median(&values)
                };
                Throughput {
                    batch: t.batch,
                    tokens_per_second: at(|x| x.tokens_per_second),
                    sentences_per_second: at(|x| x.sentences_per_second),
                }
            })
            .collect();
    }
}

/// A ratio over paired rounds: its median and its range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// `ratio(teacher's round r, model's round r)` for every round both have.
pub fn paired(teacher: &[SpeedRound], model: &[SpeedRound], ratio: impl Fn(&SpeedRound, &SpeedRound) -> f64) -> Paired {
    let ratios: Vec<f64> = teacher.iter().zip(model).map(|(t, m)| ratio(t, m)).collect();
    Paired {
        median: median(&ratios),
        min: ratios.iter().copied().fold(f64::NAN, f64::min),
        max: ratios.iter().copied().fold(f64::NAN, f64::max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(latencies_ms: &[f64], tokens_per_second: f64) -> Timing {
        Timing {
            latencies_ms: latencies_ms.to_vec(),
            throughput: vec![Throughput {
                batch: 32,
                tokens_per_second,
                sentences_per_second: tokens_per_second / 10.0,
            }],
        }
    }

    fn measurement() -> Measurement {
        serde_json::from_value(serde_json::json!({
            "name": "m", "path": "m", "backend": "onnxruntime", "architecture": "transformer",
            "precision": "fp32", "parameters": 1, "bytes": 1, "vocabulary": "", "sentences": 1,
            "bleu": 1.0, "chrf": 1.0, "bleu_signature": "", "chrf_signature": "", "latencies_ms": [],
            "latency_p50_ms": 0.0, "latency_p95_ms": 0.0, "latency_p99_ms": 0.0, "throughput": [],
            "peak_rss_mib": 0.0
        }))
        .unwrap()
    }

    #[test]
    fn rounds_pool_latencies_and_take_the_median_throughput() {
        let mut m = measurement();
        m.add_round(timing(&[1.0, 2.0, 3.0], 100.0));
        assert_eq!(m.throughput[0].tokens_per_second, 100.0);
        m.add_round(timing(&[10.0, 20.0, 30.0], 400.0));
        m.add_round(timing(&[4.0, 5.0, 6.0], 130.0));
        assert_eq!(m.rounds.iter().map(|r| r.latency_p50_ms).collect::<Vec<_>>(), [2.0, 20.0, 5.0]);
        assert_eq!(m.latencies_ms, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0, 20.0, 30.0]);
        assert_eq!(m.latency_p50_ms, 5.0);
        // The outlier round (400) does not move the median.
        assert_eq!(m.throughput[0].tokens_per_second, 130.0);
        assert_eq!(m.throughput[0].sentences_per_second, 13.0);
    }

    #[test]
    fn a_speed_up_is_the_median_of_its_rounds_ratios() {
        let round = |p50: f64, tps: f64| SpeedRound {
            latency_p50_ms: p50,
            throughput: vec![Throughput { batch: 32, tokens_per_second: tps, sentences_per_second: 0.0 }],
        };
        // The machine is slow in round 2 for both models and again while the student's round 3
        // runs: paired, only round 3's ratio moves; the ratio of the medians (100 / 90) would not
        // say 2 but 1.11.
        let teacher = [round(10.0, 100.0), round(20.0, 50.0), round(10.0, 90.0)];
        let student = [round(5.0, 200.0), round(10.0, 100.0), round(4.0, 100.0)];
        let speedup = paired(&teacher, &student, |t, s| s.tokens_per_second(32) / t.tokens_per_second(32));
        assert_eq!(speedup.median, 2.0);
        assert_eq!((speedup.min, speedup.max), (100.0 / 90.0, 2.0));
        let batch1 = paired(&teacher, &student, |t, s| t.latency_p50_ms / s.latency_p50_ms);
        assert_eq!(batch1, Paired { median: 2.0, min: 2.0, max: 2.5 });
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[3.0, 1.0]), 2.0);
    }
}
