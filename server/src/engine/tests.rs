//! The engine driven by the decoding core's scripted step model: admission budgets, joins and
//! departures, cancellation, deadlines and model failures, each checked against what the
//! scripted model decodes alone. A gate (a rendezvous channel every step waits on) lets a test
//! act between two given steps without timing.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use tokio::sync::oneshot;
use xlmc_decoding::{
    DecodeOptions, Hypothesis, MaxLength, StepModel, decode,
    testing::{FakeRow, ScriptedFailure, ScriptedModel},
};

use super::{BatchLimits, Done, EngineHandle, Job, JobError, Lane, spawn};
use crate::error::RequestError;

const VOCAB: usize = 24;
const EN_FR: (i64, i64) = (0, 1);
const FR_EN: (i64, i64) = (1, 0);

/// (languages, rows) of every step, in order.
type StepLog = Arc<Mutex<Vec<((i64, i64), usize)>>>;

/// One scripted model per language pair; every step is logged as (languages, rows) and, with
/// a gate, waits for a permit first.
struct ScriptedBackend {
    models: HashMap<(i64, i64), ScriptedModel>,
    gate: Option<mpsc::Receiver<()>>,
    log: StepLog,
}

struct ScriptedStep<'a> {
    model: &'a mut ScriptedModel,
    languages: (i64, i64),
    gate: Option<&'a mpsc::Receiver<()>>,
    log: &'a Mutex<Vec<((i64, i64), usize)>>,
}

impl StepModel for ScriptedStep<'_> {
    type State = Vec<FakeRow>;
    type Error = ScriptedFailure;

    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    fn encode(&mut self, sources: &[Vec<u32>]) -> Result<Self::State, ScriptedFailure> {
        self.model.encode(sources)
    }

    fn step(&mut self, state: &mut Self::State, last_tokens: &[u32]) -> Result<Vec<f32>, ScriptedFailure> {
        if let Some(gate) = self.gate {
            // A closed gate (the test is done steering) lets every step through.
            let _ = gate.recv();
        }
        self.log.lock().unwrap().push((self.languages, state.len()));
        self.model.step(state, last_tokens)
    }

    fn select(&mut self, state: &mut Self::State, rows: &[usize]) -> Result<(), ScriptedFailure> {
        self.model.select(state, rows)
    }

    fn append(&mut self, state: &mut Self::State, other: Self::State) -> Result<(), ScriptedFailure> {
        self.model.append(state, other)
    }
}

impl super::Backend for ScriptedBackend {
    type State = Vec<FakeRow>;
    type Step<'a> = ScriptedStep<'a>;

    fn step_model(&mut self, languages: (i64, i64)) -> ScriptedStep<'_> {
        let model = self.models.get_mut(&languages).expect("a language pair the test set up");
        ScriptedStep { model, languages, gate: self.gate.as_ref(), log: &self.log }
    }
}

fn limits() -> BatchLimits {
    BatchLimits {
        max_rows: 64,
        max_tokens: 10_000,
        max_wait: Duration::from_millis(20),
        max_queue: 100,
        max_output_tokens: 200,
        continuous: true,
        join_every_steps: 1,
    }
}

/// A model whose sentences never choose EOS: each runs to XLM's maximum length (1.5 · source
/// + 10), so a sentence's length in steps follows from its source alone.
fn endless() -> ScriptedModel {
    ScriptedModel { eos_pull: -1e10, ..ScriptedModel::new(VOCAB) }
}

struct Engine {
    handle: EngineHandle,
    log: StepLog,
    gate: Option<mpsc::SyncSender<()>>,
}

fn engine(models: Vec<((i64, i64), ScriptedModel)>, limits: BatchLimits, gated: bool) -> Engine {
    let log = StepLog::default();
    let (gate, permits) = if gated {
        let (send, receive) = mpsc::sync_channel(0);
        (Some(send), Some(receive))
    } else {
        (None, None)
    };
    let backend = ScriptedBackend { models: models.into_iter().collect(), gate: permits, log: log.clone() };
    Engine { handle: spawn("scripted", backend, limits).unwrap(), log, gate }
}

impl Engine {
    /// Queues one sentence per source, greedy, in `languages`.
    fn submit(&self, languages: (i64, i64), sources: &[Vec<u32>]) -> Vec<oneshot::Receiver<Result<Done, JobError>>> {
        self.submit_with(languages, sources, None).unwrap()
    }

    fn submit_with(
        &self,
        languages: (i64, i64),
        sources: &[Vec<u32>],
        deadline: Option<Instant>,
    ) -> Result<Vec<oneshot::Receiver<Result<Done, JobError>>>, RequestError> {
        let (jobs, receivers) =
            sources.iter().map(|s| Job::new(s.clone(), Lane::new(languages, 1, 1.0), None, deadline)).unzip();
        self.handle.submit(jobs)?;
        Ok(receivers)
    }

    /// Lets exactly one more step start (it has started when this returns).
    fn permit(&self) {
        self.gate.as_ref().expect("a gated engine").send(()).unwrap();
    }

    /// Stops steering: every later step goes through.
    fn open_gate(&mut self) {
        self.gate = None;
    }

