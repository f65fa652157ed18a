//! The per-model engine: one OS thread that owns the model and runs continuous (step-level)
//! batching over xlmc-decoding's [`Search`].
//!
//! Sentences arrive as [`Job`]s through a channel. Before every decoder step the engine drops
//! jobs whose client went away or whose deadline passed, then admits waiting jobs in arrival
//! order while the batch stays within its row and token budgets; they are encoded and join the
//! running search. A sentence that finishes (EOS or its maximum length) leaves the batch in
//! that step and its reply is sent at once. Jobs with different languages or search settings
//! run in separate lanes (one `Search` each) stepped in turn.
//!
//! The EOS and length rules live in the decoding core only; this module only schedules.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use tokio::sync::oneshot;
use xlmc_decoding::{DecodeOptions, Hypothesis, MaxLength, Search, StepModel};
use xlmc_telemetry::names;

use crate::error::RequestError;

/// A model the engine can drive: a step model per language pair, sharing one state type.
pub trait Backend: Send + 'static {
    type State: Send;
    type Step<'a>: StepModel<State = Self::State>
    where
        Self: 'a;

    fn step_model(&mut self, languages: (i64, i64)) -> Self::Step<'_>;
}

impl Backend for xlmc_runtime::OrtTransformer {
    type State = xlmc_runtime::OrtState;
    type Step<'a> = xlmc_runtime::OrtTranslator<'a>;

    fn step_model(&mut self, (source, target): (i64, i64)) -> Self::Step<'_> {
        self.translator(source, target)
    }
}

impl Backend for xlmc_runtime::OrtBiGru {
    type State = xlmc_runtime::OrtBiGruState;
    type Step<'a> = xlmc_runtime::OrtBiGruTranslator<'a>;

    fn step_model(&mut self, (source, target): (i64, i64)) -> Self::Step<'_> {
        self.translator(source, target)
    }
}

/// Jobs that may share one search: same languages, beam size and length penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lane {
    pub languages: (i64, i64),
    pub beam_size: usize,
    length_penalty_bits: u32,
}

impl Lane {
    pub fn new(languages: (i64, i64), beam_size: usize, length_penalty: f32) -> Self {
        Self { languages, beam_size, length_penalty_bits: length_penalty.to_bits() }
    }

    fn options(&self, max_output_tokens: usize) -> DecodeOptions {
        DecodeOptions {
            beam_size: self.beam_size,
            length_penalty: f32::from_bits(self.length_penalty_bits),
            max_length: MaxLength::XLM,
            max_length_cap: Some(max_output_tokens),
        }
    }
}

/// One sentence to translate.
#[derive(Debug)]
pub struct Job {
    pub source: Vec<u32>,
    pub lane: Lane,
    /// The request's own `max_length`, if it set one.
    pub max_tokens: Option<usize>,
    pub deadline: Option<Instant>,
    pub reply: oneshot::Sender<Result<Done, JobError>>,
    enqueued: Instant,
}

impl Job {
    pub fn new(
        source: Vec<u32>,
        lane: Lane,
        max_tokens: Option<usize>,
        deadline: Option<Instant>,
    ) -> (Self, oneshot::Receiver<Result<Done, JobError>>) {
        let (reply, receiver) = oneshot::channel();
        (Self { source, lane, max_tokens, deadline, reply, enqueued: Instant::now() }, receiver)
    }

    /// The client is gone (cancelled, disconnected) or its deadline passed.
    fn abandoned(&self, now: Instant) -> bool {
        self.reply.is_closed() || self.deadline.is_some_and(|d| now >= d)
    }
}

/// Drops a sentence whose client left or whose deadline passed, counting why (a passed deadline
/// is answered; a closed reply has no one to hear).
fn abandon(reply: oneshot::Sender<Result<Done, JobError>>, deadline: Option<Instant>, now: Instant, model: &str) {
    let reason = if deadline.is_some_and(|d| now >= d) {
        let _ = reply.send(Err(JobError::Deadline));
        "deadline"
    } else {
        "cancelled"
    };
    metrics::counter!(names::SENTENCES_ABANDONED_TOTAL, "model" => model.to_owned(), "reason" => reason).increment(1);
}

