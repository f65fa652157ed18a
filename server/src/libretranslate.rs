//! A LibreTranslate-compatible HTTP API (`--http-addr`), on the same models, queues, limits and
//! token as gRPC, so apps that speak LibreTranslate (Mastodon, Discourse, Weblate, browser
//! extensions, `libretranslatepy`) can point at xlmc unchanged.
//!
//! - `POST /translate`: JSON or form body; `q` a string or a list; `source` (or `auto` when the
//!   target has one source), `target`, `format` `text` or `html`, `api_key`. Answers
//!   `{"translatedText": …}` shaped like `q`.
//! - `GET /languages`: each language with the targets the loaded models translate it into.
//! - Errors: `{"error": "…"}` with 400 (bad request, unknown language, over a limit), 403 (API key),
//!   404 (no such endpoint), 413 (body over `--max-message-bytes`), 429 (queue full), 500, 501
//!   (`/detect`: xlmc does no language detection), 503 (loading, model failed).
//!
//! Each model translates one direction: its first language into its second (the direction it
//! was trained in, and gRPC's default). Text is translated line by line; see [`crate::markup`].

use std::{sync::Arc, time::Instant};

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use xlmc_proto::v1::TranslateRequest;
use xlmc_telemetry::names;

use crate::{
    error::RequestError,
    markup::{self, Piece},
    registry::Registry,
    service::TranslatorService,
};

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct Api {
    service: TranslatorService,
    /// `--auth-token`: accepted as `Authorization: Bearer …` or as the `api_key` field.
    token: Option<Arc<str>>,
    max_body_bytes: usize,
}

impl Api {
    pub fn new(service: TranslatorService, token: Option<String>, max_body_bytes: usize) -> Self {
        Self { service, token: token.map(Into::into), max_body_bytes }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/translate", post(translate))
            .route("/languages", get(languages))
            .route("/detect", post(detect))
            .fallback(not_found)
            .with_state(self)
    }
}

/// A LibreTranslate-shaped error.
#[derive(Debug, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &json!({ "error": self.message }))
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        use tonic::Code;
        let status = match error.code() {
            Code::InvalidArgument | Code::NotFound => StatusCode::BAD_REQUEST,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self { status, message: error.to_string() }
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

fn record(route: &'static str, status: StatusCode, started: Instant) {
    metrics::counter!(names::HTTP_REQUESTS_TOTAL, "route" => route, "status" => status.as_u16().to_string())
        .increment(1);
    metrics::histogram!(names::HTTP_REQUEST_DURATION, "route" => route).record(started.elapsed().as_secs_f64());
}

/// `q`: one text or a list of them; the reply has the same shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Texts {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    Text,
    Html,
}

/// A parsed `/translate` body.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslateForm {
    pub q: Texts,
    pub source: String,
    pub target: String,
    pub format: Format,
    pub api_key: Option<String>,
    pub alternatives: u32,
}

/// The fields of a JSON object or an urlencoded form, as JSON values (form values are strings).
fn fields(content_type: &str, body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ApiError::bad_request("Invalid request: the JSON body must be an object")),
            Err(e) => Err(ApiError::bad_request(format!("Invalid request: malformed JSON body: {e}"))),
        },
        "" | "application/x-www-form-urlencoded" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("Invalid request: the form body is not UTF-8"))?;
            let mut map = serde_json::Map::new();
            for pair in text.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(&s.replace('+', " "))
                        .decode_utf8()
                        .map(|c| c.into_owned())
                        .map_err(|_| ApiError::bad_request("Invalid request: the form body is not UTF-8"))
                };
                map.insert(decode(key)?, Value::String(decode(value)?));
            }
            Ok(map)
        }
        other => Err(ApiError::bad_request(format!(
            "Invalid request: content type `{other}` is not supported; send application/json or \
             application/x-www-form-urlencoded"
        ))),
    }
}

