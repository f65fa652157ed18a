//! Model bundles: what the server loads and `exporter translate --bundle` decodes through ONNX
//! Runtime. A bundle is a folder:
//!
//! - `manifest.json` ([`Manifest`]): format version, architecture and its config, languages,
//!   XLM's special ids, the tokenizer's files, every file with its sha256 and size, the source
//!   model's weight hashes, and the export options;
//! - the tokenizer files (`tokenizer.json` or fastBPE `codes`/`vocab`, and `tokenizer_meta.json`);
//! - the ONNX graphs (`encoder.onnx`, `decoder.onnx` for a Transformer).
//!
//! [`write`] builds it in a staging folder and renames it into place, so a bundle path never holds
//! a mix of two exports; [`Bundle::open`] refuses a newer format, a missing file or a file whose
//! sha256 differs, naming the file.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub mod contract;
pub use contract::{Architecture, MANIFEST_FILE};
/// The bundle layout this build writes and the only one it reads. Format 3: the Transformer
/// decoder writes the step into the self-attention cache it is given, in place, and attends
/// over each row's own steps (ONNX Runtime's GroupQueryAttention); format 2 returned the step's
/// keys and values for the caller to append, format 1 the whole cache.
pub const FORMAT_VERSION: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a bundle manifest: {detail}")]
    Manifest { path: PathBuf, detail: String },
    #[error("{path}: bundle format {found} is newer than this build reads ({FORMAT_VERSION}); upgrade xlmc")]
    NewerFormat { path: PathBuf, found: u32 },
    #[error(
        "{path}: bundle format {found} is older than this build reads ({FORMAT_VERSION}); \
         export the model again (exporter export --model … --out …)"
    )]
    OlderFormat { path: PathBuf, found: u32 },
    #[error("{path}: listed in the manifest but missing")]
    Missing { path: PathBuf },
    #[error("{path}: sha256 {found} differs from the manifest's {expected} (corrupt or replaced)")]
    Checksum { path: PathBuf, expected: String, found: String },
    #[error("{0}")]
    Export(String),
}

impl From<std::io::Error> for BundleError {
    fn from(source: std::io::Error) -> Self {
        BundleError::Io { path: PathBuf::new(), source }
    }
}

/// XLM's special token ids, written out so a reader needs no convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialIds {
    pub bos: u32,
    pub eos: u32,
    pub pad: u32,
    pub unk: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub sha256: String,
    pub bytes: u64,
}

/// How the graphs were produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportOptions {
    /// `fp32` (the default), later `fp16` / `int8`.
    pub precision: String,
    pub opset: i64,
    pub ir_version: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub architecture: Architecture,
    /// The model's own config (the `config.json` of its model folder).
    pub config: serde_json::Value,
    /// XLM's `lang2id` order.
    pub languages: Vec<String>,
    pub special_ids: SpecialIds,
    /// The tokenizer's files, all of them also in `files`.
    pub tokenizer_files: Vec<String>,
    /// Every file of the bundle but the manifest.
    pub files: BTreeMap<String, FileEntry>,
    /// The model folder exported and the sha256 of its weight files.
    pub source: BTreeMap<String, String>,
    pub export: ExportOptions,
    pub created_by: String,
}