/// A translated sentence and its timeline.
#[derive(Debug, Clone)]
pub struct Done {
    pub hypothesis: Hypothesis,
    /// Time from submission to joining a batch.
    pub queued: Duration,
    pub joined: Instant,
    pub finished: Instant,
    /// Decoder steps the sentence took part in.
    pub steps: usize,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum JobError {
    #[error("deadline exceeded while the sentence was queued or being decoded")]
    Deadline,
    #[error("model `{model}` failed: {message}")]
    Model { model: String, message: String },
    #[error("model `{0}` stopped")]
    Stopped(String),
}

/// Batching limits of one engine.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most model rows (sentences × beam) in one decoder step.
    pub max_rows: usize,
    /// Most tokens in the batch: each row counts its source plus what it generated so far.
    pub max_tokens: usize,
    /// How long an idle engine waits for more sentences before starting a batch.
    pub max_wait: Duration,
    /// Most sentences waiting to join; more are refused (RESOURCE_EXHAUSTED).
    pub max_queue: usize,
    /// Server-wide cap on generated tokens per sentence.
    pub max_output_tokens: usize,
    /// Admit sentences into a running batch (continuous batching); false waits until the batch
    /// is empty (static batching, for comparison).
    pub continuous: bool,
    /// While a batch runs, waiting sentences join it every this many steps — or at once when
    /// they are a quarter of the rows running. Each join encodes the newcomers and re-lays every
    /// cache, which costs several decoder steps; joining one sentence at every step would spend
    /// more on that than on decoding. 1 joins at every step.
    pub join_every_steps: u64,
}

/// The submitting side of an engine; cheap to clone.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    model: String,
    jobs: mpsc::Sender<Job>,
    waiting: Arc<AtomicUsize>,
    max_queue: usize,
}

impl EngineHandle {
    /// Queues all `jobs` or none: RESOURCE_EXHAUSTED when they would overfill the queue.
    pub fn submit(&self, jobs: Vec<Job>) -> Result<(), RequestError> {
        let n = jobs.len();
        let before = self.waiting.fetch_add(n, Ordering::SeqCst);
        if before + n > self.max_queue {
            self.waiting.fetch_sub(n, Ordering::SeqCst);
            return Err(RequestError::QueueFull { model: self.model.clone(), waiting: before, limit: self.max_queue });
        }
        metrics::gauge!(names::QUEUE_DEPTH, "model" => self.model.clone()).set((before + n) as f64);
        for job in jobs {
            if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                let _ = job.reply.send(Err(JobError::Stopped(self.model.clone())));
            }
        }
        Ok(())
    }
}

/// Starts the engine thread for `backend`; it stops once every handle is dropped and its work
/// is done.
pub fn spawn<B: Backend>(model: &str, backend: B, limits: BatchLimits) -> std::io::Result<EngineHandle> {
    let (jobs, receiver) = mpsc::channel();
    let waiting = Arc::new(AtomicUsize::new(0));
    let engine = Engine {
        model: model.to_owned(),
        backend,
        limits,
        jobs: receiver,
        waiting: waiting.clone(),
        queue: VecDeque::new(),
        lanes: HashMap::new(),
        next_id: AtomicU64::new(0),
        step: 0,
        last_join: 0,
    };
    std::thread::Builder::new().name(format!("engine-{model}")).spawn(move || engine.run())?;
    Ok(EngineHandle { model: model.to_owned(), jobs, waiting, max_queue: limits.max_queue })
}

struct Active {
    reply: oneshot::Sender<Result<Done, JobError>>,
    deadline: Option<Instant>,
    queued: Duration,
    joined: Instant,
    rows: usize,
    source_tokens: usize,
    joined_step: u64,
}

struct LaneState<S> {
    search: Search<S>,
    active: HashMap<u64, Active>,
}

struct Engine<B: Backend> {
    model: String,
    backend: B,
    limits: BatchLimits,
    jobs: mpsc::Receiver<Job>,
    waiting: Arc<AtomicUsize>,
    queue: VecDeque<Job>,
    lanes: HashMap<Lane, LaneState<B::State>>,
    next_id: AtomicU64,
    /// Engine steps so far (a row's generated length is the steps since it joined).
    step: u64,
    /// The step at which sentences last joined a running batch.
    last_join: u64,
}

