//! A scripted step model: each row's log-probabilities depend only on its own source and the
//! tokens it was fed, through a hash, so any mix-up of rows by the search changes the output.
//! It counts rows per step, so tests can see finished rows leave, and fails on request, so tests
//! can see what a model error does. Public behind the `testing` feature for other crates' tests
//! (the server's engine).

use crate::{EOS_ID, StepModel};

#[derive(Debug, thiserror::Error)]
#[error("scripted model failure at {0}")]
pub struct ScriptedFailure(pub &'static str);

#[derive(Debug, Clone)]
pub struct FakeRow {
    source: Vec<u32>,
    /// Tokens fed so far, starting with `</s>`.
    fed: Vec<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct ScriptedModel {
    pub vocab: usize,
    /// How strongly EOS is pulled as the output grows past the source length (it starts 2 below
    /// the other tokens); ≤ −1e9 means never.
    pub eos_pull: f32,
    pub rows_per_step: Vec<usize>,
    /// Padded source tokens of each `encode` (rows × the longest source): the encoder's work.
    pub encoded_tokens: Vec<usize>,
    /// Rows kept by each `select` (each one a gather of every cached tensor in a real model).
    pub selects: Vec<usize>,
    /// When set, `step` returns this many values instead of rows × vocab.
    pub wrong_output_len: Option<usize>,
    /// When set, the step after this many successful ones fails.
    pub fail_after_steps: Option<usize>,
    /// When set, encoding a batch with a source containing this token fails.
    pub fail_encoding_token: Option<u32>,
}

impl ScriptedModel {
    pub fn new(vocab: usize) -> Self {
        Self { vocab, eos_pull: 0.15, ..Default::default() }
    }
}

fn mix(mut h: u64, x: u64) -> u64 {
    h ^= x.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_add(h << 6).wrapping_add(h >> 2);
    h = (h ^ (h >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^ (h >> 29)
}

impl StepModel for ScriptedModel {
    type State = Vec<FakeRow>;
    type Error = ScriptedFailure;

    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn encode(&mut self, sources: &[Vec<u32>]) -> Result<Self::State, ScriptedFailure> {
        if let Some(token) = self.fail_encoding_token
            && sources.iter().any(|s| s.contains(&token))
        {
            return Err(ScriptedFailure("encode"));
        }
        self.encoded_tokens.push(sources.len() * sources.iter().map(Vec::len).max().unwrap_or(0));
        Ok(sources.iter().map(|s| FakeRow { source: s.clone(), fed: Vec::new() }).collect())
    }

    fn step(&mut self, state: &mut Self::State, last_tokens: &[u32]) -> Result<Vec<f32>, ScriptedFailure> {
        assert_eq!(state.len(), last_tokens.len(), "one last token per row");
        if self.fail_after_steps == Some(self.rows_per_step.len()) {
            return Err(ScriptedFailure("step"));
        }
        self.rows_per_step.push(state.len());
        let mut out = Vec::with_capacity(state.len() * self.vocab);
        for (row, &last) in state.iter_mut().zip(last_tokens) {
            if row.fed.is_empty() {
                assert_eq!(last, EOS_ID, "decoding starts from </s>");
            }
            row.fed.push(last);
            let seed = row.source.iter().chain(&row.fed).fold(17u64, |h, &t| mix(h, u64::from(t)));
            let logits: Vec<f32> = (0..self.vocab)
                .map(|t| {
                    let noise = (mix(seed, t as u64) % 10_000) as f32 / 2_500.0 - 2.0;
                    if t as u32 == EOS_ID {
                        let over = row.fed.len() as f32 - row.source.len() as f32;
                        if self.eos_pull <= -1e9 { f32::NEG_INFINITY } else { noise - 2.0 + self.eos_pull * over }
                    } else {
                        noise
                    }
                })
                .collect();
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let log_sum = logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln() + max;
            out.extend(logits.iter().map(|l| l - log_sum));
        }
        Ok(match self.wrong_output_len {
            Some(n) => vec![0.0; n],
            None => out,
        })
    }

    fn select(&mut self, state: &mut Self::State, rows: &[usize]) -> Result<(), ScriptedFailure> {
        *state = rows.iter().map(|&r| state[r].clone()).collect();
        self.selects.push(rows.len());
        Ok(())
    }

    fn append(&mut self, state: &mut Self::State, other: Self::State) -> Result<(), ScriptedFailure> {
        state.extend(other);
        Ok(())
    }
}
