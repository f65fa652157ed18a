//! The LibreTranslate-compatible HTTP API of a real `server --http-addr`: a real LibreTranslate
//! client (`libretranslatepy`, the oracle) gets what `exporter translate --bundle` writes; JSON
//! lists, HTML and `source=auto` over raw HTTP; every error LibreTranslate-shaped with its status;
//! the HTTP metrics beside the gRPC ones.

use serde_json::{Value, json};
use xlmc_tests::{Exposition, ServerProcess, http_get, http_request, oracle_python};

use crate::train::{corpus_tokenizer_and_teacher_config, exporter};

const TOKEN: &str = "s3cret";

fn post(server: &ServerProcess, path: &str, content_type: &str, body: &str) -> (u16, Value) {
    let headers = [("Content-Type", content_type)];
    let (status, body) = http_request(server.http(), "POST", path, &headers, body.as_bytes());
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}")))
}

fn post_json(server: &ServerProcess, body: Value) -> (u16, Value) {
    post(server, "/translate", "application/json", &body.to_string())
}

#[test]
fn libretranslate_clients_get_what_the_exporter_translates() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    corpus_tokenizer_and_teacher_config(dir.path());
    exporter(&["train", "--config", &path("teacher.toml"), "--max-updates", "60"]);
    exporter(&["export", "--model", &path("run/model"), "--out", &path("models/teacher")]);
    let sentences = ["w1 w2 w3", "w0", "w5 w4 w3 w2 w1", "w2 w2"];
    std::fs::write(path("in.en"), sentences.join("\n") + "\n").unwrap();
    exporter(&[
        "translate",
        "--bundle",
        &path("models/teacher"),
        "--input",
        &path("in.en"),
        "--output",
        &path("out.fr"),
    ]);
    let expected: Vec<String> = std::fs::read_to_string(path("out.fr")).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(expected.len(), sentences.len());

    let server = ServerProcess::start(&[
        "--models",
        &path("models"),
        "--http-addr",
        "127.0.0.1:0",
        "--auth-token",
        TOKEN,
        "--max-sentences-per-request",
        "8",
        "--max-message-bytes",
        "4096",
        "--max-sentence-bytes",
        "200",
    ]);
    let url = format!("http://{}/", server.http());

    // The oracle: LibreTranslate's own Python client, form-encoded bodies and api_key.
    let script = r#"
import json, sys, urllib.error
from libretranslatepy import LibreTranslateAPI
url, key, sentences = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
lt = LibreTranslateAPI(url, api_key=key)
out = {"translations": [lt.translate(s, "en", "fr") for s in sentences], "languages": lt.languages()}
try:
    LibreTranslateAPI(url, api_key="wrong").translate("w1", "en", "fr")
except urllib.error.HTTPError as e:
    out["wrong_key"] = [e.code, json.loads(e.read())]
print(json.dumps(out))
"#;
    let run = oracle_python().args(["-c", script, &url, TOKEN, &json!(sentences).to_string()]).output().unwrap();
    assert!(run.status.success(), "libretranslatepy failed: {}", String::from_utf8_lossy(&run.stderr));
    let oracle: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(oracle["translations"], json!(expected), "libretranslatepy vs exporter translate --bundle");
    assert_eq!(
        oracle["languages"],
        json!([{ "code": "en", "name": "English", "targets": ["fr"] }, { "code": "fr", "name": "French", "targets": [] }])
    );
    assert_eq!(oracle["wrong_key"], json!([403, { "error": "Invalid API key" }]));

    // A JSON list with the bearer header, multi-line text, and `source: auto`.
    let headers = [("Content-Type", "application/json"), ("Authorization", "Bearer s3cret")];
    let body = json!({ "q": [sentences[0], format!("{}\n\n  {}", sentences[1], sentences[2])], "source": "auto", "target": "fr" });
    let (status, reply) = http_request(server.http(), "POST", "/translate", &headers, body.to_string().as_bytes());
    assert_eq!(status, 200, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["translatedText"], json!([expected[0], format!("{}\n\n  {}", expected[1], expected[2])]));
    assert_eq!(reply["detectedLanguage"][1], json!({ "confidence": 100.0, "language": "en" }));

    // HTML (what Mastodon sends): tags kept, text between them translated.
    let html = format!("<p>{}</p><p><b>{}</b></p>", sentences[0], sentences[3]);
    let (status, reply) =
        post_json(&server, json!({ "q": html, "source": "en", "target": "fr", "format": "html", "api_key": TOKEN }));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["translatedText"], json!(format!("<p>{}</p><p><b>{}</b></p>", expected[0], expected[3])));

    // Bad input: LibreTranslate-shaped errors with precise statuses; the server keeps serving.
    let with_key = |mut body: Value| {
        body["api_key"] = json!(TOKEN);
        body
    };
    let cases: Vec<(u16, (u16, Value), &str)> = vec![
        (400, post(&server, "/translate", "application/json", "{\"q\": \"w1\", "), "malformed JSON body"),
        (
            400,
            post_json(&server, with_key(json!({ "q": "w1", "source": "en", "target": "de" }))),
            "en→de is not supported; this server translates en→fr",
        ),
        (400, post_json(&server, with_key(json!({ "q": "w1", "source": "en" }))), "missing target parameter"),
        (
            400,
            post_json(&server, with_key(json!({ "q": vec!["w1"; 9], "source": "en", "target": "fr" }))),
            "--max-sentences-per-request",
        ),
        (
            400,
            post_json(&server, with_key(json!({ "q": "w1 ".repeat(100), "source": "en", "target": "fr" }))),
            "--max-sentence-bytes",
        ),
        (403, post_json(&server, json!({ "q": "w1", "source": "en", "target": "fr" })), "Invalid API key"),
        (
            413,
            post_json(&server, with_key(json!({ "q": "w".repeat(5000), "source": "en", "target": "fr" }))),
            "--max-message-bytes",
        ),
        (404, post(&server, "/translate/v2", "application/json", "{}"), "no endpoint POST /translate/v2"),
        (501, post(&server, "/detect", "application/x-www-form-urlencoded", "q=w1"), "no language detection"),
    ];
    for (expected_status, (status, reply), message) in cases {
        assert_eq!(status, expected_status, "{reply}");
        let error = reply["error"].as_str().unwrap_or_else(|| panic!("no error field: {reply}"));
        assert!(error.contains(message), "{error:?} lacks {message:?}");
    }
    let (status, reply) = post_json(&server, with_key(json!({ "q": sentences[0], "source": "en", "target": "fr" })));
    assert_eq!((status, reply), (200, json!({ "translatedText": expected[0] })));

    let (status, page) = http_get(server.metrics, "/metrics");
    assert_eq!(status, 200);
    let metrics = Exposition::parse(&page);
    let count = |route: &str, code: &str| {
        metrics.value("xlmc_http_requests_total", &[("route", route), ("status", code)]).unwrap_or(0.0)
    };
    // 4 oracle sentences + list + HTML + the last one; 403s: the oracle's wrong key and one here;
    // 15 in all with the five 400s and the 413.
    assert_eq!(count("/translate", "200"), 7.0);
    assert_eq!(count("/translate", "403"), 2.0);
    assert_eq!(count("/translate", "400"), 5.0);
    assert_eq!(count("/languages", "200"), 1.0);
    assert_eq!(count("other", "404"), 1.0);
    assert_eq!(metrics.value("xlmc_http_request_duration_seconds_count", &[("route", "/translate")]), Some(15.0));
    assert!(server.terminate().success());
}
