//! Request errors and their one mapping to gRPC status codes.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request has {count} sentences; the limit is {limit} (--max-sentences-per-request)")]
    TooManySentences { count: usize, limit: usize },
    #[error("sentence {index} has {bytes} bytes; the limit is {limit} (--max-sentence-bytes)")]
    SentenceTooLong { index: usize, bytes: usize, limit: usize },
    #[error("beam_size {asked} is out of range 1..={limit} (--max-beam-size)")]
    BeamSize { asked: u32, limit: u32 },
    #[error("max_length {asked} is out of range 1..={limit} (--max-output-tokens)")]
    MaxLength { asked: u32, limit: u32 },
    #[error("length_penalty {0} must be a finite number")]
    LengthPenalty(f32),
    #[error("stream request id `{0}` is already in flight on this stream")]
    DuplicateRequestId(String),
    #[error("unknown model `{asked}`; this server has: {available}")]
    UnknownModel { asked: String, available: String },
    #[error("no model is loaded; start the server with --models DIR")]
    NoModels,
    #[error("model `{model}` is not serving: {reason}")]
    ModelUnavailable { model: String, reason: String },
    #[error("unknown language `{asked}` for model `{model}`; it has: {available}")]
    UnknownLanguage { asked: String, model: String, available: String },
    #[error("sentence {index} has {tokens} tokens; the limit is {limit} (--max-source-tokens)")]
    SourceTooLong { index: usize, tokens: usize, limit: usize },
    #[error(
        "model `{model}` has {waiting} sentences waiting; the limit is {limit} (--max-queue-sentences): retry later"
    )]
    QueueFull { model: String, waiting: usize, limit: usize },
    #[error("the server is still loading its models; retry shortly")]
    Loading,
    #[error("deadline exceeded")]
    Deadline,
    #[error("{0}")]
    Internal(String),
}

impl RequestError {
    pub fn code(&self) -> Code {
        match self {
            RequestError::UnknownModel { .. } | RequestError::NoModels | RequestError::UnknownLanguage { .. } => {
                Code::NotFound
            }
            RequestError::ModelUnavailable { .. } | RequestError::Loading => Code::Unavailable,
            RequestError::QueueFull { .. } => Code::ResourceExhausted,
            RequestError::Deadline => Code::DeadlineExceeded,
            RequestError::Internal(_) => Code::Internal,
            _ => Code::InvalidArgument,
        }
    }
}

impl From<RequestError> for Status {
    fn from(error: RequestError) -> Self {
        Status::new(error.code(), error.to_string())
    }
}