    fn steps(&self) -> Vec<((i64, i64), usize)> {
        self.log.lock().unwrap().clone()
    }
}

fn wait(receiver: oneshot::Receiver<Result<Done, JobError>>) -> Result<Done, JobError> {
    receiver.blocking_recv().expect("the engine answers every sentence it was given")
}

fn alone(model: ScriptedModel, sources: &[Vec<u32>]) -> Vec<Hypothesis> {
    let options = DecodeOptions { max_length: MaxLength::XLM, max_length_cap: Some(200), ..Default::default() };
    sources.iter().map(|s| decode(&mut model.clone(), std::slice::from_ref(s), options).unwrap().remove(0)).collect()
}

/// `n` sources of `len` tokens (ids ≥ 4), distinct.
fn sources(n: usize, len: usize, seed: u32) -> Vec<Vec<u32>> {
    (0..n as u32).map(|i| (0..len as u32).map(|j| 4 + (seed * 7 + i * 13 + j * 5) % 20).collect()).collect()
}

#[test]
fn a_short_sentence_finishes_before_a_long_one_that_arrived_first() {
    let engine = engine(vec![(EN_FR, endless())], limits(), false);
    let long = sources(1, 30, 1); // 55 steps
    let short = sources(1, 2, 2); // 13 steps
    let long_reply = engine.submit(EN_FR, &long).remove(0);
    let short_reply = engine.submit(EN_FR, &short).remove(0);
    let (long_done, short_done) = (wait(long_reply).unwrap(), wait(short_reply).unwrap());
    assert!(short_done.finished < long_done.finished);
    assert_eq!((long_done.steps, short_done.steps), (55, 13));
    assert_eq!(long_done.hypothesis, alone(endless(), &long)[0]);
    assert_eq!(short_done.hypothesis, alone(endless(), &short)[0]);
}

#[test]
fn admission_keeps_every_step_within_the_row_and_token_budgets() {
    // Rows: at most 3 at once. Tokens: 10-token sources under a 25-token budget admit two.
    for (max_rows, max_tokens, most) in [(3, 10_000, 3), (64, 25, 2)] {
        let engine =
            engine(vec![(EN_FR, ScriptedModel::new(VOCAB))], BatchLimits { max_rows, max_tokens, ..limits() }, false);
        let sources = sources(9, 10, 3);
        let replies = engine.submit(EN_FR, &sources);
        let done: Vec<Hypothesis> = replies.into_iter().map(|r| wait(r).unwrap().hypothesis).collect();
        assert_eq!(done, alone(ScriptedModel::new(VOCAB), &sources), "budget {max_rows} rows, {max_tokens} tokens");
        let rows: Vec<usize> = engine.steps().iter().map(|&(_, rows)| rows).collect();
        assert_eq!(rows.iter().max(), Some(&most), "{rows:?}");
    }
}

#[test]
fn a_full_queue_refuses_the_whole_request_and_static_batching_waits_for_an_empty_batch() {
    let static_batching = BatchLimits { max_queue: 3, continuous: false, ..limits() };
    let mut engine = engine(vec![(EN_FR, endless())], static_batching, true);
    let running = engine.submit(EN_FR, &sources(1, 4, 4)).remove(0);
    engine.permit(); // decoding: nothing else joins until it is done
    let queued = engine.submit(EN_FR, &sources(2, 3, 5));
    let err = engine.submit_with(EN_FR, &sources(2, 3, 6), None).unwrap_err();
    assert!(matches!(err, RequestError::QueueFull { waiting: 2, limit: 3, .. }), "{err:?}");
    engine.open_gate();
    assert_eq!(wait(running).unwrap().hypothesis, alone(endless(), &sources(1, 4, 4))[0]);
    let done: Vec<Hypothesis> = queued.into_iter().map(|r| wait(r).unwrap().hypothesis).collect();
    assert_eq!(done, alone(endless(), &sources(2, 3, 5)));
    let rows: Vec<usize> = engine.steps().iter().map(|&(_, rows)| rows).collect();
    assert_eq!(rows, [vec![1; 16], vec![2; 14]].concat(), "one sentence alone for its 16 steps, then the two");
}

#[test]
fn a_cancelled_sentence_leaves_the_batch_after_the_step_at_hand() {
    let mut engine = engine(vec![(EN_FR, endless())], limits(), true);
    let kept = sources(1, 20, 6);
    let mut replies = engine.submit(EN_FR, &[kept[0].clone(), sources(1, 20, 7)[0].clone()]);
    for _ in 0..3 {
        engine.permit();
    }
    // The client of the second sentence goes away while step 3 runs or step 4 waits for its
    // permit: the sentence leaves after that step.
    drop(replies.pop());
    engine.open_gate();
    let done = wait(replies.pop().unwrap()).unwrap();
    assert_eq!(done.hypothesis, alone(endless(), &kept)[0], "the other sentence is unchanged");
    let rows: Vec<usize> = engine.steps().iter().map(|&(_, rows)| rows).collect();
    assert_eq!(rows[..3], [2, 2, 2]);
    // Its row stays in the state, dead, until the row-steps spent on it would pass the rows in
    // the state (two steps for a batch of two); then it is gathered away for good.
    let alone_from = rows.iter().position(|&r| r == 1).expect("the batch shrinks");
    assert!(alone_from <= 4 + 2, "{rows:?}");
    assert!(rows[alone_from..].iter().all(|&r| r == 1), "{rows:?}");
}

