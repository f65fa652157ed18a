//! [`Search`]: greedy and beam search over a batch whose finished rows leave it (greedy: lazily,
//! see [`crate::slots`]; beam: at once, as its rows are reordered at every step anyway).

use std::{cmp::Ordering, collections::HashMap};

use crate::{DecodeError, DecodeOptions, EOS_ID, StepModel, slots::Slots};

/// Why a hypothesis ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model chose end-of-sentence.
    Eos,
    /// The sentence reached its maximum length; EOS was forced (its log-probability not added).
    MaxLength,
}

/// One finished translation, in token ids (EOS excluded).
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    pub tokens: Vec<u32>,
    /// Sum of the chosen tokens' log-probabilities (EOS included when the model chose it).
    pub log_prob: f32,
    /// What the search ranked by: `log_prob / (tokens + 1)^length_penalty`.
    pub score: f32,
    pub finish: Finish,
}

/// A sentence that completed during a [`Search::step`].
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The id given to [`Search::join`].
    pub id: u64,
    pub hypothesis: Hypothesis,
    /// Decoder steps this sentence took part in.
    pub steps: usize,
}

/// One model row: a partial hypothesis of sentence `id`.
#[derive(Debug, Clone)]
struct Row {
    id: u64,
    tokens: Vec<u32>,
    log_prob: f32,
}

#[derive(Debug)]
struct Sentence {
    max_tokens: usize,
    steps: usize,
    /// Beam search: the best `beam_size` finished hypotheses so far.
    finished: Vec<Hypothesis>,
}

/// Decoding in progress over a model state; sentences join between steps and leave when done.
///
/// Invariant: with beam size K, the rows of a sentence are K consecutive state rows.
///
/// A model error while the state holds the batch (a step, a leave, rows appended) ends the
/// search: that call returns the model's error (unless some sentences had finished in that
/// step: they are returned, being complete) and every later call [`DecodeError::Failed`] with its
/// message; the unfinished sentences stay listed but never finish, and the caller answers them.
/// An error while encoding newcomers changes nothing: only they failed.
#[derive(Debug)]
pub struct Search<S> {
    options: DecodeOptions,
    state: Option<S>,
    rows: Slots<Row>,
    sentences: HashMap<u64, Sentence>,
    failed: Option<String>,
}

impl<S> Search<S> {
    /// A search with no sentence yet; `beam_size` 0 is refused when sentences join.
    pub fn new(options: DecodeOptions) -> Self {
        Self { options, state: None, rows: Slots::default(), sentences: HashMap::new(), failed: None }
    }

    /// The model error that ended this search, if one did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// No sentence is being decoded.
    pub fn is_empty(&self) -> bool {
        self.sentences.is_empty()
    }

    /// Sentences being decoded.
    pub fn active_sentences(&self) -> usize {
        self.sentences.len()
    }

    /// Rows of active sentences (sentences × beam).
    pub fn active_rows(&self) -> usize {
        self.rows.live()
    }

    /// Rows in the model state: active rows, and finished rows not compacted away yet.
    pub fn state_rows(&self) -> usize {
        self.rows.len()
    }
}

type StepResult<T, M> = Result<T, DecodeError<<M as StepModel>::Error>>;

