//! `exporter train` and `exporter translate` wired together on a generated corpus: a short run,
//! a resumed run, outputs on disk, translations line for line.

use std::process::Command;

use xlmc_tests::{Rng, binary};

pub(crate) fn exporter(args: &[&str]) -> String {
    let out = Command::new(binary("exporter")).env_clear().args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "exporter {args:?} failed:\n{text}");
    text
}

/// Runs `exporter ARGS`, asserts that it fails, returns its stderr.
pub(crate) fn exporter_fails(args: &[&str]) -> String {
    let out = Command::new(binary("exporter")).env_clear().args(args).output().unwrap();
    assert!(!out.status.success(), "exporter {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A generated word-for-word corpus (`corpus`), its tokenizer (`tok`) and a tiny-teacher config
/// (`teacher.toml`, 20 updates into `run`) in `dir`.
pub(crate) fn corpus_tokenizer_and_teacher_config(dir: &std::path::Path) {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let mut rng = Rng::new(3);
    let words = ["un", "deux", "trois", "quatre", "cinq", "six"];
    let (mut en, mut fr) = (String::new(), String::new());
    for _ in 0..600 {
        let n = 1 + rng.below(5);
        let idx: Vec<usize> = (0..n).map(|_| rng.below(words.len())).collect();
        en.push_str(&idx.iter().map(|&i| format!("w{i}")).collect::<Vec<_>>().join(" "));
        fr.push_str(&idx.iter().map(|&i| words[i]).collect::<Vec<_>>().join(" "));
        en.push('\n');
        fr.push('\n');
    }
    std::fs::write(path("c.en"), en).unwrap();
    std::fs::write(path("c.fr"), fr).unwrap();
    exporter(&["data", "import", "--source", &path("c.en"), "--target", &path("c.fr"), "--out", &path("corpus")]);
    exporter(&["tokenizer", "train", "--corpus", &path("corpus"), "--vocab-size", "300", "--out", &path("tok")]);
    let config = format!(
        "corpus = {:?}\ntokenizer = {:?}\nout = {:?}\npreset = \"tiny\"\n[train]\nmax_tokens = 300\nlr = 0.002\nwarmup_updates = 10\nmax_updates = 20\neval_every = 10\ncheckpoint_every = 10\n",
        path("corpus"),
        path("tok"),
        path("run")
    );
    std::fs::write(path("teacher.toml"), config).unwrap();
}

/// [`corpus_tokenizer_and_teacher_config`], the teacher trained for `updates`, its 2-1 student
/// (`student`), and both exported as bundles `models/teacher` and `models/student`.
pub(crate) fn teacher_and_student_bundles(dir: &std::path::Path, updates: u32) {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    corpus_tokenizer_and_teacher_config(dir);
    exporter(&["train", "--config", &path("teacher.toml"), "--max-updates", &updates.to_string()]);
    exporter(&["prune", "--teacher", &path("run/model"), "--keep", "2-1", "--out", &path("student")]);
    for (model, name) in [("run/model", "teacher"), ("student", "student")] {
        exporter(&["export", "--model", &path(model), "--out", &path(&format!("models/{name}"))]);
    }
}

#[test]
fn train_resume_and_translate_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    corpus_tokenizer_and_teacher_config(dir.path());

    let text = exporter(&["train", "--config", &path("teacher.toml")]);
    assert!(text.contains("done: 20 updates"), "{text}");
    let text = exporter(&["train", "--config", &path("teacher.toml"), "--max-updates", "30"]);
    assert!(text.contains("done: 30 updates"), "{text}");
    let log = std::fs::read_to_string(dir.path().join("run/train_log.jsonl")).unwrap();
    let updates: Vec<i64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["update"].as_i64().unwrap())
        .collect();
    assert_eq!(updates, (1..=30).collect::<Vec<_>>(), "resumed at 21, nothing repeated");
    let svg = std::fs::read_to_string(dir.path().join("run/curves.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"), "{svg}");

    std::fs::write(path("in.en"), "w1 w2\n\nw3 w4 w5\n").unwrap();
    exporter(&[
        "translate",
        "--model",
        &path("run/model"),
        "--input",
        &path("in.en"),
        "--output",
        &path("out.fr"),
        "--beam",
        "2",
    ]);
    let out = std::fs::read_to_string(path("out.fr")).unwrap();
    let lines: Vec<&str> = out.split('\n').collect();
    assert_eq!(lines.len(), 4, "three lines and a final newline: {out:?}");
    assert_eq!(lines[1], "", "an empty input line stays empty");

    // A run started from the model's weights: a fresh optimizer, the schedule going on from
    // its 30 updates, and a training record adding both runs up.
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/model/training.json")).unwrap()).unwrap();
    assert_eq!(record["updates"], 30, "{record}");
    let continued = std::fs::read_to_string(path("teacher.toml")).unwrap().replace("/run\"", "/continued\"");
    std::fs::write(path("continued.toml"), &continued).unwrap();
    // From the shipped form (fp16 shards): the record travels with the weights.
    exporter(&["convert", "--model", &path("run/model"), "--out", &path("run-fp16"), "--half", "--shard-mib", "0.02"]);
    let text = exporter(&["train", "--config", &path("continued.toml"), "--init-from", &path("run-fp16")]);
    assert!(text.contains("(30 updates)") && text.contains("done: 20 updates"), "{text}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("continued/model/training.json")).unwrap())
            .unwrap();
    assert_eq!(record["updates"], 50, "{record}");
    assert_eq!(record["runs"].as_array().unwrap().len(), 2, "{record}");
    let first_lr = |run: &str| -> f64 {
        let log = std::fs::read_to_string(dir.path().join(run).join("train_log.jsonl")).unwrap();
        let line: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
        line["lr"].as_f64().unwrap()
    };
    // lr 0.002, warm-up 10: update 31 of the schedule is 0.002·√(10/31); the ramp's first step a
    // hundredth of that.
    let expected = 0.002 * (10.0f64 / 31.0).sqrt() / 100.0;
    assert!((first_lr("continued") - expected).abs() < 1e-12, "{} vs {expected}", first_lr("continued"));
    // The mean of the two runs' weights: the most trained one's record, what was averaged, and
    // a model that translates.
    let text = exporter(&[
        "average",
        "--model",
        &path("run/model"),
        "--model",
        &path("continued/model"),
        "--out",
        &path("mean"),
    ]);
    assert!(text.contains("the mean of 2 models"), "{text}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("mean/training.json")).unwrap()).unwrap();
    assert_eq!(record["updates"], 50, "{record}");
    assert_eq!(record["averaged_from"].as_array().unwrap().len(), 2, "{record}");
    exporter(&["translate", "--model", &path("mean"), "--input", &path("in.en"), "--output", &path("mean.fr")]);
    let err = exporter_fails(&["average", "--model", &path("run/model"), "--out", &path("mean-of-one")]);
    assert!(err.contains("--model: give two or more"), "{err}");
    assert_eq!(std::fs::read_to_string(path("mean.fr")).unwrap().lines().count(), 3);
    // Another shape: refused, naming the parameter and both values, and nothing written.
    let wider = continued
        .replace("/continued\"", "/wider\"")
        .replace("preset = \"tiny\"", "preset = \"tiny\"\n[model]\nemb_dim = 64");
    std::fs::write(path("wider.toml"), wider).unwrap();
    let err = exporter_fails(&["train", "--config", &path("wider.toml"), "--init-from", &path("run/model")]);
    assert!(err.contains("emb_dim: 32 there, 64 here") && err.contains(", 32] there, ["), "{err}");
    assert!(!dir.path().join("wider").exists(), "nothing written");

    // A time budget stops after the update in progress, with a checkpoint to go on from.
    let text = exporter(&["train", "--config", &path("teacher.toml"), "--max-updates", "40", "--max-minutes", "0"]);
    assert!(text.contains("done: 31 updates"), "{text}");

    // Prune to one decoder layer, and ship as fp16 shards: both still load and translate.
    let text = exporter(&["prune", "--teacher", &path("run/model"), "--keep", "2-1", "--out", &path("student")]);
    assert!(text.contains("decoder [0]") && text.contains("student 2-1 layers"), "{text}");
    let text =
        exporter(&["convert", "--model", &path("student"), "--out", &path("shipped"), "--half", "--shard-mib", "0.02"]);
    assert!(text.contains("fp16"), "{text}");
    let shards = std::fs::read_dir(path("shipped"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("model-"))
        .count();
    assert!(shards >= 2, "split into shards of ≤ 0.02 MiB: {shards}");
    for model in ["student", "shipped"] {
        let output = path(&format!("{model}.fr"));
        exporter(&["translate", "--model", &path(model), "--input", &path("in.en"), "--output", &output]);
        assert_eq!(std::fs::read_to_string(&output).unwrap().split('\n').count(), 4, "{model}");
    }
    // Distil the pruned student from the teacher, online, and the --no-kd ablation.
    let distill = format!(
        "corpus = {:?}\nout = {:?}\ndev_sentences = 20\n[kd]\ntemperature = 2.0\nalpha = 0.7\n[train]\nmax_tokens = 300\nlr = 0.002\nwarmup_updates = 5\nmax_updates = 8\neval_every = 8\ncheckpoint_every = 4\n",
        path("corpus"),
        path("kd")
    );
    std::fs::write(path("distill.toml"), distill).unwrap();
    let text = exporter(&[
        "distill",
        "--teacher",
        &path("run/model"),
        "--student",
        &path("student"),
        "--config",
        &path("distill.toml"),
    ]);
    assert!(text.contains("α = 0.7") && text.contains("done: 8 updates"), "{text}");
    let record = std::fs::read_to_string(path("kd/distill.json")).unwrap();
    assert!(record.contains("\"online\"") && record.contains("0.7"), "{record}");
    std::fs::write(
        path("nokd.toml"),
        std::fs::read_to_string(path("distill.toml")).unwrap().replace("/kd\"", "/nokd\""),
    )
    .unwrap();
    let text = exporter(&[
        "distill",
        "--teacher",
        &path("run/model"),
        "--student",
        &path("student"),
        "--config",
        &path("nokd.toml"),
        "--no-kd",
    ]);
    assert!(text.contains("--no-kd") && text.contains("done: 8 updates"), "{text}");
    exporter(&["translate", "--model", &path("kd/model"), "--input", &path("in.en"), "--output", &path("kd.fr")]);

    // Offline KD: the teacher's top-5 cached in shards of 100 pairs; a corrupted shard is found
    // by its checksum and rebuilt (only it) before training.
    let offline = std::fs::read_to_string(path("distill.toml"))
        .unwrap()
        .replace("/kd\"", "/offline\"")
        .replace("dev_sentences = 20", "dev_sentences = 20\nmode = \"offline\"\ntop_k = 5\ncache_shard_pairs = 100");
    std::fs::write(path("offline.toml"), offline).unwrap();
    let text = exporter(&["distill", "cache", "--teacher", &path("run/model"), "--config", &path("offline.toml")]);
    assert!(text.contains("top-5") && text.contains("shards (") && !text.contains("(0 built now"), "{text}");
    let shard = dir.path().join("offline/teacher-cache/shard-00001.bin");
    let mut bytes = std::fs::read(&shard).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&shard, bytes).unwrap();
    let text = exporter(&[
        "distill",
        "--teacher",
        &path("run/model"),
        "--student",
        &path("student"),
        "--config",
        &path("offline.toml"),
    ]);
    assert!(
        text.contains("(1 built now") && text.contains("KD: offline") && text.contains("done: 8 updates"),
        "{text}"
    );
    let record = std::fs::read_to_string(path("offline/distill.json")).unwrap();
    assert!(record.contains("\"offline\"") && record.contains("\"top_k\": 5"), "{record}");

    // The same cache built by three processes, one part each, then merged: byte for byte the
    // cache one process built. A merge missing a part names it and writes nothing.
    let sharded = std::fs::read_to_string(path("offline.toml"))
        .unwrap()
        .replace("dev_sentences = 20", &format!("dev_sentences = 20\ncache = {:?}", path("sharded-cache")));
    std::fs::write(path("sharded.toml"), sharded).unwrap();
    let (teacher, sharded_config) = (path("run/model"), path("sharded.toml"));
    let cache_command = |extra: &[&str]| {
        let mut args = vec!["distill", "cache", "--teacher", &teacher, "--config", &sharded_config];
        args.extend_from_slice(extra);
        exporter(&args)
    };
    for part in ["0/3", "1/3", "2/3"] {
        let text = cache_command(&["--shard", part]);
        assert!(text.contains(&format!("part {part}")), "{text}");
    }
    let parts: Vec<String> = (0..3).map(|i| path(&format!("sharded-cache/parts/{i}-of-3"))).collect();
    let (teacher, config) = (path("run/model"), path("sharded.toml"));
    let merge =
        ["distill", "cache", "--teacher", &teacher, "--config", &config, "--merge", "--parts", &parts[0], &parts[2]];
    let err = exporter_fails(&merge);
    assert!(err.contains("part 1/3 is missing"), "{err}");
    assert!(!dir.path().join("sharded-cache/cache.json").exists(), "nothing merged");
    let text = cache_command(&["--merge"]);
    assert!(text.contains("merged from 3 parts"), "{text}");
    let files = |folder: &str| -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(path(folder))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
            .collect();
        files.sort();
        files
    };
    assert_eq!(files("sharded-cache"), files("offline/teacher-cache"), "merged parts = one process's cache");

    // A fresh BiGRU student on the teacher's vocabulary, distilled by the same command; it
    // translates through the same decoding core, and Transformer-only commands refuse it by name.
    let bigru = std::fs::read_to_string(path("distill.toml")).unwrap().replace("/kd\"", "/bigru\"")
        + "[bigru]\nemb_dim = 16\nhidden = 16\ndropout = 0.0\n";
    std::fs::write(path("bigru.toml"), bigru).unwrap();
    let text =
        exporter(&["distill", "--teacher", &path("run/model"), "--arch", "bigru", "--config", &path("bigru.toml")]);
    assert!(text.contains("bigru student") && text.contains("done: 8 updates"), "{text}");
    exporter(&[
        "translate",
        "--model",
        &path("bigru/model"),
        "--input",
        &path("in.en"),
        "--output",
        &path("bigru.fr"),
        "--beam",
        "2",
    ]);
    assert_eq!(std::fs::read_to_string(path("bigru.fr")).unwrap().split('\n').count(), 4);
    let stderr =
        exporter_fails(&["prune", "--teacher", &path("bigru/model"), "--keep", "1-1", "--out", &path("bad-bigru")]);
    assert!(stderr.contains("holds a bigru model; this needs a transformer model"), "{stderr}");

    // Sequence-level KD data: the teacher's beam translations of 50 training sources spread over
    // the split, the same as `translate` gives; a rerun finds it complete.
    let text = exporter(&[
        "distill",
        "seqkd",
        "--teacher",
        &path("run/model"),
        "--corpus",
        &path("corpus"),
        "--out",
        &path("seqkd"),
        "--beam",
        "2",
        "--limit",
        "50",
    ]);
    assert!(text.contains("teacher translations (beam 2)"), "{text}");
    let train_en = std::fs::read_to_string(path("corpus/train.en")).unwrap();
    let train_en: Vec<&str> = train_en.lines().collect();
    let first: String = (0..50).map(|i| format!("{}\n", train_en[i * train_en.len() / 50])).collect();
    std::fs::write(path("first.en"), first).unwrap();
    exporter(&[
        "translate",
        "--model",
        &path("run/model"),
        "--input",
        &path("first.en"),
        "--output",
        &path("first.fr"),
        "--beam",
        "2",
    ]);
    let expected: Vec<String> = std::fs::read_to_string(path("first.fr"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let got: Vec<String> =
        std::fs::read_to_string(path("seqkd/train.fr")).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(got, expected);
    assert_eq!(
        std::fs::read_to_string(path("seqkd/dev.fr")).unwrap(),
        std::fs::read_to_string(path("corpus/dev.fr")).unwrap(),
        "dev keeps the references"
    );
    let text = exporter(&[
        "distill",
        "seqkd",
        "--teacher",
        &path("run/model"),
        "--corpus",
        &path("corpus"),
        "--out",
        &path("seqkd"),
        "--beam",
        "2",
        "--limit",
        "50",
    ]);
    assert!(text.contains("nothing to do"), "{text}");

    // A student on another vocabulary is refused, naming why.
    std::fs::write(path("codes"), "u n 9\nd e 8\n").unwrap();
    std::fs::write(path("vocab"), "un 9\nde@@ 8\nux 7\nw@@ 6\n1 5\n2 5\n").unwrap();
    exporter(&[
        "tokenizer",
        "import-fastbpe",
        "--codes",
        &path("codes"),
        "--vocab",
        &path("vocab"),
        "--out",
        &path("tok2"),
    ]);
    std::fs::write(
        path("other.toml"),
        std::fs::read_to_string(path("teacher.toml"))
            .unwrap()
            .replace("/tok\"", "/tok2\"")
            .replace("/run\"", "/run2\""),
    )
    .unwrap();
    exporter(&["train", "--config", &path("other.toml"), "--max-updates", "1"]);
    let stderr = exporter_fails(&[
        "distill",
        "--teacher",
        &path("run/model"),
        "--student",
        &path("run2/model"),
        "--config",
        &path("distill.toml"),
    ]);
    assert!(stderr.contains("one shared vocabulary"), "{stderr}");

    let stderr =
        exporter_fails(&["prune", "--teacher", &path("run/model"), "--decoder-layers", "1,1", "--out", &path("bad")]);
    assert!(stderr.contains("decoder layers [1, 1]"), "{stderr}");
    assert!(!dir.path().join("bad").exists());

    let stderr = exporter_fails(&["translate", "--model", &path("nope"), "--input", &path("in.en")]);
    assert!(stderr.contains("--model"), "the error names the flag: {stderr}");
}

#[test]
fn a_run_snapshots_its_weights_and_average_takes_its_newest() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    corpus_tokenizer_and_teacher_config(dir.path());
    let config = std::fs::read_to_string(path("teacher.toml")).unwrap() + "snapshot_every = 5\nkeep_snapshots = 3\n";
    std::fs::write(path("teacher.toml"), config).unwrap();
    exporter(&["train", "--config", &path("teacher.toml")]);
    let mut kept: Vec<String> = std::fs::read_dir(path("run/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    kept.sort();
    assert_eq!(kept, ["u10", "u15", "u20"]);

    let text = exporter(&["average", "--run", &path("run"), "--last", "3", "--out", &path("mean"), "--half"]);
    assert!(text.contains("the mean of 3 models") && text.contains("fp16"), "{text}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("mean/training.json")).unwrap()).unwrap();
    assert_eq!(record["updates"], 20, "the run's record: {record}");
    let averaged: Vec<&str> = record["averaged_from"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(averaged.len() == 3 && averaged[0].ends_with("u10") && averaged[2].ends_with("u20"), "{averaged:?}");
    std::fs::write(path("in.en"), "w1 w2\nw3\n").unwrap();
    exporter(&["translate", "--model", &path("mean"), "--input", &path("in.en"), "--output", &path("mean.fr")]);
    assert_eq!(std::fs::read_to_string(path("mean.fr")).unwrap().lines().count(), 2);

    // More than the run kept: refused, listing what there is, nothing written.
    let err = exporter_fails(&["average", "--run", &path("run"), "--last", "4", "--out", &path("mean-4")]);
    assert!(err.contains("--last 4") && err.contains("u10, u15, u20"), "{err}");
    assert!(!dir.path().join("mean-4").exists(), "nothing written");
    let err = exporter_fails(&[
        "average",
        "--model",
        &path("mean"),
        "--model",
        &path("run/model"),
        "--last",
        "2",
        "--out",
        &path("m"),
    ]);
    assert!(err.contains("'--last <LAST>'"), "--last belongs to --run: {err}");
}

#[test]
fn a_pruned_student_with_a_trimmed_vocabulary_translates_alike_and_distills() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    corpus_tokenizer_and_teacher_config(dir.path());
    exporter(&["train", "--config", &path("teacher.toml"), "--max-updates", "60"]);

    exporter(&["prune", "--teacher", &path("run/model"), "--keep", "2-1", "--out", &path("full")]);
    let text = exporter(&[
        "prune",
        "--teacher",
        &path("run/model"),
        "--keep",
        "2-1",
        "--trim-vocab",
        &path("corpus"),
        "--out",
        &path("trimmed"),
    ]);
    let sizes: Vec<usize> = text
        .split("vocabulary ")
        .nth(1)
        .and_then(|rest| rest.split(" tokens").next())
        .map(|s| s.split(" → ").map(|n| n.parse().unwrap()).collect())
        .unwrap_or_default();
    assert!(sizes.len() == 2 && sizes[1] < sizes[0] / 2, "{text}");
    assert!(text.contains("dev tokens now <unk>: 0 of"), "{text}");
    let bytes = |dir: &str| std::fs::metadata(dir.to_owned() + "/model.safetensors").unwrap().len();
    assert!(bytes(&path("trimmed")) < bytes(&path("full")));

    // Same greedy translations: the trimmed model's logits are the full model's on the kept
    // tokens, and training pushed the unseen ones down. (Beam scores may differ: log-softmax
    // normalises over fewer tokens, which changes how finished and open hypotheses compare.)
    let sentences: String = (0..40).map(|i| format!("w{} w{} w{}\n", i % 6, (i * 5) % 6, (i / 3) % 6)).collect();
    std::fs::write(path("in.en"), sentences).unwrap();
    for model in ["full", "trimmed"] {
        let out = path(&format!("{model}.fr"));
        exporter(&["translate", "--model", &path(model), "--input", &path("in.en"), "--output", &out, "--beam", "1"]);
    }
    assert_eq!(std::fs::read_to_string(path("trimmed.fr")).unwrap(), std::fs::read_to_string(path("full.fr")).unwrap());

    // Distilled from the untrimmed teacher, online and offline (the cache in the student's ids).
    for (mode, extra) in [("online", ""), ("offline", "mode = \"offline\"\ntop_k = 4\n")] {
        let config = format!(
            "corpus = {:?}\nout = {:?}\ndev_sentences = 20\n{extra}[train]\nmax_tokens = 300\nlr = 0.002\nwarmup_updates = 2\nmax_updates = 4\neval_every = 4\ncheckpoint_every = 4\n",
            path("corpus"),
            path(mode)
        );
        std::fs::write(path(&format!("{mode}.toml")), config).unwrap();
        if mode == "offline" {
            let text = exporter(&[
                "distill",
                "cache",
                "--teacher",
                &path("run/model"),
                "--student",
                &path("trimmed"),
                "--config",
                &path("offline.toml"),
            ]);
            assert!(text.contains("top-4"), "{text}");
        }
        let text = exporter(&[
            "distill",
            "--teacher",
            &path("run/model"),
            "--student",
            &path("trimmed"),
            "--config",
            &path(&format!("{mode}.toml")),
        ]);
        assert!(text.contains(&format!("KD: {mode}")) && text.contains("done: 4 updates"), "{text}");
        if mode == "offline" {
            assert!(text.contains("(0 built now"), "the cache built for the trimmed student is reused: {text}");
        }
        let out = path(&format!("{mode}.fr"));
        exporter(&[
            "translate",
            "--model",
            &path(&format!("{mode}/model")),
            "--input",
            &path("in.en"),
            "--output",
            &out,
        ]);
    }
}

#[test]
fn a_killed_seqkd_run_resumes_to_the_corpus_an_uninterrupted_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    corpus_tokenizer_and_teacher_config(dir.path());
    exporter(&["train", "--config", &path("teacher.toml"), "--max-updates", "60"]);
    let seqkd = |out: &str| -> Vec<String> {
        [
            "distill",
            "seqkd",
            "--teacher",
            &path("run/model"),
            "--corpus",
            &path("corpus"),
            "--out",
            &path(out),
            "--beam",
            "2",
            "--chunk",
            "8",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    exporter(&seqkd("clean").iter().map(String::as_str).collect::<Vec<_>>());

    // The same corpus from three parts (one process each) and a merge: the same bytes. A merge
    // before every part is done names the missing one and writes nothing.
    let part = |extra: &[&str]| {
        let mut args = seqkd("sharded");
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let run = |args: Vec<String>| exporter(&args.iter().map(String::as_str).collect::<Vec<_>>());
    for shard in ["0/3", "2/3"] {
        assert!(run(part(&["--shard", shard])).contains(&format!("part {shard} done")));
    }
    let early = Command::new(binary("exporter")).env_clear().args(part(&["--merge"])).output().unwrap();
    let err = String::from_utf8_lossy(&early.stderr);
    assert!(!early.status.success() && err.contains("part 1/3 is missing"), "{err}");
    assert!(!dir.path().join("sharded/MANIFEST.json").exists(), "nothing merged");
    run(part(&["--shard", "1/3"]));
    run(part(&["--merge"]));
    for file in ["train.en", "train.fr", "dev.fr", "MANIFEST.json"] {
        assert_eq!(
            std::fs::read_to_string(path(&format!("sharded/{file}"))).unwrap(),
            std::fs::read_to_string(path(&format!("clean/{file}"))).unwrap().replace("/clean", "/sharded"),
            "{file}"
        );
    }

    // Killed (SIGKILL) as soon as its first chunk is recorded, then run again.
    let mut child = Command::new(binary("exporter")).env_clear().args(seqkd("killed")).spawn().unwrap();
    let progress = dir.path().join("killed/.seqkd/progress.json");
    let started = std::time::Instant::now();
    while !progress.exists() && started.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.path().join("killed/MANIFEST.json").exists(), "killed before it finished");
    let text = exporter(&seqkd("killed").iter().map(String::as_str).collect::<Vec<_>>());
    assert!(text.contains("resuming after "), "{text}");
    for file in ["train.en", "train.fr", "dev.fr"] {
        assert_eq!(
            std::fs::read_to_string(path(&format!("killed/{file}"))).unwrap(),
            std::fs::read_to_string(path(&format!("clean/{file}"))).unwrap(),
            "{file}"
        );
    }
    assert!(!dir.path().join("killed/.seqkd").exists(), "the work folder is removed when done");
}

#[test]
fn a_killed_distillation_resumes_exactly_where_an_uninterrupted_one_would_be() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    corpus_tokenizer_and_teacher_config(dir.path());
    exporter(&["train", "--config", &path("teacher.toml")]);
    exporter(&["prune", "--teacher", &path("run/model"), "--keep", "1-1", "--out", &path("student")]);
    for out in ["clean", "killed"] {
        let config = format!(
            "corpus = {:?}\nout = {:?}\ndev_sentences = 10\n[kd]\ntemperature = 2.0\nalpha = 0.5\n[train]\nmax_tokens = 200\nlr = 0.002\nwarmup_updates = 5\nmax_updates = 100000\neval_every = 1000\ncheckpoint_every = 4\n",
            path("corpus"),
            path(out)
        );
        std::fs::write(path(&format!("{out}.toml")), config).unwrap();
    }
    let distill = |out: &str| {
        [
            "distill",
            "--teacher",
            &path("run/model"),
            "--student",
            &path("student"),
            "--config",
            &path(&format!("{out}.toml")),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let with_limit = |out: &str| [distill(out), vec!["--max-updates".into(), "40".into()]].concat();
    exporter(&with_limit("clean").iter().map(String::as_str).collect::<Vec<_>>());

    // SIGKILL once a few checkpoints are written (no update cap: it cannot finish first).
    let mut child = Command::new(binary("exporter")).env_clear().args(distill("killed")).spawn().unwrap();
    let log = dir.path().join("killed/train_log.jsonl");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < 10 && started.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.path().join("killed/model").exists(), "killed before it finished");
    exporter(&with_limit("killed").iter().map(String::as_str).collect::<Vec<_>>());

    let read = |out: &str| -> Vec<(i64, f64)> {
        std::fs::read_to_string(dir.path().join(out).join("train_log.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| (v["update"].as_i64().unwrap(), v["loss"].as_f64().unwrap()))
            .collect()
    };
    let (clean, killed) = (read("clean"), read("killed"));
    assert_eq!(killed.iter().map(|l| l.0).collect::<Vec<_>>(), (1..=40).collect::<Vec<_>>(), "nothing repeated");
    for ((update, a), (_, b)) in clean.iter().zip(&killed) {
        assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "update {update}: loss {a} uninterrupted vs {b} resumed");
    }
}
