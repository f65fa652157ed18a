//! `exporter data import` and `exporter tokenizer train` end to end on a generated corpus
//! (tests never touch the network; `data fetch` itself is exercised by hand, see README).

use std::process::Command;

use xlmc_tests::{Rng, binary};

const EN: &[&str] = &["the", "cat", "dog", "sees", "a", "house", "small", "big", "red", "runs", "and", "quickly"];
const FR: &[&str] = &["le", "chat", "chien", "voit", "une", "maison", "petit", "grand", "rouge", "court", "et", "vite"];

fn exporter(args: &[&str]) -> (bool, String) {
    let out = Command::new(binary("exporter")).env_clear().args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn import_then_train_a_tokenizer_that_round_trips_dev() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(11);
    let (mut en, mut fr) = (String::new(), String::new());
    for _ in 0..3000 {
        let idx: Vec<usize> = (0..1 + rng.below(12)).map(|_| rng.below(EN.len())).collect();
        en.extend(idx.iter().map(|&i| format!("{} ", EN[i])));
        fr.extend(idx.iter().map(|&i| format!("{} ", FR[i])));
        en.push_str("Éé.\n");
        fr.push_str("«ça» !\n");
    }
    en.push('\n'); // one empty line on each side: skipped and counted
    fr.push('\n');
    let (src, tgt, corpus) = (dir.path().join("c.en"), dir.path().join("c.fr"), dir.path().join("corpus"));
    std::fs::write(&src, en).unwrap();
    std::fs::write(&tgt, fr).unwrap();
    let (ok, text) = exporter(&[
        "data",
        "import",
        "--pair",
        "en-fr",
        "--source",
        src.to_str().unwrap(),
        "--target",
        tgt.to_str().unwrap(),
        "--out",
        corpus.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("skipped 1 empty"), "{text}");
    assert!(corpus.join("MANIFEST.json").is_file() && corpus.join("dev.fr").is_file());

    let tokenizer = corpus.join("tokenizer");
    let (ok, text) = exporter(&[
        "tokenizer",
        "train",
        "--corpus",
        corpus.to_str().unwrap(),
        "--vocab-size",
        "400",
        "--out",
        tokenizer.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let line = text.lines().find(|l| l.starts_with("round-trip on the dev split:")).expect("round-trip line");
    let (exact, total) = line.split_whitespace().nth(5).and_then(|f| f.split_once('/')).unwrap();
    assert_eq!(exact, total, "{line}");
    assert!(total.parse::<usize>().unwrap() > 50, "{line}");
    assert!(tokenizer.join("tokenizer.json").is_file());
}

#[test]
fn bad_corpus_requests_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = exporter(&["data", "fetch", "--pair", "de-en", "--out", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(text.contains("no built-in corpus for `de-en`"), "{text}");

    let (src, tgt) = (dir.path().join("a.en"), dir.path().join("a.fr"));
    std::fs::write(&src, "one\ntwo\n").unwrap();
    std::fs::write(&tgt, "un\n").unwrap();
    let (ok, text) = exporter(&[
        "data",
        "import",
        "--source",
        src.to_str().unwrap(),
        "--target",
        tgt.to_str().unwrap(),
        "--out",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(text.contains("a.fr: has 1 lines but") && text.contains("a.en has 2"), "{text}");
    assert!(!dir.path().join("out").join("MANIFEST.json").exists());
}

#[test]
fn fetch_without_apt_get_names_the_tool_and_leaves_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("en-fr");
    // PATH names an empty folder, so apt-get cannot be found (and nothing is downloaded).
    let empty = dir.path().join("empty-bin");
    std::fs::create_dir(&empty).unwrap();
    let output = Command::new(binary("exporter"))
        .env_clear()
        .env("PATH", &empty)
        .args(["data", "fetch", "--pair", "en-fr", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let (ok, text) = (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned());
    assert!(!ok);
    assert!(text.contains("apt-get is needed to fetch LibreOffice help but was not found"), "{text}");
    let left: Vec<_> =
        std::fs::read_dir(&out).map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "partial output left behind: {left:?}");
}
