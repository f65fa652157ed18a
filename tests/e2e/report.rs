//! `exporter report`: teacher and students (model folders and a bundle) measured on a test set;
//! report.json has every field, its BLEU equals `exporter score` on `translate`'s output, and a
//! missing model is named while the rest of the report is still written.

use crate::train::{corpus_tokenizer_and_teacher_config, exporter};

#[test]
fn report_compares_teacher_and_students_and_names_what_it_could_not_measure() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    corpus_tokenizer_and_teacher_config(dir.path());
    exporter(&["train", "--config", &path("teacher.toml"), "--max-updates", "40"]);
    exporter(&["prune", "--teacher", &path("run/model"), "--keep", "1-1", "--out", &path("student")]);
    exporter(&["export", "--model", &path("student"), "--out", &path("student-int8"), "--precision", "int8"]);

    let models = format!("{},{},{},no-such-model", path("run/model"), path("student"), path("student-int8"));
    let text = exporter(&[
        "report",
        "--models",
        &models,
        "--models-dir",
        &path("models"),
        "--test",
        &path("corpus/test"),
        "--out",
        &path("report"),
        "--latency-sentences",
        "5",
        "--speed-sentences",
        "16",
        "--batch-sizes",
        "4,16",
        "--speed-rounds",
        "3",
    ]);
    assert!(text.contains("| run |") && text.contains("| student-int8 |"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path("report/report.json")).unwrap()).unwrap();
    let models = assert_report_fields(&report, 3);
    assert_eq!(report["teacher"], "run");
    for m in models {
        assert_eq!(m["throughput"].as_array().unwrap().len(), 2);
        assert_eq!(m["rounds"].as_array().unwrap().len(), 3, "{m}");
        assert_eq!(m["latencies_ms"].as_array().unwrap().len(), 15, "five per round, pooled");
    }
    assert_speedups_are_paired_medians(&report, 4); // no batch 32: the first batch size
    assert_eq!((models[1]["backend"].as_str(), models[2]["backend"].as_str()), (Some("libtorch"), Some("onnxruntime")));
    assert_eq!(models[2]["precision"], "int8");
    assert_eq!(report["ratios"][0]["bleu_kept_percent"], 100.0);
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0]["error"].as_str().unwrap().contains("no-such-model"), "{errors:?}");

    // The teacher's BLEU is what `score` gives on `translate`'s output.
    exporter(&[
        "translate",
        "--model",
        &path("run/model"),
        "--input",
        &path("corpus/test.en"),
        "--output",
        &path("t.fr"),
    ]);
    let score = exporter(&["score", "--ref", &path("corpus/test.fr"), "--hyp", &path("t.fr"), "--format", "json"]);
    let score: serde_json::Value = serde_json::from_str(score.trim()).unwrap();
    let (reported, scored) = (models[0]["bleu"].as_f64().unwrap(), score["bleu"]["score"].as_f64().unwrap());
    assert!((reported - scored).abs() < 0.01, "report {reported} vs score {scored}");
    for plot in ["pareto.svg", "latency.svg", "report.md", "curves-run.svg"] {
        assert!(std::fs::metadata(path(&format!("report/{plot}"))).unwrap().len() > 100, "{plot}");
    }
}

/// Each speed-up is the median of the per-round ratios (teacher's round r against the model's
/// round r) and lies within its reported range.
fn assert_speedups_are_paired_medians(report: &serde_json::Value, batch: usize) {
    let rounds = |m: &serde_json::Value| -> Vec<(f64, f64)> {
        let at = |r: &serde_json::Value| {
            let t = r["throughput"].as_array().unwrap().iter().find(|t| t["batch"] == batch).unwrap();
            t["tokens_per_second"].as_f64().unwrap()
        };
        m["rounds"].as_array().unwrap().iter().map(|r| (r["latency_p50_ms"].as_f64().unwrap(), at(r))).collect()
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let models = report["models"].as_array().unwrap();
    let teacher = rounds(&models[0]);
    for (m, ratio) in models.iter().zip(report["ratios"].as_array().unwrap()) {
        let student = rounds(m);
        let batch1 = median(teacher.iter().zip(&student).map(|(t, s)| t.0 / s.0).collect());
        let throughput = median(teacher.iter().zip(&student).map(|(t, s)| s.1 / t.1).collect());
        for (key, expected) in [("speedup_batch1", batch1), ("speedup_throughput", throughput)] {
            let value = ratio[key].as_f64().unwrap();
            assert!((value - expected).abs() < 1e-9, "{key}: {value} vs {expected} ({ratio})");
            let range = ratio[format!("{key}_range")].as_array().unwrap();
            let (low, high) = (range[0].as_f64().unwrap(), range[1].as_f64().unwrap());
            assert!(low <= value && value <= high, "{key}: {value} outside {low}–{high}");
        }
    }
}

/// Asserts that report.json has every field, for `n` measured models; returns them.
pub(crate) fn assert_report_fields(report: &serde_json::Value, n: usize) -> &Vec<serde_json::Value> {
    for key in ["test", "device", "threads", "cores", "teacher", "models", "ratios", "errors"] {
        assert!(report.get(key).is_some(), "report.json lacks `{key}`");
    }
    let models = report["models"].as_array().unwrap();
    assert_eq!(models.len(), n, "{report}");
    for m in models {
        for key in [
            "name",
            "path",
            "backend",
            "architecture",
            "precision",
            "parameters",
            "bytes",
            "sentences",
            "bleu",
            "chrf",
            "bleu_signature",
            "chrf_signature",
            "latency_p50_ms",
            "latency_p95_ms",
            "latency_p99_ms",
            "throughput",
            "peak_rss_mib",
        ] {
            assert!(m.get(key).is_some(), "model {} lacks `{key}`", m["name"]);
        }
        assert!(m["peak_rss_mib"].as_f64().unwrap() > 10.0);
        let (p50, p99) = (m["latency_p50_ms"].as_f64().unwrap(), m["latency_p99_ms"].as_f64().unwrap());
        assert!(p50 > 0.0 && p50 <= p99, "{m}");
    }
    for ratio in report["ratios"].as_array().unwrap() {
        for key in ["model", "bleu_kept_percent", "speedup_batch1", "speedup_throughput", "size_ratio"] {
            assert!(ratio.get(key).is_some(), "ratio {ratio} lacks `{key}`");
        }
    }
    models
}
