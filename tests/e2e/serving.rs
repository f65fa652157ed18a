//! A real `server --models DIR` over exported bundles (a tiny teacher, its pruned student and a
//! corrupt bundle): concurrent clients get exactly what `exporter translate --bundle` writes,
//! streams deliver every sentence, the corrupt model is NOT_SERVING while the others serve, and
//! `/metrics` counts what was sent.

use std::net::SocketAddr;

use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use xlmc_proto::v1::{
    DecodingOptions, FinishReason, ListModelsRequest, ModelRole, ModelState, TranslateRequest, TranslateStreamRequest,
    translator_client::TranslatorClient,
};
use xlmc_tests::{Exposition, ServerProcess, http_get};

use crate::train::{exporter, teacher_and_student_bundles};

fn request(model: &str, sentences: &[String]) -> TranslateRequest {
    TranslateRequest {
        model: model.to_owned(),
        source_language: "en".to_owned(),
        target_language: "fr".to_owned(),
        sentences: sentences.to_vec(),
        options: None,
    }
}

/// A counter or gauge on the server's `/metrics` page, read until it is non-zero: at most `polls`
/// more reads, `every_ms` apart. Its last value (0 when it never appeared).
async fn first_nonzero(metrics: SocketAddr, name: &str, labels: &[(&str, &str)], polls: u32, every_ms: u64) -> u64 {
    let read = || {
        let (_, body) = http_get(metrics, "/metrics");
        Exposition::parse(&body).value(name, labels).unwrap_or(0.0) as u64
    };
    let mut value = read();
    for _ in 0..polls {
        if value > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(every_ms)).await;
        value = read();
    }
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_translates_like_the_exporter_under_concurrent_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    // Trained long enough to translate the word-for-word corpus (outputs as long as inputs), so
    // a batch of long sentences really takes many steps.
    teacher_and_student_bundles(dir.path(), 200);
    // A third bundle whose decoder was changed after export: refused at load, named in the reason.
    exporter(&["export", "--model", &path("student"), "--out", &path("models/broken")]);
    // The teacher's model folder as it is: served by the libtorch backend (feature `torch`).
    std::fs::create_dir_all(path("models/teacher-torch")).unwrap();
    for entry in std::fs::read_dir(path("run/model")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join("models/teacher-torch").join(entry.file_name())).unwrap();
    }
    let decoder = path("models/broken/decoder.onnx");
    let mut bytes = std::fs::read(&decoder).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&decoder, bytes).unwrap();

    // 96 sentences of 1–12 words (every 17th empty).
    let sentences: Vec<String> = (0..96)
        .map(|i| {
            if i % 17 == 5 {
                return String::new();
            }
            (0..1 + i % 12).map(|j| format!("w{}", (i * 5 + j * 3) % 6)).collect::<Vec<_>>().join(" ")
        })
        .collect();
    std::fs::write(path("in.en"), sentences.join("\n") + "\n").unwrap();
    let mut expected = std::collections::HashMap::new();
    for name in ["teacher", "student", "teacher-torch"] {
        let out = path(&format!("{name}.fr"));
        // The libtorch-served folder is compared with libtorch's own `translate --model`.
        let (flag, source) = match name {
            "teacher-torch" => ("--model", path("run/model")),
            _ => ("--bundle", path(&format!("models/{name}"))),
        };
        exporter(&["translate", flag, &source, "--input", &path("in.en"), "--output", &out]);
        let lines: Vec<String> = std::fs::read_to_string(&out).unwrap().lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), sentences.len());
        expected.insert(name, lines);
    }

    let server = ServerProcess::start(&[
        "--models",
        &path("models"),
        "--max-wait-us",
        "1000",
        "--max-batch-sentences",
        "16",
        // Step-level joining is checked below with the tiny model, whose whole wave lasts only a
        // few steps: newcomers join at every step, not after the default 4.
        "--join-every-steps",
        "1",
        "--shadow-rate",
        "1",
        "--teacher",
        "teacher",
        "--default-model",
        "student",
    ]);
    let mut client = TranslatorClient::connect(server.grpc_url()).await.expect("connect");

    let models = client.list_models(ListModelsRequest {}).await.unwrap().into_inner();
    let names: Vec<&str> = models.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["broken", "student", "teacher", "teacher-torch"]);
    let info = |name: &str| models.models.iter().find(|m| m.name == name).unwrap().clone();
    assert_eq!((info("teacher-torch").backend.as_str(), info("teacher").backend.as_str()), ("libtorch", "onnxruntime"));
    assert!(info("teacher").parameters > 0 && info("teacher-torch").parameters > 0);
    assert_eq!(info("broken").state, ModelState::Failed as i32);
    assert!(info("broken").state_reason.contains("decoder.onnx"), "{:?}", info("broken"));
    assert_eq!(info("teacher").role, ModelRole::Teacher as i32);
    assert_eq!((info("student").role, info("student").teacher.as_str()), (ModelRole::Student as i32, "teacher"));
    assert_eq!(models.default_model, "student");

    let mut health =
        HealthClient::new(tonic::transport::Channel::from_shared(server.grpc_url()).unwrap().connect().await.unwrap());
    for (service, status) in
        [("teacher", ServingStatus::Serving), ("broken", ServingStatus::NotServing), ("", ServingStatus::Serving)]
    {
        let reply = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(reply.status, status as i32, "health of `{service}`");
    }
    let status = client.translate(request("broken", &sentences[..2])).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("broken") && status.message().contains("decoder.onnx"), "{status:?}");

    // 8 concurrent clients, each sending requests of 1–9 sentences to both models: every reply
    // equals the exporter's file, whatever batch the sentence shared with others.
    let mut tasks = Vec::new();
    for client_id in 0..8usize {
        let (url, sentences) = (server.grpc_url(), sentences.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = TranslatorClient::connect(url).await.expect("connect");
            let mut got = Vec::new();
            let mut start = client_id * 7 % sentences.len();
            for round in 0..6 {
                let n = 1 + (client_id + round * 3) % 9;
                let model = ["teacher", "student", "teacher", "teacher-torch"][(client_id + round) % 4];
                let indices: Vec<usize> = (0..n).map(|k| (start + k) % sentences.len()).collect();
                let batch: Vec<String> = indices.iter().map(|&i| sentences[i].clone()).collect();
                let reply = client.translate(request(model, &batch)).await.expect("translate").into_inner();
                assert_eq!(reply.model, model);
                assert_eq!(reply.translations.len(), n);
                for (&i, t) in indices.iter().zip(reply.translations) {
                    got.push((model, i, t));
                }
                start += n;
            }
            got
        }));
    }
    let mut sent = std::collections::HashMap::<&str, (u64, u64)>::new();
    let mut shadowed: Vec<usize> = Vec::new();
    let mut student_sentences = 0;
    let mut teacher_sentences_all = 0u64;
    for task in tasks {
        for (model, i, t) in task.await.unwrap() {
            assert_eq!(t.text, expected[model][i], "{model} sentence {i} `{}`", sentences[i]);
            let entry = sent.entry(model).or_default();
            if model == "teacher" {
                teacher_sentences_all += 1;
            }
            if model == "student" {
                student_sentences += 1;
                if !sentences[i].is_empty() {
                    shadowed.push(i);
                }
            }
            if sentences[i].is_empty() {
                assert_eq!(t.finish_reason, FinishReason::EmptyInput as i32);
            } else {
                entry.0 += 1;
                entry.1 += u64::from(t.output_tokens);
                assert_ne!(t.finish_reason, FinishReason::EmptyInput as i32);
            }
        }
    }

    // --shadow-rate 1: every student request was also translated by the teacher in the
    // background; the student's shadow BLEU is corpus BLEU of its outputs against the teacher's.
    let mut stats = Default::default();
    for _ in 0..200 {
        let models = client.list_models(ListModelsRequest {}).await.unwrap().into_inner();
        stats = models.models.into_iter().find(|m| m.name == "student").unwrap().stats.unwrap();
        if stats.shadow_samples as usize == shadowed.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(stats.shadow_samples as usize, shadowed.len(), "{stats:?}");
    assert_eq!(stats.requests, 12);
    assert_eq!(stats.sentences, student_sentences);
    let hypotheses: Vec<&str> = shadowed.iter().map(|&i| expected["student"][i].as_str()).collect();
    let references: Vec<&str> = shadowed.iter().map(|&i| expected["teacher"][i].as_str()).collect();
    let bleu = xlmc_scoring::corpus_bleu(&hypotheses, &references).unwrap().score;
    assert!((stats.shadow_bleu - bleu).abs() < 1e-9, "{} vs {bleu}", stats.shadow_bleu);
    assert!(stats.shadow_latency_ratio > 0.0, "{stats:?}");
    let (_, body) = http_get(server.metrics, "/metrics");
    let gauge = Exposition::parse(&body).value("xlmc_shadow_bleu", &[("student", "student"), ("teacher", "teacher")]);
    assert!((gauge.unwrap() - bleu).abs() < 1e-9, "{gauge:?} vs {bleu}");

    // A stream of three requests with one for an unknown model among them: every sentence of the
    // good ones arrives once, tagged, with the same text; the bad one gets its error as its
    // result and the requests after it still work.
    let mut messages: Vec<TranslateStreamRequest> = (0..3)
        .map(|r| TranslateStreamRequest {
            request_id: format!("r{r}"),
            request: Some(request("teacher", &sentences[r * 20..r * 20 + 20])),
        })
        .collect();
    messages.insert(
        1,
        TranslateStreamRequest { request_id: "bad".into(), request: Some(request("nope", &sentences[..2])) },
    );
    let outbound = tokio_stream::iter(messages);
    let mut inbound = client.translate_stream(outbound).await.unwrap().into_inner();
    let mut seen = std::collections::HashSet::new();
    let mut done = 0;
    let mut errors = Vec::new();
    while let Some(reply) = inbound.next().await {
        let reply = reply.expect("stream result");
        if let Some(status) = reply.status {
            errors.push((reply.request_id, Code::from_i32(status.code), reply.request_done));
            continue;
        }
        let r: usize = reply.request_id[1..].parse().unwrap();
        let i = r * 20 + reply.index as usize;
        assert!(seen.insert(i), "sentence {i} twice");
        assert_eq!(reply.translation.unwrap().text, expected["teacher"][i]);
        done += usize::from(reply.request_done);
    }
    assert_eq!((seen.len(), done), (60, 3));
    assert_eq!(errors, [("bad".to_owned(), Code::NotFound, true)]);
    let models = client.list_models(ListModelsRequest {}).await.unwrap().into_inner();
    let teacher_stats = models.models.iter().find(|m| m.name == "teacher").unwrap().stats.unwrap();
    assert_eq!((teacher_stats.requests, teacher_stats.sentences), (24 + 3, teacher_sentences_all + 60));

    // Errors: unknown language, a sentence over the token limit.
    let mut bad = request("teacher", &sentences[..1]);
    bad.target_language = "de".into();
    let status = client.translate(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("`de`") && status.message().contains("en, fr"), "{status:?}");
    let long = vec![vec!["w1"; 300].join(" ")];
    let status = client.translate(request("teacher", &long)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("--max-source-tokens"), "{status:?}");

    // A beam-2 request: it completes, and the server keeps serving.
    let big: Vec<String> = (0..32).map(|i| sentences[i % sentences.len()].clone() + " w1 w2 w3").collect();
    let mut long_options = request("teacher", &big);
    long_options.options = Some(DecodingOptions { beam_size: Some(2), ..Default::default() });
    client.translate(long_options).await.expect("the big request completes");
    let reply = client.translate(request("student", &sentences[..3])).await.unwrap().into_inner();
    assert_eq!(reply.translations[0].text, expected["student"][0]);

    // Step-level batching: short requests sent one after another while a 64-sentence request
    // decodes join its batch and complete before it does (in static batching they would wait).
    let wave: Vec<String> = sentences.iter().filter(|s| !s.is_empty()).take(64).cloned().collect();
    let wave_request = request("teacher", &wave);
    let wave_task = {
        let mut client = client.clone();
        tokio::spawn(async move { client.translate(wave_request).await })
    };
    let mut shorts_before = 0;
    while !wave_task.is_finished() && shorts_before < 200 {
        let reply = client.translate(request("teacher", &sentences[..1])).await.unwrap().into_inner();
        if !wave_task.is_finished() {
            shorts_before += 1;
        }
        assert_eq!(reply.translations[0].text, expected["teacher"][0], "one word: `{}`", sentences[0]);
    }
    let wave_reply = wave_task.await.unwrap().unwrap().into_inner();
    let longest = wave_reply.translations.iter().map(|t| t.output_tokens).max().unwrap();
    assert!(longest >= 4, "the wave needs several steps: {longest}");
    assert!(shorts_before >= 1, "a short request completed while the wave was decoding");

    // A cancelled call: its sentences leave the batch (counted as `cancelled`).
    let cancelled = {
        let mut client = client.clone();
        // 256 long sentences in beam 4 (16 at a time in this server): most are still queued or
        // decoding when the call is cancelled.
        let long_wave: Vec<String> =
            wave.iter().cycle().take(256).map(|s| format!("{s} {}", ["w1 w2 w3"; 20].join(" "))).collect();
        let mut wave = request("teacher", &long_wave);
        wave.options = Some(DecodingOptions { beam_size: Some(4), ..Default::default() });
        tokio::spawn(async move { client.translate(wave).await })
    };
    // Cancelled once its sentences are queued (seen in the queue gauge), not after a fixed delay:
    // on a loaded machine a debug build may take longer than any delay to tokenize and submit
    // them, and a call cancelled before it is submitted leaves nothing to count. It decodes for
    // seconds, so it is still queued or decoding when the cancel arrives.
    let queued = first_nonzero(server.metrics, "xlmc_queue_depth", &[("model", "teacher")], 1000, 20).await;
    assert!(queued > 0, "the long request was queued");
    cancelled.abort();
    let abandoned = [("model", "teacher"), ("reason", "cancelled")];
    let abandoned = first_nonzero(server.metrics, "xlmc_sentences_abandoned_total", &abandoned, 100, 50).await;
    assert!(abandoned > 0, "the cancelled request's sentences left the batch");

    // /metrics counts what was sent (the stream's sentences, the big and follow-up requests too).
    let (code, body) = http_get(server.metrics, "/metrics");
    assert_eq!(code, 200);
    let metrics = Exposition::parse(&body);
    let value = |name: &str, labels: &[(&str, &str)]| metrics.value(name, labels).unwrap_or(0.0) as u64;
    let ok = |model: &str| value("xlmc_requests_total", &[("model", model), ("method", "Translate"), ("code", "Ok")]);
    assert!(ok("teacher") >= 3 * 8 + 2 + shorts_before, "24 client rounds, the big request, the wave and its shorts");
    assert_eq!(ok("student"), 12 + 1);
    assert_eq!(ok("teacher-torch"), 12);
    let non_empty = |range: std::ops::Range<usize>| sentences[range].iter().filter(|s| !s.is_empty()).count() as u64;
    let teacher_sentences = sent["teacher"].0 + non_empty(0..60) + big.len() as u64 + 64 + shorts_before;
    // The cancelled wave's finished sentences count too; the shorts after the wave are not in shorts_before.
    assert!(value("xlmc_sentences_total", &[("model", "teacher")]) >= teacher_sentences);
    assert_eq!(value("xlmc_sentences_total", &[("model", "student")]), sent["student"].0 + non_empty(0..3));
    assert!(value("xlmc_decode_steps_total", &[("model", "teacher")]) > 0);
    assert_eq!(
        value("xlmc_requests_total", &[("model", "teacher"), ("method", "Translate"), ("code", "NotFound")]),
        1,
        "the unknown language"
    );

    drop(server);

    // A deadline passing while the sentences wait: a server whose idle engines gather a batch for
    // 3 s answers a 300 ms deadline with DEADLINE_EXCEEDED, and drops the sentences (`deadline`).
    let slow =
        ServerProcess::start(&["--models", &path("models"), "--max-wait-us", "3000000", "--max-queue-sentences", "10"]);
    let mut client = TranslatorClient::connect(slow.grpc_url()).await.expect("connect");
    let mut hurried = tonic::Request::new(request("teacher", &sentences[..8]));
    hurried.set_timeout(std::time::Duration::from_millis(300));
    let status = client.translate(hurried).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    // The queue is bounded: more sentences than it holds are refused whole, naming the flag.
    let status = client.translate(request("student", &sentences[..12])).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("--max-queue-sentences"), "{status:?}");
    let labels = [("model", "teacher"), ("reason", "deadline")];
    let dropped = first_nonzero(slow.metrics, "xlmc_sentences_abandoned_total", &labels, 100, 50).await;
    assert_eq!(dropped, 7, "the 7 non-empty sentences left at their deadline");
    let (_, body) = http_get(slow.metrics, "/metrics");
    let labels = [("model", "teacher"), ("method", "Translate"), ("code", "DeadlineExceeded")];
    assert_eq!(Exposition::parse(&body).value("xlmc_requests_total", &labels), Some(1.0));
    drop(slow);

    // The load generator starts the server per batching mode and reports both on the same load.
    let out = std::process::Command::new(xlmc_tests::binary("loadgen"))
        .env_clear()
        .env("RUST_LOG", "warn")
        .args(["--models", &path("models"), "--input", &path("in.en"), "--concurrency", "4", "--requests", "40"])
        .args(["--duration", "60"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "loadgen: {table}{}", String::from_utf8_lossy(&out.stderr));
    for mode in ["continuous", "static"] {
        let row = table.lines().find(|l| l.starts_with(&format!("| {mode} |"))).unwrap_or_else(|| panic!("{table}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!((cells[2], cells[3]), ("40", "0"), "40 requests, no errors: {row}");
        let p50: f64 = cells[6].parse().unwrap();
        let p99: f64 = cells[8].parse().unwrap();
        assert!(p50 > 0.0 && p50 <= p99, "{row}");
    }

    // SIGTERM with a request in flight: the request completes, then the server exits 0.
    let server = ServerProcess::start(&["--models", &path("models")]);
    let mut client = TranslatorClient::connect(server.grpc_url()).await.expect("connect");
    let wave: Vec<String> = sentences.iter().take(64).cloned().collect();
    let in_flight = {
        let wave = request("teacher", &wave);
        tokio::spawn(async move { client.translate(wave).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let status = tokio::task::spawn_blocking(move || server.terminate()).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    let reply = in_flight.await.unwrap().expect("the in-flight request finished").into_inner();
    let texts: Vec<&str> = reply.translations.iter().map(|t| t.text.as_str()).collect();
    let wanted: Vec<&str> = expected["teacher"][..64].iter().map(String::as_str).collect();
    assert_eq!(texts, wanted);
}
