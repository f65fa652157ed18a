//! The `xlmc.v1.Translator` service: request validation, model lookup, metrics per RPC.

use std::{
    collections::HashSet,
    pin::Pin,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use xlmc_decoding::Finish;
use xlmc_proto::v1::{
    FinishReason, ListModelsRequest, ListModelsResponse, Timing, TranslateRequest, TranslateResponse,
    TranslateStreamRequest, TranslateStreamResponse, Translation, translator_server::Translator,
};
use xlmc_telemetry::names;
use xlmc_tokenizer::Tokenizer;

use crate::{
    engine::{Done, Job, JobError, Lane},
    error::RequestError,
    registry::Registry,
    settings::Settings,
};

/// Results a stream may hold unsent before its producer waits for the client.
const STREAM_BUFFER: usize = 64;
/// `model` label for requests naming no loaded model (keeps label values a closed set).
const UNKNOWN_MODEL_LABEL: &str = "unknown";

/// Per-request limits, from the settings.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_sentences: usize,
    pub max_sentence_bytes: usize,
    pub max_beam_size: u32,
    pub max_output_tokens: u32,
    pub max_source_tokens: usize,
}

impl From<&Settings> for Limits {
    fn from(s: &Settings) -> Self {
        Self {
            max_sentences: s.max_sentences_per_request,
            max_sentence_bytes: s.max_sentence_bytes,
            max_beam_size: s.max_beam_size,
            max_output_tokens: s.max_output_tokens,
            max_source_tokens: s.max_source_tokens,
        }
    }
}

