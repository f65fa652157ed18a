//! The `xlmc.v1.Translator` service: request validation, model lookup, metrics per RPC.

use std::{collections::HashSet, pin::Pin, sync::Arc, time::Instant};

use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use xlmc_proto::v1::{
    ListModelsRequest, ListModelsResponse, TranslateRequest, TranslateResponse, TranslateStreamRequest,
    TranslateStreamResponse, Translation, translator_server::Translator,
};
use xlmc_telemetry::names;

use crate::{error::RequestError, registry::Registry, settings::Settings};

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
}

impl From<&Settings> for Limits {
    fn from(s: &Settings) -> Self {
        Self {
            max_sentences: s.max_sentences_per_request,
            max_sentence_bytes: s.max_sentence_bytes,
            max_beam_size: s.max_beam_size,
            max_output_tokens: s.max_output_tokens,
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
    registry: Arc<Registry>,
}

impl TranslatorService {
    pub fn new(limits: Limits, registry: Registry) -> Self {
        Self { limits: Arc::new(limits), registry: Arc::new(registry) }
    }

    /// Validates, resolves the model and translates; returns the model's name with the result.
    async fn translate_sentences(
        &self,
        request: &TranslateRequest,
    ) -> (String, Result<Vec<Translation>, RequestError>) {
        if let Err(e) = validate(request, &self.limits) {
            return (UNKNOWN_MODEL_LABEL.to_owned(), Err(e));
        }
        match self.registry.resolve(&request.model) {
            Ok(model) => (model.name.clone(), model.translate(request).await),
            Err(e) => (UNKNOWN_MODEL_LABEL.to_owned(), Err(e)),
        }
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
        let request = request.into_inner();
        let (model, result) = self.translate_sentences(&request).await;
        match result {
            Ok(translations) => {
                record("Translate", model.clone(), tonic::Code::Ok, started);
                Ok(Response::new(TranslateResponse { model, translations, timing: None }))
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
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let service = self.clone();
        tokio::spawn(async move {
            let mut in_flight = HashSet::new();
            while let Ok(Some(message)) = inbound.message().await {
                let started = Instant::now();
                let id = message.request_id;
                if !in_flight.insert(id.clone()) {
                    let error = RequestError::DuplicateRequestId(id);
                    record("TranslateStream", UNKNOWN_MODEL_LABEL.to_owned(), error.code(), started);
                    let _ = tx.send(Err(error.into())).await;
                    return;
                }
                let request = message.request.unwrap_or_default();
                let (model, result) = service.translate_sentences(&request).await;
                match result {
                    Ok(translations) => {
                        record("TranslateStream", model, tonic::Code::Ok, started);
                        let last = translations.len().saturating_sub(1);
                        for (index, translation) in translations.into_iter().enumerate() {
                            let reply = TranslateStreamResponse {
                                request_id: id.clone(),
                                index: index as u32,
                                translation: Some(translation),
                                request_done: index == last,
                            };
                            if tx.send(Ok(reply)).await.is_err() {
                                return; // client gone: stop producing
                            }
                        }
                        in_flight.remove(&id);
                    }
                    Err(error) => {
                        record("TranslateStream", model, error.code(), started);
                        let status = Status::new(error.code(), format!("request `{id}`: {error}"));
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_models(&self, _request: Request<ListModelsRequest>) -> Result<Response<ListModelsResponse>, Status> {
        Ok(Response::new(self.registry.list()))
    }
}

#[cfg(test)]
mod tests {
    use xlmc_proto::v1::DecodingOptions;

    use super::*;

    fn limits() -> Limits {
        Limits { max_sentences: 2, max_sentence_bytes: 5, max_beam_size: 4, max_output_tokens: 10 }
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
