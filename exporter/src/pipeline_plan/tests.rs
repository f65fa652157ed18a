use clap::Parser;

use super::*;
use crate::{cli::Cli, pipeline::PipelineConfig};

const CONFIGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs");

fn settings(name: &str) -> PipelineConfig {
    PipelineConfig::read(&Path::new(CONFIGS).join(name)).unwrap()
}

fn table(settings: &PipelineConfig, teacher: Option<&Path>) -> Plan {
    plan(&PlanInputs {
        settings,
        config_dir: Path::new(CONFIGS),
        corpus: Path::new("data/my corpus"),
        out: Path::new("runs/x"),
        device: "cpu",
        languages: ("en", "fr"),
        teacher,
    })
    .unwrap()
}

/// The printed line, split as a shell would and parsed by the CLI.
fn parse_printed(stage: &Stage) -> Command {
    let line = stage.command.to_string();
    let words = shlex::split(&line).unwrap_or_else(|| panic!("`{line}` does not split"));
    Cli::try_parse_from(words).unwrap_or_else(|e| panic!("`{line}`: {e}")).command
}

#[test]
fn every_printed_stage_line_parses_back_into_the_job_the_stage_runs() {
    for (config, teacher) in [
        ("pipeline-tiny.toml", None),
        ("pipeline-small.toml", Some(Path::new("models/en-fr-teacher"))),
        ("pipeline-base.toml", None),
    ] {
        let plan = table(&settings(config), teacher);
        let headers = plan.stages.iter().filter(|s| s.header.is_some()).count();
        assert_eq!(headers, table_headers(teacher.is_some()), "{config}");
        for stage in &plan.stages {
            let printed = parse_printed(stage);
            assert_eq!(format!("{printed:?}"), format!("{:?}", stage.command.parse().unwrap()), "{}", stage.name);
            // What the job reads is what the stage writes and checks.
            match printed {
                Command::Distill(distill) if distill.action.is_none() => {
                    let config = stage.config.as_ref().expect("a distillation stage writes its config");
                    assert_eq!(distill.train.config.as_ref(), Some(&config.path), "{}", stage.name);
                    let written: DistillConfig = toml::from_str(&config.text).unwrap();
                    assert_eq!(written.out, stage.out, "{}", stage.name);
                }
                Command::Train(train) => {
                    let config = stage.config.as_ref().expect("the teacher stage writes its config");
                    assert_eq!(train.config, config.path);
                    let written: TeacherConfig = toml::from_str(&config.text).unwrap();
                    assert_eq!(written.out, stage.out);
                }
                Command::Export(export) => assert_eq!(export.out, stage.out),
                Command::Report(report) => {
                    assert_eq!(report.out, stage.out);
                    let measure = &report.measure;
                    assert_eq!((measure.source_lang.as_str(), measure.target_lang.as_str()), ("en", "fr"));
                    assert_eq!(format!("{:?}", measure.device), "Cpu");
                    assert_eq!(report.models, plan.models);
                    // `sentences = 0` (base) means the whole split: no `--sentences 0`.
                    let expected = settings(config).report.sentences;
                    assert_eq!(measure.sentences, (expected > 0).then_some(expected), "{config}");
                }
                _ => {}
            }
        }
        let names: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
        let trained: &[&str] = if teacher.is_some() { &[] } else { &["tokenizer", "teacher"] };
        let keep = settings(config).keep;
        let expected: Vec<String> = trained
            .iter()
            .map(|s| s.to_string())
            .chain([
                "prune".into(),
                format!("student-{keep}-kd"),
                "seqkd-corpus".into(),
                format!("student-{keep}-seqkd"),
                "student-bigru-kd".into(),
                "bundle teacher".into(),
                format!("bundle student-{keep}-kd"),
                format!("bundle student-{keep}-seqkd"),
                "bundle student-bigru-kd".into(),
                "report".into(),
            ])
            .collect();
        assert_eq!(names, expected, "{config}");
    }
}

#[test]
fn a_setting_changes_the_keys_of_the_stages_that_read_it_and_no_others() {
    let fp32 = settings("pipeline-tiny.toml");
    let mut int8 = settings("pipeline-tiny.toml");
    int8.precision = crate::cli::Precision::Int8;
    int8.student_minutes = Some(3.0); // a time budget is not part of any key
    let (a, b) = (table(&fp32, None), table(&int8, None));
    for (x, y) in a.stages.iter().zip(&b.stages) {
        let bundle = x.name.starts_with("bundle ");
        assert_eq!(x.key == y.key, !bundle, "{}: {:?} vs {:?}", x.name, x.key, y.key);
        assert_eq!(x.command == y.command, !bundle, "{}", x.name);
    }
    // The report's key holds the bundles' fingerprints, taken when it runs: an int8 bundle
    // changes it through them.
    let report = a.stages.last().unwrap();
    let KeyPart::Fingerprints(paths) = &report.key[0] else { panic!("{:?}", report.key) };
    assert_eq!(paths.len(), 4);
    assert!(paths.iter().all(|p| p.ends_with(xlmc_bundle::MANIFEST_FILE)));
}

#[test]
fn keys_take_fingerprints_when_the_stage_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input");
    let stage = Stage {
        header: None,
        name: "s".into(),
        out: dir.path().join("out"),
        key: vec![KeyPart::Text("t".into()), KeyPart::Fingerprint(file.clone())],
        output: Output::Report,
        config: None,
        command: StageCommand::new(&["report"]),
    };
    let missing = stage.key();
    std::fs::write(&file, "1").unwrap();
    let one = stage.key();
    std::fs::write(&file, "2").unwrap();
    assert!(missing != one && one != stage.key());
}