/// Checks a request against the limits, before any model work.
pub fn validate(request: &TranslateRequest, limits: &Limits) -> Result<(), RequestError> {
    let count = request.sentences.len();
    if count > limits.max_sentences {
        return Err(RequestError::TooManySentences { count, limit: limits.max_sentences });
    }
    if let Some((index, s)) = request.sentences.iter().enumerate().find(|(_, s)| s.len() > limits.max_sentence_bytes) {
        return Err(RequestError::SentenceTooLong { index, bytes: s.len(), limit: limits.max_sentence_bytes });
    }
    let Some(options) = &request.options else {
        return Ok(());
    };
    if let Some(asked) = options.beam_size.filter(|b| !(1..=limits.max_beam_size).contains(b)) {
        return Err(RequestError::BeamSize { asked, limit: limits.max_beam_size });
    }
    if let Some(asked) = options.max_length.filter(|m| !(1..=limits.max_output_tokens).contains(m)) {
        return Err(RequestError::MaxLength { asked, limit: limits.max_output_tokens });
    }
    if let Some(penalty) = options.length_penalty.filter(|p| !p.is_finite()) {
        return Err(RequestError::LengthPenalty(penalty));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct TranslatorService {
    limits: Arc<Limits>,
    /// Set once the models are loaded; requests before that get UNAVAILABLE.
    models: Arc<OnceLock<Registry>>,
    shadow_rate: f64,
}

/// One sentence of a request on its way: answered already (empty input) or decoding.
enum Slot {
    Ready(Translation),
    Pending { receiver: oneshot::Receiver<Result<Done, JobError>>, source_tokens: usize },
}

/// A request accepted by a model: its slots, and what turning results into replies needs.
struct Submitted {
    model: String,
    tokenizer: Arc<Tokenizer>,
    slots: Vec<Slot>,
    return_token_ids: bool,
}

impl Submitted {
    fn translation(&self, done: Done, source_tokens: usize) -> Result<Translation, RequestError> {
        let h = done.hypothesis;
        Ok(Translation {
            text: self.tokenizer.decode(&h.tokens).map_err(|e| RequestError::Internal(e.to_string()))?,
            source_tokens: source_tokens as u32,
            output_tokens: h.tokens.len() as u32,
            log_prob: h.log_prob,
            score: h.score,
            finish_reason: match h.finish {
                Finish::Eos => FinishReason::Eos,
                Finish::MaxLength => FinishReason::MaxLength,
            } as i32,
            token_ids: if self.return_token_ids { h.tokens } else { Vec::new() },
        })
    }
}

fn job_error(error: JobError) -> RequestError {
    match error {
        JobError::Deadline => RequestError::Deadline,
        other => RequestError::Internal(other.to_string()),
    }
}

/// The `grpc-timeout` header as a deadline, a little early: tonic itself answers CANCELLED at
/// the exact deadline, so the server answers DEADLINE_EXCEEDED just before it.
fn deadline(metadata: &tonic::metadata::MetadataMap, arrived: Instant) -> Option<Instant> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    let margin = (timeout / 10).min(Duration::from_millis(20));
    Some(arrived + timeout - margin)
}

impl TranslatorService {
    pub fn new(limits: Limits, models: Arc<OnceLock<Registry>>) -> Self {
        Self { limits: Arc::new(limits), models, shadow_rate: 0.0 }
    }

    fn registry(&self) -> Result<&Registry, RequestError> {
        self.models.get().ok_or(RequestError::Loading)
    }

    /// Shadows this fraction of each student's requests with its teacher (`--shadow-rate`).
    pub fn with_shadow_rate(mut self, rate: f64) -> Self {
        self.shadow_rate = rate;
        self
    }

    /// Counts a served request, and shadows it with the teacher when sampled: the teacher's
    /// translation runs in the background, through the teacher's own queue, and only feeds the
    /// statistics.
    fn after_success(&self, request: &TranslateRequest, response: &TranslateResponse, seconds: f64) {
        let Ok(model) = self.registry().and_then(|r| r.resolve(&response.model)) else { return };
        let generated = response.translations.iter().map(|t| u64::from(t.output_tokens)).sum();
        model.stats.record_request(response.translations.len() as u64, generated);
        let teacher = model.info.teacher.clone();
        if teacher.is_empty() || !model.stats.sample(self.shadow_rate) {
            return;
        }
        let mut shadow = request.clone();
        shadow.model = teacher.clone();
        let outputs: Vec<Option<String>> = response
            .translations
            .iter()
            .map(|t| (t.finish_reason != FinishReason::EmptyInput as i32).then(|| t.text.clone()))
            .collect();
        let (service, stats, student) = (self.clone(), model.stats.clone(), model.name.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            match service.translate_all(&shadow, started, None).await {
                (_, Ok(reply)) => {
                    let pairs: Vec<(String, String)> = outputs
                        .into_iter()
                        .zip(reply.translations)
                        .filter_map(|(student, teacher)| Some((student?, teacher.text)))
                        .collect();
                    stats.record_shadow((&student, &teacher), &pairs, seconds, started.elapsed().as_secs_f64());
                }
                (_, Err(error)) => tracing::debug!(%student, %teacher, %error, "shadow translation skipped"),
            }
        });
    }

    /// Validates, resolves model and languages, tokenizes and queues every non-empty sentence.
    /// Errors carry the model label for metrics.
    fn submit(
        &self,
        request: &TranslateRequest,
        deadline: Option<Instant>,
    ) -> Result<Submitted, (String, RequestError)> {
        let unknown = |e| (UNKNOWN_MODEL_LABEL.to_owned(), e);
        validate(request, &self.limits).map_err(unknown)?;
        let model = self.registry().and_then(|r| r.resolve(&request.model)).map_err(unknown)?;
        let named = |e| (model.name.clone(), e);
        let (tokenizer, engine) = model.engine().map_err(named)?;
        let languages = tokenizer.languages();
        let language = |asked: &str, fallback: usize| -> Result<i64, RequestError> {
            let asked =
                if asked.is_empty() { languages.get(fallback).map(String::as_str).unwrap_or("") } else { asked };
            tokenizer.language_id(asked).map(i64::from).map_err(|_| RequestError::UnknownLanguage {
                asked: asked.to_owned(),
                model: model.name.clone(),
                available: languages.join(", "),
            })
        };
        let pair = (
            language(&request.source_language, 0).map_err(named)?,
            language(&request.target_language, 1).map_err(named)?,
        );
        let options = request.options.unwrap_or_default();
        let lane = Lane::new(pair, options.beam_size.unwrap_or(1) as usize, options.length_penalty.unwrap_or(1.0));
        let mut slots = Vec::with_capacity(request.sentences.len());
        let mut jobs = Vec::new();
        for (index, sentence) in request.sentences.iter().enumerate() {
            let source = tokenizer.encode(sentence).map_err(|e| named(RequestError::Internal(e.to_string())))?;
            if source.is_empty() {
                let empty = Translation { finish_reason: FinishReason::EmptyInput as i32, ..Default::default() };
                slots.push(Slot::Ready(empty));
                continue;
            }
            if source.len() > self.limits.max_source_tokens {
                return Err(named(RequestError::SourceTooLong {
                    index,
                    tokens: source.len(),
                    limit: self.limits.max_source_tokens,
                }));
            }
            let source_tokens = source.len();
            let (job, receiver) = Job::new(source, lane, options.max_length.map(|n| n as usize), deadline);
            jobs.push(job);
            slots.push(Slot::Pending { receiver, source_tokens });
        }
        engine.submit(jobs).map_err(named)?;
        Ok(Submitted {
            model: model.name.clone(),
            tokenizer: tokenizer.clone(),
            slots,
            return_token_ids: options.return_token_ids,
        })
    }

    /// Every sentence of the request, in order, with the request's timing.
    async fn translate_all(
        &self,
        request: &TranslateRequest,
        arrived: Instant,
        deadline: Option<Instant>,
    ) -> (String, Result<TranslateResponse, RequestError>) {
        let mut submitted = match self.submit(request, deadline) {
            Ok(s) => s,
            Err((model, error)) => return (model, Err(error)),
        };
        let model = submitted.model.clone();
        let work = async {
            let mut translations = Vec::with_capacity(submitted.slots.len());
            let (mut first_join, mut last_finish) = (None::<Instant>, None::<Instant>);
            for slot in std::mem::take(&mut submitted.slots) {
                match slot {
                    Slot::Ready(t) => translations.push(t),
                    Slot::Pending { receiver, source_tokens } => {
                        let done = receiver.await.map_err(|_| RequestError::Internal("engine stopped".into()))?;
                        let done = done.map_err(job_error)?;
                        first_join = Some(first_join.map_or(done.joined, |t: Instant| t.min(done.joined)));
                        last_finish = Some(last_finish.map_or(done.finished, |t: Instant| t.max(done.finished)));
                        translations.push(submitted.translation(done, source_tokens)?);
                    }
                }
            }
            let now = Instant::now();
            let micros = |d: Duration| d.as_micros() as u64;
            let timing = Timing {
                queue_us: first_join.map_or(0, |j| micros(j.saturating_duration_since(arrived))),
                decode_us: match (first_join, last_finish) {
                    (Some(j), Some(f)) => micros(f.saturating_duration_since(j)),
                    _ => 0,
                },
                total_us: micros(now.saturating_duration_since(arrived)),
            };
            Ok(TranslateResponse { model: submitted.model.clone(), translations, timing: Some(timing) })
        };
        let result = match deadline {
            Some(deadline) => {
                tokio::time::timeout_at(deadline.into(), work).await.unwrap_or(Err(RequestError::Deadline))
            }
            None => work.await,
        };
        (model, result)
    }
}

