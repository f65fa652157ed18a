//! `exporter pipeline --preset tiny` end to end on a generated corpus (the CI smoke test of the
//! README's demo): every stage runs, report.json has every field, the server's gRPC outputs are
//! what `translate` gives, a second run skips every built stage, and a changed setting rebuilds
//! only what depends on it.

use std::process::Command;

use xlmc_tests::binary;

use crate::{
    report::assert_report_fields,
    train::{corpus_tokenizer_and_teacher_config, exporter},
};

const TINY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/pipeline-tiny.toml");
const STUDENTS: [&str; 3] = ["student-2-1-kd", "student-2-1-seqkd", "student-bigru-kd"];

fn lines_with(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn tiny_pipeline_runs_every_stage_then_skips_what_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    corpus_tokenizer_and_teacher_config(dir.path());
    let pipeline = |config: &str| {
        exporter(&[
            "pipeline",
            "--preset",
            "tiny",
            "--config",
            config,
            "--corpus",
            &path("corpus"),
            "--out",
            &path("run"),
        ])
    };

    let first = pipeline(TINY);
    for n in 1..=12 {
        assert!(first.contains(&format!("[{n}/12] ")), "stage {n} missing:\n{first}");
    }
    assert_eq!(lines_with(&first, "skipped"), 0, "{first}");
    // Each stage ran the very line it printed (parsed by the CLI's own parser): the report's line
    // carries the languages and the device, and no `--sentences 0`.
    let report_line = first.lines().find(|l| l.trim_start().starts_with("exporter report ")).expect("report line");
    for flag in ["--source-lang en", "--target-lang fr", "--device cpu", "--test "] {
        assert!(report_line.contains(flag), "{flag} not in {report_line}");
    }
    assert!(!report_line.contains("--sentences 0"), "{report_line}");
    for name in STUDENTS {
        assert!(std::fs::metadata(path(&format!("run/configs/{name}.toml"))).is_ok(), "{name}'s config");
    }

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path("run/report/report.json")).unwrap()).unwrap();
    let models = assert_report_fields(&report, 4);
    assert_eq!(report["teacher"], "teacher");
    assert_eq!(report["errors"].as_array().unwrap().len(), 0, "{report}");
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["teacher", STUDENTS[0], STUDENTS[1], STUDENTS[2]]);
    assert!(models.iter().all(|m| m["backend"] == "onnxruntime"), "{report}");
    assert_eq!(models[3]["architecture"], "bigru");
    for plot in ["pareto.svg", "latency.svg", "report.md", "curves-teacher.svg", "curves-student-bigru-kd.svg"] {
        assert!(std::fs::metadata(path(&format!("run/report/{plot}"))).unwrap().len() > 100, "{plot}");
    }

    // The demo's gRPC outputs are what the bundles give through `translate`, printed beside
    // their source (3 test sentences, models in the report's order).
    let sources: Vec<String> =
        std::fs::read_to_string(path("corpus/test.en")).unwrap().lines().take(3).map(str::to_owned).collect();
    std::fs::write(path("demo.en"), sources.join("\n") + "\n").unwrap();
    let width = STUDENTS.iter().map(|s| s.len()).max().unwrap();
    for name in ["teacher", STUDENTS[0], STUDENTS[2]] {
        let out = path(&format!("{name}.fr"));
        exporter(&[
            "translate",
            "--bundle",
            &path(&format!("run/bundles/{name}")),
            "--input",
            &path("demo.en"),
            "--output",
            &out,
        ]);
        for (source, translation) in sources.iter().zip(std::fs::read_to_string(&out).unwrap().lines()) {
            let source_line = format!("      {:<width$}  {source}", "source");
            let line = format!("      {name:<width$}  {translation}");
            let at = first.find(&source_line).unwrap_or_else(|| panic!("no `{source_line}` in:\n{first}"));
            assert!(first[at..].contains(&line), "no `{line}` after `{source_line}`:\n{first}");
        }
    }

    // A second run builds nothing: every stage with an output is skipped.
    let second = pipeline(TINY);
    let built = 3 + STUDENTS.len() + 1 + 4 + 1; // tokenizer, teacher, prune, students, seq-KD data, bundles, report
    assert_eq!(lines_with(&second, "built from the same inputs and valid: skipped"), built, "{second}");
    assert!(second.contains("[12/12] serve"), "{second}");

    // int8 bundles: only the exports and the report are rebuilt, not the trained models.
    let int8 = std::fs::read_to_string(TINY)
        .unwrap()
        .replace("precision = \"fp32\"", "precision = \"int8\"")
        .replace("teacher = \"", &format!("teacher = \"{}/../configs/", env!("CARGO_MANIFEST_DIR")))
        .replace("student = \"", &format!("student = \"{}/../configs/", env!("CARGO_MANIFEST_DIR")));
    std::fs::write(path("pipeline-int8.toml"), int8).unwrap();
    let third = pipeline(&path("pipeline-int8.toml"));
    assert_eq!(lines_with(&third, "built from the same inputs and valid: skipped"), built - 5, "{third}");
    assert_eq!(lines_with(&third, "made from other inputs or settings: rebuilding it"), 5, "{third}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path("run/report/report.json")).unwrap()).unwrap();
    assert!(assert_report_fields(&report, 4).iter().all(|m| m["precision"] == "int8"), "{report}");

    // A config with a trained `default_teacher` uses it (its own tokenizer, no training); with
    // --train-teacher the teacher is trained here instead (already built: skipped).
    let with_teacher = std::fs::read_to_string(path("pipeline-int8.toml"))
        .unwrap()
        .replace("precision = \"int8\"", "precision = \"fp32\"")
        .replace(
            "corpus = \"data/en-fr\"",
            &format!("corpus = {:?}\ndefault_teacher = {:?}", path("corpus"), path("run/teacher/model")),
        );
    std::fs::write(path("pipeline-default.toml"), with_teacher).unwrap();
    let (config, out) = (path("pipeline-default.toml"), path("run"));
    let run = |extra: &[&str]| {
        let mut args = vec!["pipeline", "--config", config.as_str(), "--out", out.as_str()];
        args.extend_from_slice(extra);
        exporter(&args)
    };
    let fourth = run(&[]);
    assert!(fourth.contains("trained already, with its own tokenizer: default_teacher"), "{fourth}");
    assert!(!fourth.contains("exporter train --config"), "no teacher training:\n{fourth}");
    assert!(fourth.contains("[3/11] teacher") && fourth.contains("[11/11] serve"), "{fourth}");
    let fifth = run(&["--train-teacher"]);
    assert!(fifth.contains("exporter train --config") && !fifth.contains("trained already"), "{fifth}");
}

#[test]
fn pipeline_names_a_corpus_that_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-corpus");
    let out = Command::new(binary("exporter"))
        .env_clear()
        .args(["pipeline", "--preset", "tiny", "--config", TINY, "--corpus", missing.to_str().unwrap()])
        .args(["--out", dir.path().join("run").to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains(&format!("--corpus {}", missing.display())) && text.contains("exporter data import"),
        "{text}"
    );
}
