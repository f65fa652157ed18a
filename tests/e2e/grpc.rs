//! The gRPC surface of a real `server` process on 127.0.0.1:0: the xlmc.v1 API's error paths,
//! health, reflection, the transport's message limit and graceful SIGTERM.

use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use xlmc_proto::v1::{
    DecodingOptions, ListModelsRequest, TranslateRequest, TranslateStreamRequest, translator_client::TranslatorClient,
};
use xlmc_tests::ServerProcess;

async fn channel(server: &ServerProcess) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(server.grpc_url()).expect("url").connect().await.expect("connect")
}

/// An en→fr request (shared by the other gRPC-driving tests).
pub(crate) fn request(model: &str, sentences: &[&str]) -> TranslateRequest {
    TranslateRequest {
        model: model.to_owned(),
        source_language: "en".to_owned(),
        target_language: "fr".to_owned(),
        sentences: sentences.iter().map(|s| (*s).to_owned()).collect(),
        options: None,
    }
}

#[tokio::test]
async fn translator_answers_with_precise_status_codes() {
    let server = ServerProcess::start(&["--max-sentences-per-request", "3", "--max-beam-size", "4"]);
    let mut client = TranslatorClient::connect(server.grpc_url()).await.expect("connect");

    let models = client.list_models(ListModelsRequest {}).await.expect("ListModels").into_inner();
    assert!(models.models.is_empty());
    assert_eq!(models.default_model, "");

    let status = client.translate(request("student-6-2", &["Hello."])).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "unknown model `student-6-2`; this server has: (none)");

    let status = client.translate(request("", &["Hello."])).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    let status = client.translate(request("teacher", &["a", "b", "c", "d"])).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("--max-sentences-per-request"), "{status:?}");

    let mut beam = request("teacher", &["a"]);
    beam.options = Some(DecodingOptions { beam_size: Some(9), ..Default::default() });
    let status = client.translate(beam).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "beam_size 9 is out of range 1..=4 (--max-beam-size)");
}

#[tokio::test]
async fn a_stream_answers_each_failed_request_with_its_status_and_goes_on() {
    let server = ServerProcess::start(&["--max-sentences-per-request", "2"]);
    let mut client = TranslatorClient::connect(server.grpc_url()).await.expect("connect");
    let outbound = tokio_stream::iter([
        TranslateStreamRequest { request_id: "r-17".to_owned(), request: Some(request("missing", &["Hi."])) },
        TranslateStreamRequest { request_id: "r-18".to_owned(), request: Some(request("teacher", &["a", "b", "c"])) },
        TranslateStreamRequest { request_id: "r-19".to_owned(), request: Some(request("", &["Hi."])) },
    ]);
    let mut inbound = client.translate_stream(outbound).await.expect("open stream").into_inner();
    let mut results = Vec::new();
    while let Some(reply) = inbound.next().await {
        let reply = reply.expect("a result, not the end of the stream");
        assert!(reply.request_done && reply.translation.is_none(), "{reply:?}");
        let status = reply.status.expect("a status");
        results.push((reply.request_id, Code::from_i32(status.code), status.message));
    }
    assert_eq!(results.len(), 3, "every request answered: {results:?}");
    assert_eq!((results[0].0.as_str(), results[0].1), ("r-17", Code::NotFound));
    assert!(results[0].2.starts_with("request `r-17`: unknown model `missing`"), "{results:?}");
    assert_eq!((results[1].0.as_str(), results[1].1), ("r-18", Code::InvalidArgument));
    assert!(results[1].2.contains("--max-sentences-per-request"), "{results:?}");
    assert_eq!((results[2].0.as_str(), results[2].1), ("r-19", Code::NotFound));
}

#[tokio::test]
async fn oversized_messages_are_refused_by_the_transport() {
    let server = ServerProcess::start(&["--max-message-bytes", "1024", "--max-sentence-bytes", "512"]);
    let mut client = TranslatorClient::connect(server.grpc_url()).await.expect("connect");
    let big = "x".repeat(4096);
    let status = client.translate(request("teacher", &[&big])).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    // The server survives and keeps answering.
    client.list_models(ListModelsRequest {}).await.expect("still serving");
}

#[tokio::test]
async fn health_reports_serving_per_service() {
    let server = ServerProcess::start(&[]);
    let mut health = HealthClient::new(channel(&server).await);
    for service in ["", xlmc_proto::TRANSLATOR_SERVICE] {
        let reply = health.check(HealthCheckRequest { service: service.to_owned() }).await.expect("check");
        assert_eq!(reply.into_inner().status(), ServingStatus::Serving, "service `{service}`");
    }
    let status = health.check(HealthCheckRequest { service: "no.such.Service".to_owned() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

/// What one reflection version tells a client that knows nothing of xlmc: the services listed,
/// and the file descriptor defining `xlmc.v1.Translator` (from which a client builds its calls).
macro_rules! discover {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut reflection = ServerReflectionClient::new($channel);
        let ask = |request| ServerReflectionRequest { host: String::new(), message_request: Some(request) };
        let questions = [
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(xlmc_proto::TRANSLATOR_SERVICE.to_owned())),
        ];
        let mut replies =
            reflection.server_reflection_info(tokio_stream::iter(questions)).await.expect("reflect").into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            replies.next().await.expect("a reply").expect("ok").message_response
        else {
            panic!("no service list");
        };
        let Some(MessageResponse::FileDescriptorResponse(files)) =
            replies.next().await.expect("a reply").expect("ok").message_response
        else {
            panic!("no file descriptor");
        };
        let services: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        (services, files.file_descriptor_proto)
    }};
}