fn record(method: &'static str, model: String, code: tonic::Code, started: Instant) {
    let code = format!("{code:?}");
    metrics::counter!(names::REQUESTS_TOTAL, "model" => model.clone(), "method" => method, "code" => code).increment(1);
    metrics::histogram!(names::REQUEST_DURATION, "model" => model, "method" => method)
        .record(started.elapsed().as_secs_f64());
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<TranslateStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Translator for TranslatorService {
    async fn translate(&self, request: Request<TranslateRequest>) -> Result<Response<TranslateResponse>, Status> {
        let started = Instant::now();
        let deadline = deadline(request.metadata(), started);
        let request = request.into_inner();
        let (model, result) = self.translate_all(&request, started, deadline).await;
        match result {
            Ok(response) => {
                record("Translate", model, tonic::Code::Ok, started);
                self.after_success(&request, &response, started.elapsed().as_secs_f64());
                Ok(Response::new(response))
            }
            Err(error) => {
                record("Translate", model, error.code(), started);
                Err(error.into())
            }
        }
    }

    type TranslateStreamStream = ResponseStream;

    async fn translate_stream(
        &self,
        request: Request<Streaming<TranslateStreamRequest>>,
    ) -> Result<Response<Self::TranslateStreamStream>, Status> {
        let stream_deadline = deadline(request.metadata(), Instant::now());
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let service = self.clone();
        tokio::spawn(async move {
            let in_flight = Arc::new(std::sync::Mutex::new(HashSet::new()));
            while let Ok(Some(message)) = inbound.message().await {
                let started = Instant::now();
                let id = message.request_id;
                if !in_flight.lock().expect("in-flight set").insert(id.clone()) {
                    let error = RequestError::DuplicateRequestId(id);
                    record("TranslateStream", UNKNOWN_MODEL_LABEL.to_owned(), error.code(), started);
                    let _ = tx.send(Err(error.into())).await;
                    return;
                }
                let request = message.request.unwrap_or_default();
                let mut submitted = match service.submit(&request, stream_deadline) {
                    Ok(submitted) => submitted,
                    Err((model, error)) => {
                        record("TranslateStream", model, error.code(), started);
                        let status = Status::new(error.code(), format!("request `{id}`: {error}"));
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                // Each sentence is sent the moment it finishes; the last one marks the request done.
                let remaining = Arc::new(AtomicUsize::new(submitted.slots.len()));
                if submitted.slots.is_empty() {
                    let reply =
                        TranslateStreamResponse { request_id: id.clone(), request_done: true, ..Default::default() };
                    in_flight.lock().expect("in-flight set").remove(&id);
                    record("TranslateStream", submitted.model.clone(), tonic::Code::Ok, started);
                    if tx.send(Ok(reply)).await.is_err() {
                        return;
                    }
                    continue;
                }
                let slots = std::mem::take(&mut submitted.slots);
                let submitted = Arc::new(submitted);
                for (index, slot) in slots.into_iter().enumerate() {
                    let (tx, id, remaining, submitted, in_flight) =
                        (tx.clone(), id.clone(), remaining.clone(), submitted.clone(), in_flight.clone());
                    tokio::spawn(async move {
                        let translation = match slot {
                            Slot::Ready(t) => Ok(t),
                            Slot::Pending { receiver, source_tokens } => match receiver.await {
                                Ok(Ok(done)) => submitted.translation(done, source_tokens),
                                Ok(Err(e)) => Err(job_error(e)),
                                Err(_) => Err(RequestError::Internal("engine stopped".into())),
                            },
                        };
                        let reply = match translation {
                            Ok(translation) => {
                                let done = remaining.fetch_sub(1, Ordering::SeqCst) == 1;
                                if done {
                                    in_flight.lock().expect("in-flight set").remove(&id);
                                    record("TranslateStream", submitted.model.clone(), tonic::Code::Ok, started);
                                }
                                Ok(TranslateStreamResponse {
                                    request_id: id,
                                    index: index as u32,
                                    translation: Some(translation),
                                    request_done: done,
                                })
                            }
                            Err(error) => {
                                record("TranslateStream", submitted.model.clone(), error.code(), started);
                                Err(Status::new(error.code(), format!("request `{id}` sentence {index}: {error}")))
                            }
                        };
                        let _ = tx.send(reply).await;
                    });
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_models(&self, _request: Request<ListModelsRequest>) -> Result<Response<ListModelsResponse>, Status> {
        Ok(Response::new(self.registry()?.list()))
    }
}

#[cfg(test)]
mod tests {
    use xlmc_proto::v1::DecodingOptions;

    use super::*;

    fn limits() -> Limits {
        Limits {
            max_sentences: 2,
            max_sentence_bytes: 5,
            max_beam_size: 4,
            max_output_tokens: 10,
            max_source_tokens: 8,
        }
    }

    fn request(sentences: &[&str], options: Option<DecodingOptions>) -> TranslateRequest {
        TranslateRequest {
            sentences: sentences.iter().map(|s| (*s).to_owned()).collect(),
            options,
            ..Default::default()
        }
    }

    #[test]
    fn limits_are_named_in_the_error() {
        let err = validate(&request(&["a", "b", "c"], None), &limits()).unwrap_err();
        assert_eq!(err.to_string(), "request has 3 sentences; the limit is 2 (--max-sentences-per-request)");
        let err = validate(&request(&["ok", "toolong"], None), &limits()).unwrap_err();
        assert!(matches!(err, RequestError::SentenceTooLong { index: 1, bytes: 7, limit: 5 }));
    }

    #[test]
    fn decoding_options_must_stay_within_server_limits() {
        let opts = |beam, len, lp| {
            Some(DecodingOptions { beam_size: beam, max_length: len, length_penalty: lp, ..Default::default() })
        };
        assert!(validate(&request(&["a"], opts(Some(4), Some(10), Some(1.0))), &limits()).is_ok());
        assert!(matches!(
            validate(&request(&["a"], opts(Some(0), None, None)), &limits()),
            Err(RequestError::BeamSize { asked: 0, .. })
        ));
        assert!(matches!(
            validate(&request(&["a"], opts(Some(5), None, None)), &limits()),
            Err(RequestError::BeamSize { asked: 5, .. })
        ));
        assert!(matches!(
            validate(&request(&["a"], opts(None, Some(11), None)), &limits()),
            Err(RequestError::MaxLength { asked: 11, .. })
        ));
        assert!(matches!(
            validate(&request(&["a"], opts(None, None, Some(f32::NAN))), &limits()),
            Err(RequestError::LengthPenalty(_))
        ));
    }

    #[test]
    fn empty_request_is_valid() {
        assert!(validate(&request(&[], None), &limits()).is_ok());
    }
}