impl<S> Search<S> {
    fn check_alive<E: std::error::Error + 'static>(&self) -> Result<(), DecodeError<E>> {
        match &self.failed {
            Some(message) => Err(DecodeError::Failed(message.clone())),
            None => Ok(()),
        }
    }

    /// Records `error` as the end of this search (the state is dropped) and returns it.
    fn fail<E: std::error::Error + 'static>(&mut self, error: DecodeError<E>) -> DecodeError<E> {
        self.state = None;
        self.failed = Some(error.to_string());
        error
    }

    /// Encodes `sentences` (caller's id, source tokens) and adds them to the batch; they take
    /// part from the next step on.
    pub fn join<M: StepModel<State = S>>(
        &mut self,
        model: &mut M,
        sentences: Vec<(u64, Vec<u32>)>,
    ) -> StepResult<(), M> {
        self.join_with_max_tokens(model, sentences, None)
    }

    /// [`Search::join`] where `max_tokens`, when given, replaces the options' length rule for
    /// these sentences (a request's own `max_length`; the options' cap still applies).
    pub fn join_with_max_tokens<M: StepModel<State = S>>(
        &mut self,
        model: &mut M,
        sentences: Vec<(u64, Vec<u32>)>,
        max_tokens: Option<usize>,
    ) -> StepResult<(), M> {
        self.check_alive()?;
        if self.options.beam_size == 0 {
            return Err(DecodeError::ZeroBeam);
        }
        if sentences.is_empty() {
            return Ok(());
        }
        let mut ids = std::collections::HashSet::new();
        for (id, _) in &sentences {
            if self.sentences.contains_key(id) || !ids.insert(*id) {
                return Err(DecodeError::DuplicateId(*id));
            }
        }
        let sources: Vec<Vec<u32>> = sentences.iter().map(|(_, s)| s.clone()).collect();
        let (order, mut state) = encode_by_length(model, &sources).map_err(DecodeError::Model)?;
        let k = self.options.beam_size;
        if k > 1 {
            let rows: Vec<usize> = (0..sources.len()).flat_map(|i| std::iter::repeat_n(i, k)).collect();
            model.select(&mut state, &rows).map_err(DecodeError::Model)?;
        }
        let mut sentences: Vec<Option<(u64, Vec<u32>)>> = sentences.into_iter().map(Some).collect();
        for (id, source) in order.iter().map(|&i| sentences[i].take().expect("each source once")) {
            let max_tokens = match max_tokens {
                Some(n) => DecodeOptions { max_length: crate::MaxLength::Fixed(n), ..self.options }.max_tokens(0),
                None => self.options.max_tokens(source.len()),
            };
            self.sentences.insert(id, Sentence { max_tokens, steps: 0, finished: Vec::new() });
            // Beams start identical; only the first may expand at the first step.
            for beam in 0..k {
                let log_prob = if beam == 0 { 0.0 } else { f32::NEG_INFINITY };
                self.rows.push(Row { id, tokens: Vec::new(), log_prob });
            }
        }
        match self.state.as_mut() {
            None => self.state = Some(state),
            Some(existing) => {
                if let Err(e) = model.append(existing, state) {
                    return Err(self.fail(DecodeError::Model(e)));
                }
            }
        }
        Ok(())
    }

    /// Runs one decoder step for every active row; returns the sentences that finished. Their
    /// rows are removed from the model state before this returns.
    pub fn step<M: StepModel<State = S>>(&mut self, model: &mut M) -> StepResult<Vec<Finished>, M> {
        self.check_alive()?;
        let Some(mut state) = self.state.take() else { return Ok(Vec::new()) };
        if self.rows.should_compact(self.position_limit()) {
            let keep = self.rows.compact();
            if let Err(e) = model.select(&mut state, &keep) {
                return Err(self.fail(DecodeError::Model(e)));
            }
        }
        let last = self.rows.per_row(|r| r.tokens.last().copied().unwrap_or(EOS_ID), EOS_ID);
        let log_probs = match model.step(&mut state, &last) {
            Ok(log_probs) => log_probs,
            Err(e) => return Err(self.fail(DecodeError::Model(e))),
        };
        let vocab = model.vocab_size();
        if log_probs.len() != last.len() * vocab {
            return Err(self.fail(DecodeError::Shape { got: log_probs.len(), rows: last.len(), vocab }));
        }
        let (finished, keep) = if self.options.beam_size == 1 {
            self.rows.stepped_dead();
            (self.greedy(&log_probs, vocab), None)
        } else {
            let rows = self.rows.take_compact();
            let (next, keep, finished) = self.beam(rows, &log_probs, vocab);
            self.rows.replace(next);
            (finished, Some(keep))
        };
        for done in &finished {
            self.sentences.remove(&done.id);
        }
        if self.rows.live() == 0 {
            self.rows = Slots::default();
            return Ok(finished); // the state, with every cache of this batch, is dropped
        }
        if let Some(keep) = keep
            && (keep.len() != last.len() || keep.iter().enumerate().any(|(i, &r)| i != r))
            && let Err(e) = model.select(&mut state, &keep)
        {
            // The finished sentences are done whatever the state: the error is the others'.
            let error = self.fail(DecodeError::Model(e));
            return if finished.is_empty() { Err(error) } else { Ok(finished) };
        }
        self.state = Some(state);
        Ok(finished)
    }

    /// One past the furthest decoder position a live row may step at: its sentence's maximum
    /// length (a row with that many tokens has finished).
    fn position_limit(&self) -> usize {
        self.rows.live_rows().map(|row| self.sentences[&row.id].max_tokens).max().unwrap_or(0)
    }

    /// Drops the sentences `ids` (a cancelled request, a passed deadline) and their rows from the
    /// model state; ids not being decoded are ignored. Returns how many sentences left.
    pub fn leave<M: StepModel<State = S>>(&mut self, model: &mut M, ids: &[u64]) -> StepResult<usize, M> {
        self.check_alive()?;
        let leaving: HashMap<u64, usize> =
            ids.iter().filter_map(|id| self.sentences.get(id).map(|sentence| (*id, sentence.steps))).collect();
        if leaving.is_empty() {
            return Ok(0);
        }
        self.rows.kill_where(|row| leaving.contains_key(&row.id), |row| leaving[&row.id]);
        for id in leaving.keys() {
            self.sentences.remove(id);
        }
        if self.rows.live() == 0 {
            self.rows = Slots::default();
            self.state = None;
        } else if self.options.beam_size > 1 {
            // Beam rows are compact at every step.
            let keep = self.rows.compact();
            if let Some(state) = self.state.as_mut()
                && let Err(e) = model.select(state, &keep)
            {
                return Err(self.fail(DecodeError::Model(e)));
            }
        }
        Ok(leaving.len())
    }

    /// Appends each live row's arg-max; rows that finish are returned and left dead in place.
    fn greedy(&mut self, log_probs: &[f32], vocab: usize) -> Vec<Finished> {
        let mut finished = Vec::new();
        let (sentences, options) = (&mut self.sentences, self.options);
        self.rows.retire(|r, row| {
            let (token, log_prob) = argmax(&log_probs[r * vocab..(r + 1) * vocab]);
            let sentence = sentences.get_mut(&row.id).expect("row of an active sentence");
            sentence.steps += 1;
            row.log_prob += log_prob;
            let finish = if token == EOS_ID {
                Some(Finish::Eos)
            } else {
                row.tokens.push(token);
                (row.tokens.len() >= sentence.max_tokens).then_some(Finish::MaxLength)
            }?;
            let score = options.score(row.log_prob, row.tokens.len());
            let hypothesis =
                Hypothesis { tokens: std::mem::take(&mut row.tokens), log_prob: row.log_prob, score, finish };
            finished.push(Finished { id: row.id, hypothesis, steps: sentence.steps });
            // Dead from now on, at the position its next step would have had.
            Some(sentence.steps)
        });
        finished
    }

    fn beam(&mut self, rows: Vec<Row>, log_probs: &[f32], vocab: usize) -> (Vec<Row>, Vec<usize>, Vec<Finished>) {
        let k = self.options.beam_size;
        let (mut next, mut keep, mut finished) = (Vec::new(), Vec::new(), Vec::new());
        for (group, beams) in rows.chunks(k).enumerate() {
            let base = group * k;
            let id = beams[0].id;
            let options = self.options;
            let sentence = self.sentences.get_mut(&id).expect("rows of an active sentence");
            sentence.steps += 1;
            let length = beams[0].tokens.len() + 1; // tokens after this step, EOS not counted
            let at_max = length >= sentence.max_tokens;

            let mut candidates = Vec::with_capacity(k * vocab);
            for (b, beam) in beams.iter().enumerate().filter(|(_, beam)| beam.log_prob > f32::NEG_INFINITY) {
                let row_log_probs = &log_probs[(base + b) * vocab..(base + b + 1) * vocab];
                for (token, &lp) in row_log_probs.iter().enumerate() {
                    if lp > f32::NEG_INFINITY {
                        candidates.push(Candidate { log_prob: beam.log_prob + lp, beam: b, token: token as u32 });
                    }
                }
            }
            let best = top(&mut candidates, 2 * k);

            // Walk the best 2K: EOS continuations finish; the first K others go on (or, at the
            // maximum length, finish with EOS forced).
            let mut alive = Vec::with_capacity(k);
            for candidate in best {
                let beam = &beams[candidate.beam];
                if candidate.token == EOS_ID || at_max {
                    let mut tokens = beam.tokens.clone();
                    let finish = if candidate.token == EOS_ID {
                        Finish::Eos
                    } else {
                        tokens.push(candidate.token);
                        Finish::MaxLength
                    };
                    let score = options.score(candidate.log_prob, tokens.len());
                    keep_best(
                        &mut sentence.finished,
                        Hypothesis { tokens, log_prob: candidate.log_prob, score, finish },
                        k,
                    );
                } else {
                    alive.push(candidate);
                }
                if alive.len() == k {
                    break;
                }
            }

            let done = at_max
                || alive.is_empty()
                || (sentence.finished.len() >= k
                    && sentence.finished.iter().map(|h| h.score).fold(f32::INFINITY, f32::min)
                        >= options.score(alive[0].log_prob, length));
            if done {
                let best = sentence.finished.iter().cloned().reduce(|a, b| if b.score > a.score { b } else { a });
                let hypothesis = best.expect("a finished sentence has a hypothesis");
                finished.push(Finished { id, hypothesis, steps: sentence.steps });
                continue;
            }
            // Fewer than K continuations only happens with a vocabulary smaller than K: pad
            // with dead copies to keep K rows per sentence.
            for slot in 0..k {
                let (candidate, dead) = match alive.get(slot) {
                    Some(c) => (*c, false),
                    None => (alive[0], true),
                };
                let beam = &beams[candidate.beam];
                let mut tokens = beam.tokens.clone();
                tokens.push(candidate.token);
                let log_prob = if dead { f32::NEG_INFINITY } else { candidate.log_prob };
                keep.push(base + candidate.beam);
                next.push(Row { id, tokens, log_prob });
            }
        }
        (next, keep, finished)
    }
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    log_prob: f32,
    beam: usize,
    token: u32,
}

