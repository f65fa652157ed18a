//! A user's own parallel corpus: a TSV file (`source<TAB>target`) or a Moses-style pair of
//! files (`corpus.en` / `corpus.fr`, line i of one translating line i of the other).
//!
//! Unusable lines are skipped and counted, never fatal: empty sides, sides longer than
//! [`MAX_WORDS`], invalid UTF-8, TSV lines without a tab. Files of different line counts are an
//! error: the pairing would be wrong from the first missing line on.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use crate::{
    CorpusError, Manifest, Pair, SourceInfo,
    manifest::{sha256_file, write_corpus},
    split, text,
};

/// Longest side kept, in whitespace-separated words.
pub const MAX_WORDS: usize = 1000;

#[derive(Debug, Clone)]
pub enum UserCorpus {
    Tsv(PathBuf),
    Moses { source: PathBuf, target: PathBuf },
}

#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub corpus: UserCorpus,
    pub source_language: String,
    pub target_language: String,
    pub out: PathBuf,
    /// Percent of segments for dev, and again for test (assigned by hash of the source side).
    pub held_out_percent: u64,
}

/// Lines read and why lines were skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub kept: usize,
    pub empty: usize,
    pub too_long: usize,
    pub invalid_utf8: usize,
    pub malformed: usize,
}