/// The method `Translate` of `xlmc.v1.Translator` in encoded file descriptors: its input and output types.
fn translate_method(files: &[Vec<u8>]) -> Option<(String, String)> {
    use prost::Message;
    files.iter().find_map(|bytes| {
        let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).expect("a file descriptor");
        let service = file.service.iter().find(|s| s.name() == "Translator")?;
        let method = service.method.iter().find(|m| m.name() == "Translate")?;
        Some((method.input_type().to_owned(), method.output_type().to_owned()))
    })
}

#[tokio::test]
async fn both_reflection_versions_let_a_client_discover_and_call_translate() {
    let server = ServerProcess::start(&[]);
    let discovered =
        [("v1", discover!(v1, channel(&server).await)), ("v1alpha", discover!(v1alpha, channel(&server).await))];
    for (version, (services, files)) in discovered {
        for wanted in [xlmc_proto::TRANSLATOR_SERVICE, "grpc.health.v1.Health"] {
            assert!(services.iter().any(|n| n == wanted), "{version}: {wanted} missing from {services:?}");
        }
        let reflection = format!("grpc.reflection.{version}.ServerReflection");
        assert!(services.contains(&reflection), "{version}: {reflection} missing from {services:?}");
        let (input, output) = translate_method(&files).unwrap_or_else(|| panic!("{version}: no Translate method"));
        assert_eq!((input.as_str(), output.as_str()), (".xlmc.v1.TranslateRequest", ".xlmc.v1.TranslateResponse"));
    }
    // The discovered method answers (this server holds no model: NOT_FOUND, naming the model).
    let mut client = TranslatorClient::new(channel(&server).await);
    let status = client.translate(request("teacher", &["Hello."])).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let server = ServerProcess::start(&[]);
    let url = server.grpc_url();
    TranslatorClient::connect(url.clone())
        .await
        .expect("connect")
        .list_models(ListModelsRequest {})
        .await
        .expect("serving");
    let status = tokio::task::spawn_blocking(move || server.terminate()).await.expect("join");
    assert!(status.success(), "exit status {status:?}");
    assert!(TranslatorClient::connect(url).await.is_err(), "nothing listens after shutdown");
}

#[tokio::test]
async fn a_bearer_token_guards_the_translator_but_not_health() {
    let server = ServerProcess::start(&["--auth-token", "s3cret"]);
    let mut client = TranslatorClient::connect(server.grpc_url()).await.expect("connect");
    let status = client.list_models(ListModelsRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("--auth-token"), "{status:?}");
    let mut wrong = tonic::Request::new(ListModelsRequest {});
    wrong.metadata_mut().insert("authorization", "Bearer guess".parse().unwrap());
    assert_eq!(client.list_models(wrong).await.unwrap_err().code(), Code::Unauthenticated);
    let mut right = tonic::Request::new(ListModelsRequest {});
    right.metadata_mut().insert("authorization", "Bearer s3cret".parse().unwrap());
    client.list_models(right).await.expect("the right token passes");
    let mut health = HealthClient::new(channel(&server).await);
    let reply = health.check(HealthCheckRequest { service: String::new() }).await.expect("probes need no token");
    assert_eq!(reply.into_inner().status(), ServingStatus::Serving);
}

/// A test CA and a `localhost` certificate it signed (PEM): (ca, cert, key).
fn test_certificates() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn tls_serves_clients_that_trust_its_ca_and_only_them() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_certificates();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    for (name, pem) in [("cert.pem", &cert), ("key.pem", &key)] {
        std::fs::write(path(name), pem).unwrap();
    }
    let server = ServerProcess::start(&["--tls-cert", &path("cert.pem"), "--tls-key", &path("key.pem")]);
    let url = format!("https://localhost:{}", server.grpc.port());
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
        .domain_name("localhost");
    let channel =
        tonic::transport::Endpoint::from_shared(url.clone()).unwrap().tls_config(tls).unwrap().connect().await;
    let mut client = TranslatorClient::new(channel.expect("a client trusting the CA connects"));
    client.list_models(ListModelsRequest {}).await.expect("ListModels over TLS");

    // Plain text to a TLS port fails; so does a client that does not trust the CA.
    let plain = TranslatorClient::connect(server.grpc_url()).await;
    let refused = match plain {
        Err(_) => true,
        Ok(mut client) => client.list_models(ListModelsRequest {}).await.is_err(),
    };
    assert!(refused, "plain text must not be served on the TLS port");
    let (other_ca, _, _) = test_certificates();
    let untrusting = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&other_ca))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(url).unwrap().tls_config(untrusting).unwrap().connect().await;
    assert!(channel.is_err(), "a client trusting another CA is refused");
}

#[tokio::test]
async fn the_healthcheck_binary_exits_0_only_when_serving() {
    let probe = |args: Vec<String>| {
        std::process::Command::new(xlmc_tests::binary("healthcheck")).env_clear().args(args).output().unwrap()
    };
    let server = ServerProcess::start(&[]);
    let url = server.grpc_url();
    let out = tokio::task::spawn_blocking(move || probe(vec![url])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "SERVING");
    // An unknown service, and a port nothing listens on: exit 1 with the reason.
    let url = server.grpc_url();
    let out = tokio::task::spawn_blocking(move || probe(vec![url, "--service".into(), "no-such-model".into()]))
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"), "{}", String::from_utf8_lossy(&out.stderr));
    let url = server.grpc_url();
    drop(server);
    let out = tokio::task::spawn_blocking(move || probe(vec![url, "--timeout".into(), "2".into()])).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
}