/// Best first; ties go to the lower beam, then the lower token id, so results never depend on
/// sort stability or batch composition.
fn rank(a: &Candidate, b: &Candidate) -> Ordering {
    b.log_prob.total_cmp(&a.log_prob).then(a.beam.cmp(&b.beam)).then(a.token.cmp(&b.token))
}

/// The `n` best candidates, best first.
fn top(candidates: &mut Vec<Candidate>, n: usize) -> Vec<Candidate> {
    if candidates.len() > n {
        candidates.select_nth_unstable_by(n, rank);
        candidates.truncate(n);
    }
    candidates.sort_by(rank);
    std::mem::take(candidates)
}

/// Arg-max, lowest id on ties; NaN counts as −∞.
fn argmax(log_probs: &[f32]) -> (u32, f32) {
    let mut best = (0u32, f32::NEG_INFINITY);
    for (token, &lp) in log_probs.iter().enumerate() {
        if lp > best.1 {
            best = (token as u32, lp);
        }
    }
    best
}

/// Encodes `sources` in groups of similar length, shortest first, and joins the groups' states:
/// the encoder's work grows with the padded width, so one long sentence must not pad every short
/// one of a large batch (the last 64 of 256 test sentences sorted by length: 4× faster), while a
/// few sentences still go in one call (each call has a fixed cost). Returns the
/// source index of each state row and the state.
fn encode_by_length<M: StepModel>(model: &mut M, sources: &[Vec<u32>]) -> Result<(Vec<usize>, M::State), M::Error> {
    let mut order: Vec<usize> = (0..sources.len()).collect();
    order.sort_by_key(|&i| sources[i].len());
    let mut state: Option<M::State> = None;
    let mut start = 0;
    while start < order.len() {
        // A group grows (sorted, so each source is its longest) while its padded tokens stay
        // within a quarter (and 64 tokens) of its real ones: one call for a few sentences.
        let (mut end, mut real) = (start, 0);
        while end < order.len() {
            let length = sources[order[end]].len();
            if end > start && (end + 1 - start) * length > (real + length) * 5 / 4 + 64 {
                break;
            }
            real += length;
            end += 1;
        }
        let group: Vec<Vec<u32>> = order[start..end].iter().map(|&i| sources[i].clone()).collect();
        let encoded = model.encode(&group)?;
        match state.as_mut() {
            None => state = Some(encoded),
            Some(state) => model.append(state, encoded)?,
        }
        start = end;
    }
    Ok((order, state.expect("at least one source")))
}

