//! A minimal HTTP/1.1 endpoint for Prometheus scrapes.
//!
//! metrics-exporter-prometheus's own listener binds an address it never reports back, so a
//! server started on port 0 (as tests do) could not say where its metrics are. Serving the
//! handle's rendering on a listener we bound ourselves keeps that address known.

use std::{convert::Infallible, future::Future};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

const METRICS_PATH: &str = "/metrics";
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answers `GET /metrics` until `shutdown` resolves; anything else gets 404 (or 405).
pub async fn serve_metrics(
    listener: TcpListener,
    handle: PrometheusHandle,
    shutdown: impl Future<Output = ()>,
) -> Result<(), crate::TelemetryError> {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "metrics endpoint: accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| respond(req, handle.clone()));
            if let Err(error) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%error, "metrics endpoint: connection ended with an error");
            }
        });
    }
}

async fn respond(req: Request<Incoming>, handle: PrometheusHandle) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, METRICS_PATH) => (StatusCode::OK, handle.render()),
        (_, METRICS_PATH) => (StatusCode::METHOD_NOT_ALLOWED, String::from("use GET\n")),
        _ => (StatusCode::NOT_FOUND, format!("metrics are at {METRICS_PATH}\n")),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    Ok(response)
}
