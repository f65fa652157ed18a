//! `MANIFEST.json`: what a corpus folder holds, where it came from, and checksums that let a
//! rerun know the folder is complete.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};
pub use xlmc_atomic_file::sha256_file;

use crate::{CorpusError, Pair, Split, split::Splits};

pub const MANIFEST_FILE: &str = "MANIFEST.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceInfo {
    pub name: String,
    /// `package=version` or the user's file names.
    pub origin: Vec<String>,
    pub license: String,
    /// sha256 of each downloaded archive or input file.
    pub sha256: BTreeMap<String, String>,
    /// Aligned pairs before splitting.
    pub pairs: usize,
    /// Why pairs were dropped while reading, by reason.
    pub dropped: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplitInfo {
    pub split: Split,
    pub pairs: usize,
    /// Pairs per source (document prefix: `help`, `bible`, `user`).
    pub by_source: BTreeMap<String, usize>,
    /// File name → sha256.
    pub files: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub source_language: String,
    pub target_language: String,
    pub created_by: String,
    pub split_rule: String,
    pub sources: Vec<SourceInfo>,
    pub splits: Vec<SplitInfo>,
    pub removed_duplicates: usize,
    pub removed_leaks: usize,
}

impl Manifest {
    /// Reads `dir/MANIFEST.json` and checks every listed file's checksum; `None` when anything
    /// is missing, unreadable or changed (the corpus must be rebuilt).
    pub fn load_valid(dir: &Path) -> Option<Manifest> {
        let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).ok()?;
        let manifest: Manifest = serde_json::from_str(&text).ok()?;
        let intact = manifest.format_version == FORMAT_VERSION
            && manifest
                .splits
                .iter()
                .flat_map(|s| &s.files)
                .all(|(file, sha)| sha256_file(&dir.join(file)).as_ref() == Some(sha));
        intact.then_some(manifest)
    }

    /// Pairs in a split.
    pub fn count(&self, split: Split) -> usize {
        self.splits.iter().find(|s| s.split == split).map_or(0, |s| s.pairs)
    }
}

pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `bytes` to `path` through a temp file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CorpusError> {
    xlmc_atomic_file::write(path, bytes).map_err(CorpusError::io(path))
}

/// Writes the split files (`train.en`, …) and then the manifest. The old manifest is removed
/// first, so a run killed half-way leaves a folder that the next run knows to rebuild.
pub fn write_corpus(
    out: &Path,
    languages: (&str, &str),
    splits: &Splits,
    sources: Vec<SourceInfo>,
    split_rule: &str,
) -> Result<Manifest, CorpusError> {
    std::fs::create_dir_all(out).map_err(CorpusError::io(out))?;
    let manifest_path = out.join(MANIFEST_FILE);
    if manifest_path.exists() {
        std::fs::remove_file(&manifest_path).map_err(CorpusError::io(&manifest_path))?;
    }
    let mut infos = Vec::new();
    for split in Split::ALL {
        let pairs = splits.get(split);
        let mut files = BTreeMap::new();
        for (language, side) in [(languages.0, Side::Source), (languages.1, Side::Target)] {
            let name = format!("{}.{language}", split.name());
            let text = lines(pairs, side);
            write_atomic(&out.join(&name), text.as_bytes())?;
            files.insert(name, sha256_bytes(text.as_bytes()));
        }
        let mut by_source = BTreeMap::new();
        for pair in pairs {
            let source = pair.document.split(':').next().unwrap_or("").to_owned();
            *by_source.entry(source).or_insert(0) += 1;
        }
        infos.push(SplitInfo { split, pairs: pairs.len(), by_source, files });
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        source_language: languages.0.to_owned(),
        target_language: languages.1.to_owned(),
        created_by: format!("xlmc {}", env!("CARGO_PKG_VERSION")),
        split_rule: split_rule.to_owned(),
        sources,
        splits: infos,
        removed_duplicates: splits.duplicates,
        removed_leaks: splits.leaks,
    };
    let json = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    write_atomic(&manifest_path, format!("{json}\n").as_bytes())?;
    Ok(manifest)
}

#[derive(Clone, Copy)]
enum Side {
    Source,
    Target,
}

fn lines(pairs: &[Pair], side: Side) -> String {
    let mut text = String::new();
    for pair in pairs {
        text.push_str(match side {
            Side::Source => &pair.source,
            Side::Target => &pair.target,
        });
        text.push('\n');
    }
    text
}

/// Paths of a corpus folder's split files, for readers.
pub fn split_paths(dir: &Path, split: Split, languages: (&str, &str)) -> (PathBuf, PathBuf) {
    (dir.join(format!("{}.{}", split.name(), languages.0)), dir.join(format!("{}.{}", split.name(), languages.1)))
}
