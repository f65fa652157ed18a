//! Corpus-level translation quality scores that equal sacreBLEU 2.x with its defaults:
//!
//! - [`corpus_bleu`]: BLEU with the `13a` tokenizer ([`tokenize_13a`]), exponential smoothing,
//!   n-grams up to 4, one reference — sacreBLEU's `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp`;
//! - [`corpus_chrf`]: chrF with character n-grams up to 6, β = 2, whitespace ignored —
//!   `nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no`.
//!
//! Sentences are compared the way sacreBLEU's command line reads files: trailing whitespace (as
//! Python's `str.rstrip` defines it) is dropped first. Tests compare against python `sacrebleu`.
//!
//! ```
//! let hyps = ["The cat sat on the mat."];
//! let refs = ["The cat sat on the mat."];
//! let bleu = xlmc_scoring::corpus_bleu(&hyps, &refs).unwrap();
//! assert!((bleu.score - 100.0).abs() < 1e-9);
//! ```

mod bleu;
mod chrf;
mod tokenizer;

pub use bleu::{BLEU_SIGNATURE, BleuScore, BleuStats, corpus_bleu};
pub use chrf::{CHRF_SIGNATURE, ChrfScore, ChrfStats, corpus_chrf};
pub use tokenizer::tokenize_13a;

/// The sacreBLEU release these scores are tested against.
pub const SACREBLEU_VERSION: &str = "2.6.0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoreError {
    #[error("{hypotheses} hypotheses but {references} references: every hypothesis needs exactly one reference")]
    LengthMismatch { hypotheses: usize, references: usize },
}

/// Sums per-sentence sufficient statistics over a corpus (one reference per hypothesis).
fn corpus_stats<H: AsRef<str>, R: AsRef<str>, S: Default + std::ops::AddAssign>(
    hypotheses: &[H],
    references: &[R],
    sentence: fn(&str, &str) -> S,
) -> Result<S, ScoreError> {
    if hypotheses.len() != references.len() {
        return Err(ScoreError::LengthMismatch { hypotheses: hypotheses.len(), references: references.len() });
    }
    let mut stats = S::default();
    for (hypothesis, reference) in hypotheses.iter().zip(references) {
        stats += sentence(hypothesis.as_ref(), reference.as_ref());
    }
    Ok(stats)
}

/// Python's `str.isspace` for one character: Unicode White_Space plus the four ASCII
/// information separators U+001C–U+001F, which Python also splits on.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` with no argument.
pub fn python_split(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_python_space).filter(|s| !s.is_empty())
}

/// Python's `str.rstrip()` with no argument.
pub fn python_rstrip(text: &str) -> &str {
    text.trim_end_matches(is_python_space)
}

/// Lines of a text file as sacreBLEU's command line reads them: split on `\n` only (a final
/// newline ends the last line rather than starting an empty one), trailing whitespace dropped.
pub fn lines(text: &str) -> Vec<&str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Vec::new();
    }
    body.split('\n').map(python_rstrip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace_includes_information_separators() {
        assert_eq!(python_split("a\u{1f}b\u{a0}c  d\u{2003}").collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        assert_eq!(python_rstrip("x \t\u{1c}\r"), "x");
    }

    #[test]
    fn file_lines_follow_python_iteration() {
        assert_eq!(lines(""), Vec::<&str>::new());
        assert_eq!(lines("a\n"), ["a"]);
        assert_eq!(lines("a\n\nb"), ["a", "", "b"]);
        assert_eq!(lines("a\r\n\n"), ["a", ""]);
    }
}