/// Parses a `/translate` body the way LibreTranslate reads it.
pub fn parse_translate(content_type: &str, body: &[u8]) -> Result<TranslateForm, ApiError> {
    let map = fields(content_type, body)?;
    let text = |key: &str| -> Result<Option<String>, ApiError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::bad_request(format!("Invalid request: {key} must be a string"))),
        }
    };
    let required = |key: &str| {
        text(key)?.ok_or_else(|| ApiError::bad_request(format!("Invalid request: missing {key} parameter")))
    };
    let q = match map.get("q") {
        None | Some(Value::Null) => return Err(ApiError::bad_request("Invalid request: missing q parameter")),
        Some(Value::String(s)) => Texts::One(s.clone()),
        Some(Value::Array(items)) => Texts::Many(
            items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| ApiError::bad_request("Invalid request: q must be a string or a list of strings"))?,
        ),
        Some(_) => return Err(ApiError::bad_request("Invalid request: q must be a string or a list of strings")),
    };
    let format = match text("format")?.as_deref() {
        None | Some("text") => Format::Text,
        Some("html") => Format::Html,
        Some(other) => {
            return Err(ApiError::bad_request(format!("Invalid request: format `{other}` is not text or html")));
        }
    };
    let alternatives = match map.get("alternatives") {
        None | Some(Value::Null) => Some(0),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    }
    .ok_or_else(|| ApiError::bad_request("Invalid request: alternatives must be a whole number"))?;
    Ok(TranslateForm {
        q,
        source: required("source")?,
        target: required("target")?,
        format,
        api_key: text("api_key")?,
        alternatives,
    })
}

/// A direction a loaded model translates.
#[derive(Debug, Clone, PartialEq)]
pub struct Direction {
    pub model: String,
    pub source: String,
    pub target: String,
}

/// Every serving model's direction, the default model's first.
pub fn directions(registry: &Registry) -> Vec<Direction> {
    let default = registry.list().default_model;
    let mut all: Vec<Direction> = registry
        .models()
        .filter(|m| m.serving.is_some() && m.info.languages.len() >= 2)
        .map(|m| Direction {
            model: m.name.clone(),
            source: m.info.languages[0].clone(),
            target: m.info.languages[1].clone(),
        })
        .collect();
    all.sort_by_key(|d| d.model != default);
    all
}

/// The model for `source` → `target` (`auto`: the one source offered into `target`).
pub fn choose<'a>(offered: &'a [Direction], source: &str, target: &str) -> Result<&'a Direction, ApiError> {
    let listing = || {
        let pairs: Vec<String> = offered.iter().map(|d| format!("{}→{}", d.source, d.target)).collect();
        if pairs.is_empty() { String::from("nothing (no model is serving)") } else { pairs.join(", ") }
    };
    let into_target: Vec<&Direction> = offered.iter().filter(|d| d.target == target).collect();
    if source == "auto" {
        let mut sources: Vec<&str> = Vec::new();
        for d in &into_target {
            if !sources.contains(&d.source.as_str()) {
                sources.push(&d.source);
            }
        }
        return match sources.as_slice() {
            [_] => Ok(into_target[0]),
            [] => Err(ApiError::bad_request(format!(
                "{target} is not supported as a target; this server translates {}",
                listing()
            ))),
            _ => Err(ApiError::bad_request(format!(
                "source auto: xlmc does no language detection and {target} has several sources ({}); pass source",
                sources.join(", ")
            ))),
        };
    }
    into_target.into_iter().find(|d| d.source == source).ok_or_else(|| {
        ApiError::bad_request(format!("{source}→{target} is not supported; this server translates {}", listing()))
    })
}

fn authorized(api: &Api, headers: &HeaderMap, api_key: Option<&str>) -> Result<(), ApiError> {
    let Some(token) = &api.token else { return Ok(()) };
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let same = |given: &str| crate::auth::constant_time_eq(given.as_bytes(), token.as_bytes());
    if bearer.is_some_and(same) || api_key.is_some_and(same) {
        Ok(())
    } else {
        Err(ApiError { status: StatusCode::FORBIDDEN, message: String::from("Invalid API key") })
    }
}

async fn read_body(api: &Api, body: Body) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, api.max_body_bytes).await.map_err(|_| ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("the request body is over {} bytes (--max-message-bytes)", api.max_body_bytes),
    })
}

async fn translate(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let response = match translate_body(&api, &headers, body, started).await {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(error) => error.into_response(),
    };
    record("/translate", response.status(), started);
    response
}