impl<B: Backend> Engine<B> {
    fn run(mut self) {
        let mut open = true;
        loop {
            if self.is_idle() {
                if !open {
                    return;
                }
                open = self.wait_for_work();
            }
            open &= self.drain_channel();
            let now = Instant::now();
            self.drop_abandoned_queued(now);
            self.admit();
            self.step_all();
            self.leave_abandoned();
            metrics::gauge!(names::QUEUE_DEPTH, "model" => self.model.clone())
                .set(self.waiting.load(Ordering::SeqCst) as f64);
        }
    }

    fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.lanes.values().all(|l| l.active.is_empty())
    }

    /// Blocks for the first job, then gathers more for up to `max_wait` or until a batch is
    /// full. Returns false once every handle is gone.
    fn wait_for_work(&mut self) -> bool {
        match self.jobs.recv() {
            Ok(job) => self.queue.push_back(job),
            Err(_) => return false,
        }
        let until = Instant::now() + self.limits.max_wait;
        while self.queue.len() < self.limits.max_rows {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.jobs.recv_timeout(left) {
                Ok(job) => self.queue.push_back(job),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
            }
        }
        true
    }

    fn drain_channel(&mut self) -> bool {
        loop {
            match self.jobs.try_recv() {
                Ok(job) => self.queue.push_back(job),
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn drop_abandoned_queued(&mut self, now: Instant) {
        let before = self.queue.len();
        let (keep, gone): (Vec<Job>, Vec<Job>) = self.queue.drain(..).partition(|job| !job.abandoned(now));
        self.queue = keep.into();
        for job in gone {
            abandon(job.reply, job.deadline, now, &self.model);
        }
        self.waiting.fetch_sub(before - self.queue.len(), Ordering::SeqCst);
    }

    /// Rows and tokens the running batch holds now.
    fn load(&self) -> (usize, usize) {
        let mut rows = 0;
        let mut tokens = 0;
        for lane in self.lanes.values() {
            for a in lane.active.values() {
                rows += a.rows;
                tokens += a.rows * (a.source_tokens + (self.step - a.joined_step) as usize);
            }
        }
        (rows, tokens)
    }

    /// Whether waiting sentences may join a batch of `running` rows now (see
    /// [`BatchLimits::join_every_steps`]).
    fn join_due(&self, running: usize) -> bool {
        let waiting_rows: usize = self.queue.iter().map(|job| job.lane.beam_size).sum();
        waiting_rows > 0 && (self.step - self.last_join >= self.limits.join_every_steps || 4 * waiting_rows >= running)
    }

    /// Moves waiting jobs into the batch, oldest first, while they fit (the first always fits
    /// an empty batch); each lane's newcomers are encoded together. A failed encoding fails
    /// those newcomers only; a failure that ends the lane's search fails the lane.
    fn admit(&mut self) {
        let (mut rows, mut tokens) = self.load();
        if rows > 0 && !(self.limits.continuous && self.join_due(rows)) {
            return;
        }
        let mut joining: HashMap<(Lane, Option<usize>), Vec<Job>> = HashMap::new();
        while let Some(job) = self.queue.front() {
            let job_rows = job.lane.beam_size;
            let job_tokens = job_rows * job.source.len();
            let empty = rows == 0;
            if !empty && (rows + job_rows > self.limits.max_rows || tokens + job_tokens > self.limits.max_tokens) {
                break;
            }
            let job = self.queue.pop_front().expect("front exists");
            rows += job_rows;
            tokens += job_tokens;
            joining.entry((job.lane, job.max_tokens)).or_default().push(job);
        }
        let joined: usize = joining.values().map(Vec::len).sum();
        self.waiting.fetch_sub(joined, Ordering::SeqCst);
        if joined > 0 {
            self.last_join = self.step;
        }
        let now = Instant::now();
        for ((lane, max_tokens), jobs) in joining {
            let state = self.lanes.entry(lane).or_insert_with(|| LaneState {
                search: Search::new(lane.options(self.limits.max_output_tokens)),
                active: HashMap::new(),
            });
            let mut sentences = Vec::with_capacity(jobs.len());
            let mut ids = Vec::with_capacity(jobs.len());
            for job in jobs {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let queued = now.duration_since(job.enqueued);
                metrics::histogram!(names::QUEUE_DURATION, "model" => self.model.clone()).record(queued.as_secs_f64());
                state.active.insert(
                    id,
                    Active {
                        reply: job.reply,
                        deadline: job.deadline,
                        queued,
                        joined: now,
                        rows: lane.beam_size,
                        source_tokens: job.source.len(),
                        joined_step: self.step,
                    },
                );
                sentences.push((id, job.source));
                ids.push(id);
            }
            let mut step_model = self.backend.step_model(lane.languages);
            if let Err(error) = state.search.join_with_max_tokens(&mut step_model, sentences, max_tokens) {
                let failed: Vec<u64> = if state.search.failure().is_some() { Vec::new() } else { ids };
                fail_sentences(&self.model, state, &failed, &error.to_string());
            }
        }
        self.lanes.retain(|_, state| !state.active.is_empty());
    }

    /// One decoder step in every lane with work; finished sentences are answered at once. A lane
    /// whose model fails answers its own sentences with the error; the others go on.
    fn step_all(&mut self) {
        let mut stepped = false;
        for (lane, state) in self.lanes.iter_mut() {
            if state.search.is_empty() {
                continue;
            }
            let rows = state.search.active_rows();
            let mut step_model = self.backend.step_model(lane.languages);
            let result = state.search.step(&mut step_model);
            stepped = true;
            let finished = match result {
                Ok(finished) => finished,
                Err(error) => {
                    fail_sentences(&self.model, state, &[], &error.to_string());
                    continue;
                }
            };
            metrics::histogram!(names::BATCH_SIZE, "model" => self.model.clone()).record(rows as f64);
            metrics::counter!(names::DECODE_STEPS_TOTAL, "model" => self.model.clone()).increment(1);
            let now = Instant::now();
            for done in finished {
                let Some(active) = state.active.remove(&done.id) else { continue };
                metrics::counter!(names::GENERATED_TOKENS_TOTAL, "model" => self.model.clone())
                    .increment(done.hypothesis.tokens.len() as u64);
                metrics::counter!(names::SENTENCES_TOTAL, "model" => self.model.clone()).increment(1);
                let _ = active.reply.send(Ok(Done {
                    hypothesis: done.hypothesis,
                    queued: active.queued,
                    joined: active.joined,
                    finished: now,
                    steps: done.steps,
                }));
            }
        }
        if stepped {
            self.step += 1;
        }
        // A search that failed after this step's finished sentences were answered ends here.
        for state in self.lanes.values_mut().filter(|state| !state.active.is_empty()) {
            if let Some(message) = state.search.failure().map(str::to_owned) {
                fail_sentences(&self.model, state, &[], &message);
            }
        }
        self.lanes.retain(|_, state| !state.active.is_empty());
    }

    /// Sentences whose client left or whose deadline passed leave the batch before the next step.
    fn leave_abandoned(&mut self) {
        let now = Instant::now();
        for (lane, state) in self.lanes.iter_mut() {
            let gone: Vec<u64> = state
                .active
                .iter()
                .filter(|(_, a)| a.reply.is_closed() || a.deadline.is_some_and(|d| now >= d))
                .map(|(&id, _)| id)
                .collect();
            if gone.is_empty() {
                continue;
            }
            let mut step_model = self.backend.step_model(lane.languages);
            let result = state.search.leave(&mut step_model, &gone);
            for id in gone {
                let active = state.active.remove(&id).expect("listed above");
                abandon(active.reply, active.deadline, now, &self.model);
            }
            if let Err(error) = result {
                fail_sentences(&self.model, state, &[], &error.to_string());
            }
        }
        self.lanes.retain(|_, state| !state.active.is_empty());
    }
}

/// Answers sentences of one lane with a model error and forgets them: `ids`, or every sentence
/// of the lane when `ids` is empty (its search failed; the lane is then dropped as empty).
/// Other lanes and waiting sentences are not touched.
fn fail_sentences<S>(model: &str, state: &mut LaneState<S>, ids: &[u64], message: &str) {
    let failed: Vec<u64> = if ids.is_empty() { state.active.keys().copied().collect() } else { ids.to_vec() };
    tracing::error!(
        model,
        error = message,
        sentences = failed.len(),
        "decoding failed; those sentences are answered with the error"
    );
    for id in failed {
        if let Some(active) = state.active.remove(&id) {
            let _ = active.reply.send(Err(JobError::Model { model: model.to_owned(), message: message.to_owned() }));
        }
    }
}

#[cfg(test)]
mod tests;