#[test]
fn deadlines_are_answered_whether_queued_or_decoding() {
    let mut engine = engine(vec![(EN_FR, endless())], limits(), true);
    let past = engine.submit_with(EN_FR, &sources(1, 5, 8), Some(Instant::now())).unwrap().remove(0);
    let soon = Instant::now() + Duration::from_millis(300);
    let mut replies = engine.submit_with(EN_FR, &sources(1, 20, 9), Some(soon)).unwrap();
    replies.extend(engine.submit(EN_FR, &sources(1, 20, 10)));
    engine.permit();
    std::thread::sleep(soon.saturating_duration_since(Instant::now()));
    engine.open_gate();
    assert!(matches!(wait(past), Err(JobError::Deadline)));
    let free = replies.pop().unwrap();
    assert!(matches!(wait(replies.pop().unwrap()), Err(JobError::Deadline)));
    assert_eq!(wait(free).unwrap().hypothesis, alone(endless(), &sources(1, 20, 10))[0]);
    let rows: Vec<usize> = engine.steps().iter().map(|&(_, rows)| rows).collect();
    assert_eq!(rows[0], 2, "the sentence with a deadline was decoding: {rows:?}");
    assert_eq!(*rows.last().unwrap(), 1, "{rows:?}");
}

#[test]
fn a_model_failing_mid_batch_fails_only_its_own_lane() {
    let failing = ScriptedModel { fail_after_steps: Some(4), ..endless() };
    let engine = engine(vec![(EN_FR, endless()), (FR_EN, failing)], limits(), false);
    let good = sources(3, 8, 11);
    let bad = sources(2, 8, 12);
    let good_replies = engine.submit(EN_FR, &good);
    let bad_replies = engine.submit(FR_EN, &bad);
    for reply in bad_replies {
        let err = wait(reply).unwrap_err();
        assert!(
            matches!(&err, JobError::Model { message, .. } if message.contains("scripted model failure at step")),
            "{err}"
        );
    }
    let done: Vec<Hypothesis> = good_replies.into_iter().map(|r| wait(r).unwrap().hypothesis).collect();
    assert_eq!(done, alone(endless(), &good));
    // The engine goes on: a later sentence in the healthy lane is translated.
    let later = sources(1, 4, 13);
    assert_eq!(wait(engine.submit(EN_FR, &later).remove(0)).unwrap().hypothesis, alone(endless(), &later)[0]);
}

#[test]
fn a_sentence_that_cannot_be_encoded_fails_alone() {
    let model = ScriptedModel { fail_encoding_token: Some(3), ..endless() };
    let mut engine = engine(vec![(EN_FR, model)], limits(), true);
    let good = sources(2, 10, 14);
    let replies = engine.submit(EN_FR, &good);
    engine.permit(); // the good sentences are decoding
    let poisoned = engine.submit(EN_FR, &[vec![5, 3, 6]]).remove(0);
    engine.open_gate();
    let err = wait(poisoned).unwrap_err();
    assert!(matches!(&err, JobError::Model { message, .. } if message.contains("failure at encode")), "{err}");
    let done: Vec<Hypothesis> = replies.into_iter().map(|r| wait(r).unwrap().hypothesis).collect();
    assert_eq!(done, alone(endless(), &good));
}

#[test]
fn newcomers_join_a_running_batch_every_few_steps_or_at_once_when_many() {
    // One newcomer waits for the 4-step join (step 5); two are a quarter of the eight running
    // rows and join at the first step after they arrive (step 2, or 3 if step 2 had been
    // admitted before they were queued).
    for (newcomers, joins_at) in [(1, 4..=4), (2, 1..=2)] {
        let limits = BatchLimits { join_every_steps: 4, ..limits() };
        let mut engine = engine(vec![(EN_FR, endless())], limits, true);
        let running = sources(8, 30, 3);
        let late = sources(newcomers, 30, 4);
        let first = engine.submit(EN_FR, &running);
        engine.permit(); // step 1 has started with the eight
        let second = engine.submit(EN_FR, &late);
        for _ in 0..5 {
            engine.permit();
        }
        let rows: Vec<usize> = engine.steps().iter().take(5).map(|(_, rows)| *rows).collect();
        let joined = rows.iter().position(|&r| r != 8).expect("the newcomers joined");
        assert!(joins_at.contains(&joined), "{newcomers} newcomer(s): rows {rows:?}");
        assert!(rows[joined..].iter().all(|&r| r == 8 + newcomers), "{rows:?}");
        engine.open_gate();
        let alone_late = alone(endless(), &late);
        for (reply, expected) in second.into_iter().zip(alone_late) {
            assert_eq!(wait(reply).unwrap().hypothesis, expected);
        }
        first.into_iter().for_each(|reply| drop(wait(reply).unwrap()));
    }
}