/// Adds a finished hypothesis, keeping the best `k` (on equal scores the earlier one stays).
fn keep_best(finished: &mut Vec<Hypothesis>, hypothesis: Hypothesis, k: usize) {
    finished.push(hypothesis);
    if finished.len() > k {
        let worst = finished
            .iter()
            .enumerate()
            .rev()
            .min_by(|a, b| a.1.score.total_cmp(&b.1.score))
            .map(|(i, _)| i)
            .expect("non-empty");
        finished.remove(worst);
    }
}

/// Decodes every source (one batch) and returns their hypotheses in input order.
pub fn decode<M: StepModel>(
    model: &mut M,
    sources: &[Vec<u32>],
    options: DecodeOptions,
) -> StepResult<Vec<Hypothesis>, M> {
    let mut search = Search::new(options);
    search.join(model, sources.iter().cloned().enumerate().map(|(i, s)| (i as u64, s)).collect())?;
    let mut out: Vec<Option<Hypothesis>> = vec![None; sources.len()];
    while !search.is_empty() {
        for done in search.step(model)? {
            out[done.id as usize] = Some(done.hypothesis);
        }
    }
    Ok(out.into_iter().map(|h| h.expect("every sentence finishes within its maximum length")).collect())
}

/// Decodes `sources` the way a continuous-batching server sees them: before every step the next
/// `joins_per_step` sentences join the running search (at least one). A backend whose `append`
/// keeps each row's own position gives exactly what [`decode`] gives.
pub fn decode_joining<M: StepModel>(
    model: &mut M,
    sources: &[Vec<u32>],
    options: DecodeOptions,
    joins_per_step: usize,
) -> StepResult<Vec<Hypothesis>, M> {
    let mut search = Search::new(options);
    let mut out: Vec<Option<Hypothesis>> = vec![None; sources.len()];
    let mut next = 0;
    while next < sources.len() || !search.is_empty() {
        let end = (next + joins_per_step.max(1)).min(sources.len());
        search.join(model, (next..end).map(|i| (i as u64, sources[i].clone())).collect())?;
        next = end;
        for done in search.step(model)? {
            out[done.id as usize] = Some(done.hypothesis);
        }
    }
    Ok(out.into_iter().map(|h| h.expect("every sentence finishes within its maximum length")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MaxLength, testing::ScriptedModel};

    const VOCAB: usize = 24;

    /// 200 sources of 0–29 tokens (ids ≥ 4, like real text).
    fn sources() -> Vec<Vec<u32>> {
        (0..200u32).map(|i| (0..(i * 7 % 30)).map(|j| 4 + (i * 31 + j * 7) % 20).collect()).collect()
    }

    fn decode_in_batches(sources: &[Vec<u32>], batch: usize, options: DecodeOptions) -> Vec<Hypothesis> {
        let mut model = ScriptedModel::new(VOCAB);
        sources.chunks(batch).flat_map(|chunk| decode(&mut model, chunk, options).unwrap()).collect()
    }

    #[test]
    fn every_sentence_is_identical_at_batch_1_7_and_64() {
        let sources = sources();
        for beam_size in [1, 4] {
            let options = DecodeOptions { beam_size, ..Default::default() };
            let one = decode_in_batches(&sources, 1, options);
            assert_eq!(decode_in_batches(&sources, 7, options), one, "beam {beam_size}, batch 7");
            assert_eq!(decode_in_batches(&sources, 64, options), one, "beam {beam_size}, batch 64");
            if beam_size == 1 {
                let eos = one.iter().filter(|h| h.finish == Finish::Eos).count();
                assert!((40..=160).contains(&eos), "mixed endings expected, {eos} EOS of 200");
            }
        }
    }

    #[test]
    fn finished_rows_leave_lazily_with_waste_bounded_by_the_batch() {
        let sources = sources();
        let mut model = ScriptedModel::new(VOCAB);
        let mut search = Search::new(DecodeOptions::default());
        search.join(&mut model, sources.iter().cloned().enumerate().map(|(i, s)| (i as u64, s)).collect()).unwrap();
        let (mut live_per_step, mut finishing_steps, mut steps_of) = (Vec::new(), 0, vec![0; sources.len()]);
        while !search.is_empty() {
            live_per_step.push(search.active_rows());
            let done = search.step(&mut model).unwrap();
            finishing_steps += usize::from(!done.is_empty());
            for d in done {
                let expected = d.hypothesis.tokens.len() + usize::from(d.hypothesis.finish == Finish::Eos);
                assert_eq!(d.steps, expected, "a row is stepped once per generated token");
                steps_of[d.id as usize] = d.steps;
            }
        }
        let rows = &model.rows_per_step;
        assert_eq!(live_per_step.iter().sum::<usize>(), steps_of.iter().sum::<usize>(), "live row-steps");
        // Between two gathers, the row-steps spent on dead rows stay within the rows gathered
        // from (a gather costs about one step of the batch).
        let mut waste = 0;
        for t in 0..rows.len() {
            if t > 0 && rows[t] < rows[t - 1] {
                assert!(waste <= rows[t - 1], "step {t}: {waste} dead row-steps before a gather of {}", rows[t - 1]);
                waste = 0;
            }
            assert!(rows[t] >= live_per_step[t]);
            waste += rows[t] - live_per_step[t];
        }
        assert!(rows.iter().sum::<usize>() <= 2 * steps_of.iter().sum::<usize>(), "waste at most the useful work");
        // Sentences finished at many steps, but the cache was gathered far fewer times.
        assert!(finishing_steps >= 20, "{finishing_steps} steps with a finish");
        assert!(
            model.selects.len() * 3 <= finishing_steps,
            "{} gathers for {finishing_steps} steps at which rows finished",
            model.selects.len()
        );
        assert!(rows.last().unwrap() < &10, "the batch drains: {rows:?}");
    }

    #[test]
    fn one_long_source_does_not_pad_the_short_ones() {
        let mut sources: Vec<Vec<u32>> = (0..63).map(|i| vec![5 + i % 7; 8 + i as usize % 5]).collect();
        sources.insert(17, vec![6; 200]);
        let real: usize = sources.iter().map(Vec::len).sum();
        let mut model = ScriptedModel::new(VOCAB);
        let out = decode(&mut model, &sources, DecodeOptions::default()).unwrap();
        let padded: usize = model.encoded_tokens.iter().sum();
        // One batch padded to the longest would encode 64 × 200 = 12,800 tokens for 966 real ones.
        assert!(padded * 2 <= real * 3, "{padded} tokens encoded for {real}");
        let alone: Vec<Hypothesis> = sources
            .iter()
            .flat_map(|s| decode(&mut model, std::slice::from_ref(s), DecodeOptions::default()).unwrap())
            .collect();
        assert_eq!(out, alone, "grouping changes no output and keeps the caller's order");
    }

    #[test]
    fn beam_rows_leave_per_sentence_too() {
        let sources = &sources()[..40];
        let mut model = ScriptedModel::new(VOCAB);
        let options = DecodeOptions { beam_size: 3, ..Default::default() };
        decode(&mut model, sources, options).unwrap();
        let rows = &model.rows_per_step;
        assert_eq!(rows[0], 40 * 3);
        assert!(rows.iter().all(|r| r % 3 == 0));
        assert!(rows.windows(2).all(|w| w[1] <= w[0]) && rows.last().unwrap() < &rows[0]);
    }

    #[test]
    fn eos_is_forced_at_the_maximum_length() {
        let mut model = ScriptedModel { eos_pull: -1e10, ..ScriptedModel::new(VOCAB) };
        for beam_size in [1, 3] {
            let options = DecodeOptions { beam_size, ..Default::default() };
            let out = decode(&mut model, &[vec![5; 4], vec![]], options).unwrap();
            assert_eq!(out[0].tokens.len(), 16, "1.5 · 4 + 10");
            assert_eq!(out[1].tokens.len(), 10);
            assert!(out.iter().all(|h| h.finish == Finish::MaxLength && !h.tokens.contains(&EOS_ID)));
        }
        let capped = DecodeOptions { max_length: MaxLength::Fixed(3), ..Default::default() };
        assert_eq!(decode(&mut model, &[vec![5; 4]], capped).unwrap()[0].tokens.len(), 3);
    }

    #[test]
    fn sentences_joining_mid_decode_get_the_same_result() {
        let sources = sources();
        for beam_size in [1, 4] {
            let options = DecodeOptions { beam_size, ..Default::default() };
            let alone = decode_in_batches(&sources[..20], 1, options);
            let mut model = ScriptedModel::new(VOCAB);
            let mut search = Search::new(options);
            let mut out: Vec<Option<Hypothesis>> = vec![None; 20];
            let mut next = 0;
            while next < 20 || !search.is_empty() {
                // Two new sentences join before every step while any are left.
                let joining: Vec<(u64, Vec<u32>)> =
                    (next..(next + 2).min(20)).map(|i| (i as u64, sources[i].clone())).collect();
                next += joining.len();
                search.join(&mut model, joining).unwrap();
                for done in search.step(&mut model).unwrap() {
                    out[done.id as usize] = Some(done.hypothesis);
                }
            }
            let joined: Vec<Hypothesis> = out.into_iter().map(Option::unwrap).collect();
            assert_eq!(joined, alone, "beam {beam_size}");
        }
    }

    #[test]
    fn leaving_sentences_do_not_change_the_others_and_own_limits_apply() {
        let sources = sources();
        for beam_size in [1, 3] {
            let options = DecodeOptions { beam_size, ..Default::default() };
            let alone = decode_in_batches(&sources[..12], 1, options);
            let mut model = ScriptedModel::new(VOCAB);
            let mut search = Search::new(options);
            search.join(&mut model, (0..12u64).map(|i| (i, sources[i as usize].clone())).collect()).unwrap();
            search.join_with_max_tokens(&mut model, vec![(99, sources[0].clone())], Some(2)).unwrap();
            let mut out: Vec<Option<Hypothesis>> = vec![None; 12];
            let mut capped = None;
            let mut step = 0;
            while !search.is_empty() {
                if step == 1 {
                    // Odd sentences leave after the first step (and an unknown id is ignored).
                    let odd: Vec<u64> = (0..12u64).filter(|i| i % 2 == 1).chain([1000]).collect();
                    let left = search.leave(&mut model, &odd).unwrap();
                    assert_eq!(left, odd.iter().filter(|&&i| i < 12 && out[i as usize].is_none()).count());
                }
                for done in search.step(&mut model).unwrap() {
                    if done.id == 99 {
                        capped = Some(done.hypothesis);
                    } else {
                        out[done.id as usize] = Some(done.hypothesis);
                    }
                }
                step += 1;
            }
            for i in (0..12).filter(|i| i % 2 == 0) {
                assert_eq!(out[i].as_ref(), Some(&alone[i]), "beam {beam_size}, sentence {i}");
            }
            let capped = capped.expect("the capped sentence finished");
            assert!(capped.tokens.len() <= 2, "its own max_tokens: {capped:?}");
            assert_eq!(search.active_rows(), 0);
        }
    }

    #[test]
    fn beam_search_is_at_least_as_good_as_greedy_on_its_own_score() {
        let sources = &sources()[..60];
        let greedy = decode_in_batches(sources, 60, DecodeOptions::default());
        let beam = decode_in_batches(sources, 60, DecodeOptions { beam_size: 5, ..Default::default() });
        let better = beam.iter().zip(&greedy).filter(|(b, g)| b.score > g.score + 1e-6).count();
        let worse = beam.iter().zip(&greedy).filter(|(b, g)| b.score < g.score - 1e-3).count();
        assert!(better > 10, "beam should find better hypotheses: {better}");
        assert!(worse <= 3, "beam rarely loses to greedy: {worse}");
    }

    /// Log-probabilities after feeding `prefix` to a fresh single-row model: no batching, no
    /// caches, no row selection — an independent view of what each hypothesis should see.
    fn fresh_log_probs(source: &[u32], prefix: &[u32]) -> Vec<f32> {
        let mut model = ScriptedModel::new(VOCAB);
        let mut state = model.encode(&[source.to_vec()]).unwrap();
        let mut out = Vec::new();
        for &token in std::iter::once(&EOS_ID).chain(prefix) {
            out = model.step(&mut state, &[token]).unwrap();
        }
        out
    }

    /// Plain single-sentence beam search with the same rules, for comparison.
    fn reference_beam(source: &[u32], options: DecodeOptions) -> Hypothesis {
        let k = options.beam_size;
        let max_tokens = options.max_tokens(source.len());
        let mut beams: Vec<(Vec<u32>, f32)> = vec![(Vec::new(), 0.0)];
        let mut finished: Vec<Hypothesis> = Vec::new();
        loop {
            let length = beams[0].0.len() + 1;
            let mut candidates = Vec::new();
            for (b, (tokens, log_prob)) in beams.iter().enumerate() {
                for (t, lp) in fresh_log_probs(source, tokens).into_iter().enumerate() {
                    candidates.push(Candidate { log_prob: log_prob + lp, beam: b, token: t as u32 });
                }
            }
            candidates.sort_by(rank);
            let mut alive = Vec::new();
            for c in candidates.into_iter().take(2 * k) {
                if c.token == EOS_ID || length >= max_tokens {
                    let mut tokens = beams[c.beam].0.clone();
                    let finish = if c.token == EOS_ID {
                        Finish::Eos
                    } else {
                        tokens.push(c.token);
                        Finish::MaxLength
                    };
                    let score = options.score(c.log_prob, tokens.len());
                    keep_best(&mut finished, Hypothesis { tokens, log_prob: c.log_prob, score, finish }, k);
                } else {
                    alive.push(c);
                }
                if alive.len() == k {
                    break;
                }
            }
            let worst = finished.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
            if length >= max_tokens
                || alive.is_empty()
                || (finished.len() >= k && worst >= options.score(alive[0].log_prob, length))
            {
                return finished.into_iter().reduce(|a, b| if b.score > a.score { b } else { a }).unwrap();
            }
            beams = alive.iter().map(|c| ([beams[c.beam].0.clone(), vec![c.token]].concat(), c.log_prob)).collect();
        }
    }

    #[test]
    fn batched_beam_search_equals_a_plain_single_sentence_search() {
        let sources: Vec<Vec<u32>> = sources().into_iter().filter(|s| s.len() < 8).take(12).collect();
        for beam_size in [2, 4] {
            let options = DecodeOptions { beam_size, ..Default::default() };
            let batched = decode_in_batches(&sources, 12, options);
            for (source, got) in sources.iter().zip(&batched) {
                let want = reference_beam(source, options);
                assert_eq!(got.tokens, want.tokens, "beam {beam_size}, source {source:?}");
                assert!((got.log_prob - want.log_prob).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn batched_greedy_equals_plain_arg_max_decoding() {
        let sources: Vec<Vec<u32>> = sources().into_iter().take(40).collect();
        let batched = decode_in_batches(&sources, 40, DecodeOptions::default());
        for (source, got) in sources.iter().zip(&batched) {
            let mut tokens = Vec::new();
            let max_tokens = DecodeOptions::default().max_tokens(source.len());
            let finish = loop {
                let (token, _) = argmax(&fresh_log_probs(source, &tokens));
                if token == EOS_ID {
                    break Finish::Eos;
                }
                tokens.push(token);
                if tokens.len() >= max_tokens {
                    break Finish::MaxLength;
                }
            };
            assert_eq!((&got.tokens, got.finish), (&tokens, finish), "source {source:?}");
        }
    }

    #[test]
    fn beam_finishes_on_eos_when_the_model_prefers_it() {
        let mut model = ScriptedModel { eos_pull: 2.0, ..ScriptedModel::new(VOCAB) };
        let out = decode(&mut model, &sources()[..50], DecodeOptions { beam_size: 4, ..Default::default() }).unwrap();
        let eos = out.iter().filter(|h| h.finish == Finish::Eos).count();
        assert!(eos >= 45, "{eos} of 50 ended on EOS");
    }

    #[test]
    fn greedy_scores_follow_the_length_penalty() {
        let mut model = ScriptedModel::new(VOCAB);
        let h = &decode(&mut model, &[vec![6, 7, 8]], DecodeOptions { length_penalty: 0.5, ..Default::default() })
            .unwrap()[0];
        let length = (h.tokens.len() + 1) as f32;
        assert!((h.score - h.log_prob / length.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn model_misbehaviour_and_misuse_are_errors() {
        let mut model = ScriptedModel { wrong_output_len: Some(5), ..ScriptedModel::new(VOCAB) };
        let err = decode(&mut model, &[vec![4]], DecodeOptions::default()).unwrap_err();
        assert_eq!(err.to_string(), "model returned 5 log-probabilities for 1 rows of vocabulary 24");

        let mut model = ScriptedModel::new(VOCAB);
        let mut search = Search::new(DecodeOptions::default());
        search.join(&mut model, vec![(7, vec![4])]).unwrap();
        assert!(matches!(search.join(&mut model, vec![(7, vec![5])]), Err(DecodeError::DuplicateId(7))));
        let mut zero = Search::new(DecodeOptions { beam_size: 0, ..Default::default() });
        assert!(matches!(zero.join(&mut model, vec![(1, vec![4])]), Err(DecodeError::ZeroBeam)));
    }

    #[test]
    fn a_model_error_ends_the_search_and_every_later_call_reports_it() {
        for wrong_output in [false, true] {
            let mut model = ScriptedModel { eos_pull: -1e10, fail_after_steps: Some(2), ..ScriptedModel::new(VOCAB) };
            if wrong_output {
                model = ScriptedModel { fail_after_steps: None, wrong_output_len: Some(3), ..model };
            }
            let mut search = Search::new(DecodeOptions::default());
            search.join(&mut model, vec![(1, vec![4, 5, 6]), (2, vec![7])]).unwrap();
            let first = loop {
                match search.step(&mut model) {
                    Ok(finished) => assert!(finished.is_empty()),
                    Err(e) => break e.to_string(),
                }
            };
            let expected = if wrong_output { "model returned 3" } else { "model: scripted model failure at step" };
            assert!(first.starts_with(expected), "{first}");
            assert_eq!(search.failure(), Some(first.as_str()));
            assert!(!search.is_empty(), "the unfinished sentences are still listed for the caller to answer");
            let later = [
                search.step(&mut model).unwrap_err(),
                search.leave(&mut model, &[1]).unwrap_err(),
                search.join(&mut model, vec![(3, vec![4])]).unwrap_err(),
            ];
            for error in later {
                assert!(matches!(&error, DecodeError::Failed(m) if *m == first), "{error}");
                assert!(error.to_string().contains(&first), "{error}");
            }
        }
    }

    #[test]
    fn a_failed_encoding_fails_only_the_newcomers() {
        let sources = sources();
        let options = DecodeOptions::default();
        let alone = decode(&mut ScriptedModel::new(VOCAB), &sources[..4], options).unwrap();
        let mut model = ScriptedModel { fail_encoding_token: Some(3), ..ScriptedModel::new(VOCAB) };
        let mut search = Search::new(options);
        search.join(&mut model, (0..4).map(|i| (i, sources[i as usize].clone())).collect()).unwrap();
        search.step(&mut model).unwrap();
        let err = search.join(&mut model, vec![(9, vec![5, 3])]).unwrap_err();
        assert!(matches!(err, DecodeError::Model(_)), "{err}");
        assert_eq!(search.failure(), None);
        assert_eq!(search.active_sentences(), 4, "the newcomer was not added");
        let mut out: Vec<Option<Hypothesis>> = vec![None; 4];
        while !search.is_empty() {
            for done in search.step(&mut model).unwrap() {
                out[done.id as usize] = Some(done.hypothesis);
            }
        }
        assert_eq!(out.into_iter().map(Option::unwrap).collect::<Vec<_>>(), alone);
    }
}
