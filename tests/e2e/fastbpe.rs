//! The fastBPE importer against subword-nmt 0.3.8 (python, the reference fastBPE ports): the
//! same codes and vocabulary must give the same segmentation, including the splitting of pieces
//! the vocabulary lacks.

use std::process::Stdio;

use xlmc_tests::{Rng, oracle_python};

const SYLLABLES: &[&str] =
    &["ka", "lo", "min", "ter", "es", "ra", "ne", "ul", "pho", "st", "ing", "ed", "ri", "ou", "x"];
const MERGES: &str = "800";
/// Vocabulary entries seen fewer times are left out, so the importer must split pieces back.
const VOCAB_THRESHOLD: u64 = 30;

fn text(rng: &mut Rng, lines: usize) -> String {
    let mut out = String::new();
    for _ in 0..lines {
        let words: Vec<String> = (0..1 + rng.below(10))
            .map(|_| (0..1 + rng.below(4)).map(|_| *rng.pick(SYLLABLES)).collect::<String>())
            .collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

fn subword_nmt(module: &str, args: &[&str], input: &str) -> String {
    let mut child = oracle_python()
        .args(["-m", &format!("subword_nmt.{module}")])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "subword_nmt.{module}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn segmentation_equals_subword_nmt_with_a_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(5);
    let (train, held_out) = (text(&mut rng, 3000), text(&mut rng, 300));

    let codes = subword_nmt("learn_bpe", &["-s", MERGES], &train);
    let codes_path = dir.path().join("codes");
    std::fs::write(&codes_path, &codes).unwrap();
    let segmented = subword_nmt("apply_bpe", &["-c", codes_path.to_str().unwrap()], &train);
    let full_vocab = subword_nmt("get_vocab", &[], &segmented);
    let mut vocab: String = full_vocab
        .lines()
        .filter(|l| l.split(' ').nth(1).and_then(|c| c.parse::<u64>().ok()).is_some_and(|c| c >= VOCAB_THRESHOLD))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(vocab.lines().count() < full_vocab.lines().count(), "the threshold must remove pieces");
    // As in a real XLM vocabulary, every character exists in both forms, so nothing is <unk>.
    let mut alphabet: Vec<char> = SYLLABLES.concat().chars().collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    for c in alphabet {
        for form in [format!("{c}@@"), c.to_string()] {
            if !vocab.lines().any(|l| l.split(' ').next() == Some(form.as_str())) {
                vocab.push_str(&format!("{form} {VOCAB_THRESHOLD}\n"));
            }
        }
    }
    let vocab_path = dir.path().join("vocab");
    std::fs::write(&vocab_path, &vocab).unwrap();

    let expected = subword_nmt(
        "apply_bpe",
        &[
            "-c",
            codes_path.to_str().unwrap(),
            "--vocabulary",
            vocab_path.to_str().unwrap(),
            "--vocabulary-threshold",
            "1",
        ],
        &held_out,
    );
    let tokenizer = xlmc_tokenizer::from_fastbpe(&codes_path, &vocab_path, vec!["en".into(), "fr".into()]).unwrap();
    let mut split_back = 0;
    for (line, want) in held_out.lines().zip(expected.lines()) {
        let ids = tokenizer.encode(line).unwrap();
        assert!(!ids.contains(&xlmc_tokenizer::UNK_ID), "every character is in the vocabulary: {line}");
        let got = tokenizer.tokens(&ids).join(" ");
        assert_eq!(got, want, "input `{line}`");
        split_back += got.split(' ').count();
    }
    assert_eq!(expected.lines().count(), 300);
    assert!(split_back > 300);
    // The vocabulary really changed segmentations (pieces were split back).
    let unrestricted = subword_nmt("apply_bpe", &["-c", codes_path.to_str().unwrap()], &held_out);
    let changed = unrestricted.lines().zip(expected.lines()).filter(|(a, b)| a != b).count();
    assert!(changed > 30, "only {changed} lines differ without the vocabulary");
}
