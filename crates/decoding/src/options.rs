//! Decoding settings.

/// How many tokens a sentence may generate (EOS excluded) before EOS is forced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxLength {
    /// `floor(scale · source tokens) + offset`; XLM uses 1.5 and 10.
    Relative {
        scale: f32,
        offset: usize,
    },
    Fixed(usize),
}

impl MaxLength {
    pub const XLM: MaxLength = MaxLength::Relative { scale: 1.5, offset: 10 };

    pub fn for_source(self, source_tokens: usize) -> usize {
        match self {
            MaxLength::Relative { scale, offset } => (scale * source_tokens as f32).floor() as usize + offset,
            MaxLength::Fixed(n) => n,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    /// 1 = greedy.
    pub beam_size: usize,
    pub max_length: MaxLength,
    /// An upper bound on any sentence's maximum length (a server limit), if set.
    pub max_length_cap: Option<usize>,
    /// Exponent of the length normalisation in beam search (1.0 = average log-probability).
    pub length_penalty: f32,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { beam_size: 1, max_length: MaxLength::XLM, max_length_cap: None, length_penalty: 1.0 }
    }
}

impl DecodeOptions {
    /// The maximum generated tokens for a source of this length, at least 1.
    pub fn max_tokens(&self, source_tokens: usize) -> usize {
        let n = self.max_length.for_source(source_tokens);
        self.max_length_cap.map_or(n, |cap| n.min(cap)).max(1)
    }

    /// Beam score of a hypothesis: `log_prob / length^length_penalty`, length counting the EOS.
    pub fn score(&self, log_prob: f32, generated: usize) -> f32 {
        log_prob / ((generated + 1) as f32).powf(self.length_penalty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xlm_rule_and_cap() {
        let options = DecodeOptions::default();
        assert_eq!(options.max_tokens(0), 10);
        assert_eq!(options.max_tokens(7), 20); // floor(10.5) + 10
        let capped = DecodeOptions { max_length_cap: Some(12), ..options };
        assert_eq!(capped.max_tokens(7), 12);
        assert_eq!(DecodeOptions { max_length: MaxLength::Fixed(0), ..options }.max_tokens(3), 1);
    }
}
