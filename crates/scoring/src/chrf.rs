//! Corpus chrF, sacreBLEU's defaults: character n-grams 1–6, β = 2, whitespace removed.

use std::{collections::HashMap, fmt};

use crate::{ScoreError, corpus_stats, python_split};

const CHAR_ORDER: usize = 6;
const BETA: f64 = 2.0;

/// sacreBLEU's signature for the configuration [`corpus_chrf`] reproduces.
pub const CHRF_SIGNATURE: &str = "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0";

/// Per order: hypothesis n-grams, reference n-grams, matches. Additive over sentences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChrfStats {
    pub orders: [[u64; 3]; CHAR_ORDER],
}

impl std::ops::AddAssign for ChrfStats {
    fn add_assign(&mut self, other: Self) {
        for (mine, theirs) in self.orders.iter_mut().zip(other.orders) {
            for k in 0..3 {
                mine[k] += theirs[k];
            }
        }
    }
}

fn char_ngrams(chars: &[char], n: usize) -> HashMap<&[char], u64> {
    let mut counts = HashMap::new();
    for gram in chars.windows(n) {
        *counts.entry(gram).or_insert(0) += 1;
    }
    counts
}

impl ChrfStats {
    /// Statistics of one hypothesis against its reference.
    pub fn sentence(hypothesis: &str, reference: &str) -> Self {
        let squeeze = |s: &str| -> Vec<char> { python_split(s).flat_map(str::chars).collect() };
        let (hyp, reference) = (squeeze(hypothesis), squeeze(reference));
        let mut stats = ChrfStats::default();
        for (i, order) in stats.orders.iter_mut().enumerate() {
            let (hyp_grams, ref_grams) = (char_ngrams(&hyp, i + 1), char_ngrams(&reference, i + 1));
            let hyp_count: u64 = hyp_grams.values().sum();
            let matches: u64 = hyp_grams.iter().map(|(g, &c)| c.min(ref_grams.get(g).copied().unwrap_or(0))).sum();
            // sacreBLEU counts no hypothesis n-grams for an order the reference lacks.
            *order = [if ref_grams.is_empty() { 0 } else { hyp_count }, ref_grams.values().sum(), matches];
        }
        stats
    }

    /// chrF from statistics: precision and recall averaged over the orders both sides have.
    pub fn score(&self) -> ChrfScore {
        let factor = BETA * BETA;
        let (mut avg_prec, mut avg_rec, mut effective_order) = (0.0, 0.0, 0usize);
        // Orders where either side has no n-grams are left out (sacreBLEU's effective order).
        for &[n_hyp, n_ref, n_match] in self.orders.iter().filter(|[h, r, _]| *h > 0 && *r > 0) {
            avg_prec += n_match as f64 / n_hyp as f64;
            avg_rec += n_match as f64 / n_ref as f64;
            effective_order += 1;
        }
        if effective_order == 0 {
            (avg_prec, avg_rec) = (0.0, 0.0);
        } else {
            avg_prec /= effective_order as f64;
            avg_rec /= effective_order as f64;
        }
        let score = if avg_prec + avg_rec != 0.0 {
            100.0 * ((1.0 + factor) * avg_prec * avg_rec) / (factor * avg_prec + avg_rec)
        } else {
            0.0
        };
        ChrfScore { score, stats: *self }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChrfScore {
    /// 0–100.
    pub score: f64,
    pub stats: ChrfStats,
}

/// sacreBLEU's text: `chrF2 = 56.78`.
impl fmt::Display for ChrfScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chrF2 = {:.2}", self.score)
    }
}

/// Corpus chrF of `hypotheses` against one reference each.
pub fn corpus_chrf<H: AsRef<str>, R: AsRef<str>>(hypotheses: &[H], references: &[R]) -> Result<ChrfScore, ScoreError> {
    Ok(corpus_stats(hypotheses, references, ChrfStats::sentence)?.score())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_is_100_and_whitespace_does_not_count() {
        assert!((corpus_chrf(&["le chat"], &["le  chat "]).unwrap().score - 100.0).abs() < 1e-9);
        assert!((corpus_chrf(&["lechat"], &["le chat"]).unwrap().score - 100.0).abs() < 1e-9);
        assert_eq!(corpus_chrf(&["xyz"], &["abc"]).unwrap().score, 0.0);
    }

    #[test]
    fn hand_computed_two_character_case() {
        // hyp "ab" vs ref "ac": order 1: hyp 2, ref 2, match 1; order 2: hyp 1, ref 1, match 0;
        // orders 3–6: the reference has none, so they do not count.
        let s = corpus_chrf(&["ab"], &["ac"]).unwrap();
        assert_eq!(s.stats.orders[0], [2, 2, 1]);
        assert_eq!(s.stats.orders[1], [1, 1, 0]);
        assert_eq!(s.stats.orders[2], [0, 0, 0]);
        // avg precision = avg recall = (0.5 + 0) / 2 = 0.25 → F = 0.25.
        assert!((s.score - 25.0).abs() < 1e-9, "{s}");
    }
}