async fn translate_body(api: &Api, headers: &HeaderMap, body: Body, started: Instant) -> Result<Value, ApiError> {
    let bytes = read_body(api, body).await?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let form = parse_translate(content_type, &bytes)?;
    authorized(api, headers, form.api_key.as_deref())?;
    let registry = api.service.registry()?;
    let offered = directions(registry);
    let direction = choose(&offered, &form.source, &form.target)?.clone();
    let texts = match &form.q {
        Texts::One(text) => std::slice::from_ref(text),
        Texts::Many(texts) => texts.as_slice(),
    };
    let documents: Vec<Vec<Piece>> = texts
        .iter()
        .map(|t| match form.format {
            Format::Text => markup::text_pieces(t),
            Format::Html => markup::html_pieces(t),
        })
        .collect();
    let sentences: Vec<String> = documents
        .iter()
        .flatten()
        .filter_map(|p| match p {
            Piece::Translate(s) => Some(s.clone()),
            Piece::Verbatim(_) => None,
        })
        .collect();
    let request = TranslateRequest {
        model: direction.model.clone(),
        sentences,
        source_language: direction.source.clone(),
        target_language: direction.target.clone(),
        options: None,
    };
    let (_, result) = api.service.translate_all(&request, started, None).await;
    let response = result?;
    api.service.after_success(&request, &response, started.elapsed().as_secs_f64());
    let mut outputs = response.translations.into_iter().map(|t| t.text);
    let translated: Vec<String> =
        documents.iter().map(|pieces| markup::join(pieces, &mut outputs, form.format == Format::Html)).collect();
    let detected = json!({ "confidence": 100.0, "language": direction.source });
    let mut reply = serde_json::Map::new();
    match form.q {
        Texts::One(_) => {
            reply.insert("translatedText".into(), json!(translated[0]));
            if form.source == "auto" {
                reply.insert("detectedLanguage".into(), detected);
            }
            if form.alternatives > 0 {
                reply.insert("alternatives".into(), json!([]));
            }
        }
        Texts::Many(_) => {
            let n = translated.len();
            reply.insert("translatedText".into(), json!(translated));
            if form.source == "auto" {
                reply.insert("detectedLanguage".into(), Value::Array(vec![detected; n]));
            }
            if form.alternatives > 0 {
                reply.insert("alternatives".into(), Value::Array(vec![json!([]); n]));
            }
        }
    }
    Ok(Value::Object(reply))
}

async fn languages(State(api): State<Api>) -> Response {
    let started = Instant::now();
    let response = match api.service.registry() {
        Ok(registry) => json_response(StatusCode::OK, &languages_json(&directions(registry))),
        Err(error) => ApiError::from(error).into_response(),
    };
    record("/languages", response.status(), started);
    response
}

/// `[{"code", "name", "targets"}]` for every language on either side of a direction.
pub fn languages_json(offered: &[Direction]) -> Value {
    let mut codes: Vec<&str> = offered.iter().flat_map(|d| [d.source.as_str(), d.target.as_str()]).collect();
    codes.sort_unstable();
    codes.dedup();
    Value::Array(
        codes
            .into_iter()
            .map(|code| {
                let mut targets: Vec<&str> =
                    offered.iter().filter(|d| d.source == code).map(|d| d.target.as_str()).collect();
                targets.sort_unstable();
                targets.dedup();
                json!({ "code": code, "name": language_name(code), "targets": targets })
            })
            .collect(),
    )
}

/// English names of common ISO 639-1 codes; others are shown as their code.
fn language_name(code: &str) -> &str {
    match code {
        "ar" => "Arabic",
        "de" => "German",
        "en" => "English",
        "es" => "Spanish",
        "fr" => "French",
        "hi" => "Hindi",
        "it" => "Italian",
        "ja" => "Japanese",
        "ko" => "Korean",
        "nl" => "Dutch",
        "pl" => "Polish",
        "pt" => "Portuguese",
        "ro" => "Romanian",
        "ru" => "Russian",
        "tr" => "Turkish",
        "uk" => "Ukrainian",
        "zh" => "Chinese",
        other => other,
    }
}

async fn detect() -> Response {
    let started = Instant::now();
    let response = ApiError {
        status: StatusCode::NOT_IMPLEMENTED,
        message: String::from("xlmc does no language detection; pass source to /translate"),
    }
    .into_response();
    record("/detect", response.status(), started);
    response
}