impl Manifest {
    /// A manifest with XLM's special ids, fp32 graphs at opset 17 / IR 8, and no files yet (the
    /// writer fills `files`; set the other fields as needed).
    pub fn new(architecture: Architecture, config: serde_json::Value, languages: Vec<String>) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            architecture,
            config,
            languages,
            special_ids: SpecialIds { bos: 0, eos: 1, pad: 2, unk: 3 },
            tokenizer_files: Vec::new(),
            files: BTreeMap::new(),
            source: BTreeMap::new(),
            export: ExportOptions { precision: "fp32".into(), opset: 17, ir_version: 8 },
            created_by: format!("xlmc {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Writes a bundle to `out`: `fill` writes the files into the staging folder it is given and
/// returns the manifest with `files` left empty; every file it wrote is then hashed into it.
/// Total size of the files directly in `folder` (a bundle, or a model folder beside bundles).
pub fn folder_bytes(folder: &Path) -> u64 {
    std::fs::read_dir(folder)
        .map(|entries| entries.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

pub fn write(
    out: &Path,
    replace: bool,
    fill: impl FnOnce(&Path) -> Result<Manifest, BundleError>,
) -> Result<Manifest, BundleError> {
    let io = |e: std::io::Error| BundleError::Io { path: out.to_owned(), source: e };
    xlmc_atomic_file::replace_dir(out, replace, |staging| {
        let mut manifest = fill(staging)?;
        manifest.format_version = FORMAT_VERSION;
        let mut names: Vec<String> = std::fs::read_dir(staging)
            .map_err(io)?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name != MANIFEST_FILE)
            .collect();
        names.sort();
        for name in names {
            let path = staging.join(&name);
            let bytes = std::fs::metadata(&path).map_err(io)?.len();
            let sha256 =
                xlmc_atomic_file::sha256_file(&path).ok_or_else(|| BundleError::Missing { path: path.clone() })?;
            manifest.files.insert(name, FileEntry { sha256, bytes });
        }
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        xlmc_atomic_file::write(&staging.join(MANIFEST_FILE), text.as_bytes()).map_err(io)?;
        Ok(manifest)
    })
    .map_err(|e| match e {
        BundleError::Io { path, source } if path.as_os_str().is_empty() => {
            BundleError::Io { path: out.to_owned(), source }
        }
        other => other,
    })
}

/// An opened, verified bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Bundle {
    /// Reads the manifest and checks every file it lists (presence, sha256).
    pub fn open(dir: &Path) -> Result<Self, BundleError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| BundleError::Io { path: path.clone(), source })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| BundleError::Manifest { path: path.clone(), detail: e.to_string() })?;
        // The version first: a newer layout may not parse as this one.
        let found = value.get("format_version").and_then(serde_json::Value::as_u64).unwrap_or(0) as u32;
        if found > FORMAT_VERSION {
            return Err(BundleError::NewerFormat { path, found });
        }
        if found < FORMAT_VERSION {
            return Err(BundleError::OlderFormat { path, found });
        }
        let manifest: Manifest = serde_json::from_value(value)
            .map_err(|e| BundleError::Manifest { path: path.clone(), detail: e.to_string() })?;
        for (name, entry) in &manifest.files {
            let file = dir.join(name);
            if !file.is_file() {
                return Err(BundleError::Missing { path: file });
            }
            let sha256 = xlmc_atomic_file::sha256_file(&file).unwrap_or_default();
            if sha256 != entry.sha256 {
                return Err(BundleError::Checksum { path: file, expected: entry.sha256.clone(), found: sha256 });
            }
        }
        Ok(Self { dir: dir.to_owned(), manifest })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::new(Architecture::Transformer, serde_json::json!({"n_words": 10}), vec!["en".into(), "fr".into()])
    }

    fn written(dir: &Path) -> PathBuf {
        let out = dir.join("bundle");
        write(&out, false, |d| {
            std::fs::write(d.join(contract::ENCODER_GRAPH), b"graph")?;
            std::fs::write(d.join("tokenizer.json"), b"{}")?;
            Ok(manifest())
        })
        .unwrap();
        out
    }

    #[test]
    fn a_written_bundle_opens_with_every_file_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle::open(&written(dir.path())).unwrap();
        assert_eq!(bundle.manifest.format_version, FORMAT_VERSION);
        assert_eq!(bundle.manifest.files.keys().collect::<Vec<_>>(), ["encoder.onnx", "tokenizer.json"]);
        assert_eq!(bundle.manifest.files["encoder.onnx"].bytes, 5);
    }

    #[test]
    fn a_changed_missing_or_newer_bundle_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = written(dir.path());
        std::fs::write(out.join("encoder.onnx"), b"grapH").unwrap();
        let error = Bundle::open(&out).unwrap_err().to_string();
        assert!(error.contains("encoder.onnx") && error.contains("sha256"), "{error}");
        std::fs::remove_file(out.join("encoder.onnx")).unwrap();
        let error = Bundle::open(&out).unwrap_err().to_string();
        assert!(error.contains("encoder.onnx") && error.contains("missing"), "{error}");

        let out = dir.path().join("newer");
        write(&out, false, |_| Ok(manifest())).unwrap();
        let text = std::fs::read_to_string(out.join(MANIFEST_FILE)).unwrap();
        let current = format!("\"format_version\": {FORMAT_VERSION}");
        assert!(text.contains(&current), "{text}");
        std::fs::write(out.join(MANIFEST_FILE), text.replace(&current, "\"format_version\": 9")).unwrap();
        let error = Bundle::open(&out).unwrap_err().to_string();
        assert!(error.contains("manifest.json") && error.contains("format 9 is newer"), "{error}");
        std::fs::write(out.join(MANIFEST_FILE), text.replace(&current, "\"format_version\": 1")).unwrap();
        let error = Bundle::open(&out).unwrap_err().to_string();
        assert!(error.contains("format 1 is older") && error.contains("exporter export"), "{error}");
    }
}
