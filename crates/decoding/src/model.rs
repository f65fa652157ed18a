//! The step-model trait: what a backend implements to be decoded by [`crate::Search`].

/// A sequence-to-sequence model run one decoder step at a time over a batch of rows.
///
/// A *row* is one partial translation; with beam search a sentence has `beam_size` rows. Rows are
/// identified by their position in the state; [`StepModel::select`] and
/// [`StepModel::append`] are the only ways rows change, so a backend can keep per-row caches
/// (encoder output, self-attention K/V, recurrent state) aligned with them.
pub trait StepModel {
    /// Per-row decoding state: encoder outputs, caches.
    type State;
    type Error: std::error::Error + Send + Sync + 'static;

    /// Size of the output vocabulary (length of each row's log-probabilities).
    fn vocab_size(&self) -> usize;

    /// Encodes source token sequences (no special tokens); one state row per source.
    fn encode(&mut self, sources: &[Vec<u32>]) -> Result<Self::State, Self::Error>;

    /// Runs one decoder step: `last_tokens[r]` is row r's previous token (`</s>` at the start).
    /// Returns row-major log-probabilities, `rows × vocab_size`, and advances the caches.
    fn step(&mut self, state: &mut Self::State, last_tokens: &[u32]) -> Result<Vec<f32>, Self::Error>;

    /// Keeps the rows listed, in that order; a row may be listed several times (beam search
    /// copies a hypothesis into several continuations).
    fn select(&mut self, state: &mut Self::State, rows: &[usize]) -> Result<(), Self::Error>;

    /// Appends `other`'s rows after `state`'s. Rows may differ in how many steps they have taken
    /// (continuous batching): a backend keeps each row's own position.
    fn append(&mut self, state: &mut Self::State, other: Self::State) -> Result<(), Self::Error>;
}

/// XLM's encoder input for a batch: each row `</s> w1 … wn </s>`, padded with `pad` to the
/// longest. Returns the row-major tokens, the width, and each row's length (both `</s>` counted).
/// Every backend lays sources out through this one function.
pub fn xlm_source_layout(sources: &[Vec<u32>], eos: i64, pad: i64) -> (Vec<i64>, usize, Vec<i64>) {
    let width = sources.iter().map(Vec::len).max().unwrap_or(0) + 2;
    let mut tokens = vec![pad; sources.len() * width];
    let mut lengths = Vec::with_capacity(sources.len());
    for (row, source) in sources.iter().enumerate() {
        let line = &mut tokens[row * width..(row + 1) * width];
        line[0] = eos;
        for (slot, &token) in line[1..].iter_mut().zip(source) {
            *slot = i64::from(token);
        }
        line[source.len() + 1] = eos;
        lengths.push(source.len() as i64 + 2);
    }
    (tokens, width, lengths)
}