async fn not_found(method: Method, uri: Uri) -> Response {
    let started = Instant::now();
    let response = ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no endpoint {method} {}; this server has POST /translate and GET /languages", uri.path()),
    }
    .into_response();
    record("other", response.status(), started);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &str = "application/x-www-form-urlencoded";

    #[test]
    fn form_and_json_bodies_parse_alike() {
        let form = parse_translate(FORM, b"q=Hello+world%21&source=en&target=fr&api_key=k%2B1").unwrap();
        let json = parse_translate(
            "application/json; charset=utf-8",
            br#"{"q": "Hello world!", "source": "en", "target": "fr", "api_key": "k+1", "extra": 1}"#,
        )
        .unwrap();
        assert_eq!(form, json);
        assert_eq!(form.q, Texts::One("Hello world!".into()));
        assert_eq!(form.api_key.as_deref(), Some("k+1"));
        let list = parse_translate(
            "application/json",
            br#"{"q": ["a", "b"], "source": "auto", "target": "fr", "format": "html", "alternatives": 2}"#,
        )
        .unwrap();
        assert_eq!(
            (list.q, list.format, list.alternatives),
            (Texts::Many(vec!["a".into(), "b".into()]), Format::Html, 2)
        );
    }

    #[test]
    fn bad_bodies_are_named_400s() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("application/json", b"{\"q\": ", "malformed JSON body"),
            ("application/json", b"[1]", "must be an object"),
            ("application/json", br#"{"source": "en", "target": "fr"}"#, "missing q parameter"),
            ("application/json", br#"{"q": 3, "source": "en", "target": "fr"}"#, "q must be a string or a list"),
            ("application/json", br#"{"q": ["a", 1], "source": "en", "target": "fr"}"#, "q must be a string or a list"),
            (FORM, b"q=a&source=en", "missing target parameter"),
            (FORM, b"q=a&target=fr", "missing source parameter"),
            (FORM, b"q=a&source=en&target=fr&format=pdf", "format `pdf`"),
            (FORM, b"q=a&source=en&target=fr&alternatives=x", "alternatives must be a whole number"),
            (FORM, b"q=%FF&source=en&target=fr", "not UTF-8"),
            ("multipart/form-data; boundary=x", b"", "content type `multipart/form-data`"),
        ];
        for (content_type, body, expected) in cases {
            let err = parse_translate(content_type, body).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert!(err.message.contains(expected), "{:?}: {}", String::from_utf8_lossy(body), err.message);
        }
    }

    fn offered() -> Vec<Direction> {
        let d = |model: &str, source: &str, target: &str| Direction {
            model: model.into(),
            source: source.into(),
            target: target.into(),
        };
        vec![d("small", "en", "fr"), d("teacher", "en", "fr"), d("back", "fr", "en"), d("de", "de", "en")]
    }

    #[test]
    fn directions_pick_the_first_model_and_auto_needs_a_single_source() {
        let offered = offered();
        assert_eq!(choose(&offered, "en", "fr").unwrap().model, "small");
        assert_eq!(choose(&offered, "auto", "fr").unwrap().model, "small");
        assert_eq!(choose(&offered, "fr", "en").unwrap().model, "back");
        let err = choose(&offered, "en", "de").unwrap_err();
        assert_eq!(err.message, "en→de is not supported; this server translates en→fr, en→fr, fr→en, de→en");
        assert!(choose(&offered, "auto", "en").unwrap_err().message.contains("several sources (fr, de)"));
        assert!(choose(&[], "auto", "fr").unwrap_err().message.contains("no model is serving"));
    }

    #[test]
    fn languages_list_every_code_with_its_targets() {
        assert_eq!(
            languages_json(&offered()),
            json!([
                { "code": "de", "name": "German", "targets": ["en"] },
                { "code": "en", "name": "English", "targets": ["fr"] },
                { "code": "fr", "name": "French", "targets": ["en"] },
            ])
        );
    }

    #[test]
    fn request_errors_keep_their_meaning_as_http_statuses() {
        let status = |e: RequestError| ApiError::from(e).status;
        assert_eq!(status(RequestError::TooManySentences { count: 3, limit: 2 }), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(RequestError::QueueFull { model: "m".into(), waiting: 1, limit: 1 }),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(status(RequestError::Loading), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(RequestError::Internal("x".into())), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