impl ImportReport {
    fn dropped(&self) -> BTreeMap<String, usize> {
        BTreeMap::from([
            ("empty".to_owned(), self.empty),
            ("too_long".to_owned(), self.too_long),
            ("invalid_utf8".to_owned(), self.invalid_utf8),
            ("malformed".to_owned(), self.malformed),
        ])
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, CorpusError> {
    std::fs::read(path).map_err(CorpusError::io(path))
}

/// Lines of a file as bytes (a final newline does not start an empty line; `\r\n` accepted).
fn byte_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect()
}

/// Reads the corpus into pairs (document = source text, so repeats share a split).
pub fn read_pairs(corpus: &UserCorpus) -> Result<(Vec<Pair>, ImportReport), CorpusError> {
    let mut report = ImportReport::default();
    let mut pairs = Vec::new();
    let mut push = |source: Option<&[u8]>, target: Option<&[u8]>, report: &mut ImportReport| {
        let (Some(source), Some(target)) = (source, target) else {
            report.malformed += 1;
            return;
        };
        let (Ok(source), Ok(target)) = (std::str::from_utf8(source), std::str::from_utf8(target)) else {
            report.invalid_utf8 += 1;
            return;
        };
        let (source, target) = (text::clean(source), text::clean(target));
        if source.is_empty() || target.is_empty() {
            report.empty += 1;
        } else if text::word_count(&source) > MAX_WORDS || text::word_count(&target) > MAX_WORDS {
            report.too_long += 1;
        } else {
            report.kept += 1;
            pairs.push(Pair { document: format!("user:{source}"), source, target });
        }
    };
    match corpus {
        UserCorpus::Tsv(path) => {
            let bytes = read_bytes(path)?;
            for line in byte_lines(&bytes) {
                let mut fields = line.splitn(2, |&b| b == b'\t');
                let (source, target) = (fields.next(), fields.next());
                push(source, target.filter(|t| !t.contains(&b'\t')).or(target.map(|_| &b""[..])), &mut report);
            }
        }
        UserCorpus::Moses { source, target } => {
            let (source_bytes, target_bytes) = (read_bytes(source)?, read_bytes(target)?);
            let (source_lines, target_lines) = (byte_lines(&source_bytes), byte_lines(&target_bytes));
            if source_lines.len() != target_lines.len() {
                return Err(CorpusError::Input {
                    path: target.clone(),
                    detail: format!(
                        "has {} lines but {} has {}: Moses-style files must be line-aligned",
                        target_lines.len(),
                        source.display(),
                        source_lines.len()
                    ),
                });
            }
            for (s, t) in source_lines.into_iter().zip(target_lines) {
                push(Some(s), Some(t), &mut report);
            }
        }
    }
    Ok((pairs, report))
}

/// Reads, splits and writes a user corpus like the built-in one.
pub fn import_corpus(options: &ImportOptions) -> Result<(Manifest, ImportReport), CorpusError> {
    let (pairs, report) = read_pairs(&options.corpus)?;
    if pairs.is_empty() {
        let path = match &options.corpus {
            UserCorpus::Tsv(p) => p.clone(),
            UserCorpus::Moses { source, .. } => source.clone(),
        };
        return Err(CorpusError::Input { path, detail: format!("no usable segment pairs ({report:?})") });
    }
    let inputs: Vec<PathBuf> = match &options.corpus {
        UserCorpus::Tsv(p) => vec![p.clone()],
        UserCorpus::Moses { source, target } => vec![source.clone(), target.clone()],
    };
    let info = SourceInfo {
        name: "user corpus".to_owned(),
        origin: inputs.iter().map(|p| p.display().to_string()).collect(),
        license: "as provided by the user".to_owned(),
        sha256: inputs.iter().map(|p| (p.display().to_string(), sha256_file(p).unwrap_or_default())).collect(),
        pairs: pairs.len(),
        dropped: report.dropped(),
    };
    let splits = split::split(pairs, options.held_out_percent);
    let rule = format!(
        "by sha256 of the source segment: {pct}% test, {pct}% dev; duplicates and cross-split repeats removed",
        pct = options.held_out_percent
    );
    let languages = (options.source_language.as_str(), options.target_language.as_str());
    Ok((write_corpus(&options.out, languages, &splits, vec![info], &rule)?, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_lines_are_kept_or_skipped_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.tsv");
        let long = "w ".repeat(MAX_WORDS + 1);
        let mut bytes = b"Hello world\tBonjour le monde\r\n\tvide\nno tab here\n".to_vec();
        bytes.extend_from_slice(format!("{long}\tlong\n").as_bytes());
        bytes.extend_from_slice(b"bad \xff utf8\tx\nGood night\tBonne nuit\n");
        std::fs::write(&path, bytes).unwrap();
        let (pairs, report) = read_pairs(&UserCorpus::Tsv(path)).unwrap();
        assert_eq!(pairs.iter().map(|p| p.target.as_str()).collect::<Vec<_>>(), ["Bonjour le monde", "Bonne nuit"]);
        assert_eq!(report, ImportReport { kept: 2, empty: 1, too_long: 1, invalid_utf8: 1, malformed: 1 });
    }

    #[test]
    fn misaligned_moses_files_are_an_error_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let (source, target) = (dir.path().join("train.en"), dir.path().join("train.fr"));
        std::fs::write(&source, "a\nb\nc\n").unwrap();
        std::fs::write(&target, "a\nb\n").unwrap();
        let err = read_pairs(&UserCorpus::Moses { source, target }).unwrap_err().to_string();
        assert!(err.contains("train.fr: has 2 lines but") && err.contains("train.en has 3"), "{err}");
    }

    #[test]
    fn import_writes_splits_and_a_manifest_that_validates() {
        let dir = tempfile::tempdir().unwrap();
        let (source, target) = (dir.path().join("c.en"), dir.path().join("c.fr"));
        let en: Vec<String> = (0..400).map(|i| format!("sentence number {i}")).collect();
        let fr: Vec<String> = (0..400).map(|i| format!("phrase numéro {i}")).collect();
        std::fs::write(&source, en.join("\n")).unwrap();
        std::fs::write(&target, fr.join("\n")).unwrap();
        let out = dir.path().join("corpus");
        let options = ImportOptions {
            corpus: UserCorpus::Moses { source, target },
            source_language: "en".into(),
            target_language: "fr".into(),
            out: out.clone(),
            held_out_percent: 5,
        };
        let (manifest, report) = import_corpus(&options).unwrap();
        assert_eq!(report.kept, 400);
        let total: usize = manifest.splits.iter().map(|s| s.pairs).sum();
        assert_eq!(total, 400);
        assert!(manifest.count(crate::Split::Test) > 0 && manifest.count(crate::Split::Dev) > 0);
        assert_eq!(Manifest::load_valid(&out), Some(manifest));
        // A changed split file invalidates the folder.
        std::fs::write(out.join("test.fr"), "tampered\n").unwrap();
        assert_eq!(Manifest::load_valid(&out), None);
    }
}
