//! Corpus BLEU, sacreBLEU's defaults: 13a tokens, n-grams 1–4, exponential smoothing.

use std::{collections::HashMap, fmt};

use crate::{ScoreError, corpus_stats, python_rstrip, tokenize_13a};

const MAX_ORDER: usize = 4;
/// sacreBLEU's `my_log(0)`: a floor instead of −∞.
const LOG_ZERO: f64 = -9_999_999_999.0;

/// sacreBLEU's signature for the configuration [`corpus_bleu`] reproduces.
pub const BLEU_SIGNATURE: &str = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0";

/// Sufficient statistics: add sentences' stats to get the corpus's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BleuStats {
    pub hyp_len: u64,
    pub ref_len: u64,
    pub correct: [u64; MAX_ORDER],
    pub total: [u64; MAX_ORDER],
}

impl std::ops::AddAssign for BleuStats {
    fn add_assign(&mut self, other: Self) {
        self.hyp_len += other.hyp_len;
        self.ref_len += other.ref_len;
        for n in 0..MAX_ORDER {
            self.correct[n] += other.correct[n];
            self.total[n] += other.total[n];
        }
    }
}

fn ngram_counts<'a>(tokens: &'a [&'a str]) -> HashMap<&'a [&'a str], u64> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_ORDER.min(tokens.len()) {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

impl BleuStats {
    /// Statistics of one hypothesis against its reference (both untokenized).
    pub fn sentence(hypothesis: &str, reference: &str) -> Self {
        let hyp = tokenize_13a(python_rstrip(hypothesis));
        let reference = tokenize_13a(python_rstrip(reference));
        let hyp_tokens: Vec<&str> = hyp.split(' ').filter(|t| !t.is_empty()).collect();
        let ref_tokens: Vec<&str> = reference.split(' ').filter(|t| !t.is_empty()).collect();
        let ref_counts = ngram_counts(&ref_tokens);
        let mut stats =
            BleuStats { hyp_len: hyp_tokens.len() as u64, ref_len: ref_tokens.len() as u64, ..Default::default() };
        for (gram, count) in ngram_counts(&hyp_tokens) {
            let n = gram.len() - 1;
            stats.total[n] += count;
            stats.correct[n] += count.min(ref_counts.get(gram).copied().unwrap_or(0));
        }
        stats
    }

    /// BLEU from statistics, with sacreBLEU's arithmetic step for step.
    pub fn score(&self) -> BleuScore {
        let (sys_len, ref_len) = (self.hyp_len as f64, self.ref_len as f64);
        let bp = if self.hyp_len < self.ref_len {
            if self.hyp_len > 0 { (1.0 - ref_len / sys_len).exp() } else { 0.0 }
        } else {
            1.0
        };
        let mut precisions = [0.0; MAX_ORDER];
        let mut score = 0.0;
        if self.correct.iter().any(|&c| c > 0) {
            let mut smooth = 1.0;
            for (n, precision) in precisions.iter_mut().enumerate() {
                if self.total[n] == 0 {
                    break;
                }
                *precision = if self.correct[n] == 0 {
                    smooth *= 2.0;
                    100.0 / (smooth * self.total[n] as f64)
                } else {
                    100.0 * self.correct[n] as f64 / self.total[n] as f64
                };
            }
            let log_sum: f64 = precisions.iter().map(|&p| if p == 0.0 { LOG_ZERO } else { p.ln() }).sum();
            score = bp * (log_sum / MAX_ORDER as f64).exp();
        }
        BleuScore { score, precisions, bp, stats: *self }
    }
}

/// A BLEU score with what it was made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BleuScore {
    /// 0–100.
    pub score: f64,
    /// n-gram precisions (0–100), smoothed.
    pub precisions: [f64; MAX_ORDER],
    /// Brevity penalty.
    pub bp: f64,
    pub stats: BleuStats,
}

impl BleuScore {
    /// Hypothesis length over reference length (0 when the reference is empty).
    pub fn ratio(&self) -> f64 {
        if self.stats.ref_len == 0 { 0.0 } else { self.stats.hyp_len as f64 / self.stats.ref_len as f64 }
    }
}

/// sacreBLEU's text: `BLEU = 34.21 65.2/40.1/27.0/19.2 (BP = 0.970 ratio = 0.971 hyp_len = … ref_len = …)`.
impl fmt::Display for BleuScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let precisions: Vec<String> = self.precisions.iter().map(|p| format!("{p:.1}")).collect();
        write!(
            f,
            "BLEU = {:.2} {} (BP = {:.3} ratio = {:.3} hyp_len = {} ref_len = {})",
            self.score,
            precisions.join("/"),
            self.bp,
            self.ratio(),
            self.stats.hyp_len,
            self.stats.ref_len
        )
    }
}

/// Corpus BLEU of `hypotheses` against one reference each.
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(hypotheses: &[H], references: &[R]) -> Result<BleuScore, ScoreError> {
    Ok(corpus_stats(hypotheses, references, BleuStats::sentence)?.score())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_text_scores_100_and_disjoint_text_0() {
        let s = corpus_bleu(&["a b c d e"], &["a b c d e"]).unwrap();
        assert!((s.score - 100.0).abs() < 1e-9);
        assert_eq!(corpus_bleu(&["x y z w"], &["a b c d"]).unwrap().score, 0.0);
    }

    #[test]
    fn hand_computed_score_with_brevity_penalty_and_smoothing() {
        // hyp "a b c" vs ref "a b c d": p1 = 3/3, p2 = 2/2, p3 = 1/1, p4: no 4-grams → 0 (stop).
        // Precisions stop at the first order without hypothesis n-grams, so p4 = 0 → floor.
        let s = corpus_bleu(&["a b c"], &["a b c d"]).unwrap();
        assert_eq!(s.precisions, [100.0, 100.0, 100.0, 0.0]);
        assert!((s.bp - (1.0f64 - 4.0 / 3.0).exp()).abs() < 1e-12);
        assert!(s.score < 1e-100, "the floor makes it ~0: {}", s.score);

        // hyp "a b x d e" vs ref "a b c d e": p1 = 4/5, p2 = 2/4, p3: 0/3 → 100/(2·3), p4: 0/2 → 100/(4·2).
        let s = corpus_bleu(&["a b x d e"], &["a b c d e"]).unwrap();
        let expected = ((80.0f64).ln() + (50.0f64).ln() + (100.0f64 / 6.0).ln() + (12.5f64).ln()) / 4.0;
        assert!((s.score - expected.exp()).abs() < 1e-9, "{s}");
    }

    #[test]
    fn mismatched_lengths_are_an_error() {
        assert_eq!(
            corpus_bleu(&["a", "b"], &["a"]).unwrap_err(),
            ScoreError::LengthMismatch { hypotheses: 2, references: 1 }
        );
    }

    #[test]
    fn display_matches_sacrebleu_layout() {
        let s = corpus_bleu(&["a b c d e"], &["a b c d e"]).unwrap();
        assert_eq!(
            s.to_string(),
            "BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 hyp_len = 5 ref_len = 5)"
        );
    }
}
