//! A cache built in parts: `N` processes (machines, Kubernetes pods) each build the shards of
//! one [`Part`] into a folder of their own, and [`merge`] checks the parts against each other
//! and the spec before it assembles the cache. Shard `s` belongs to part `s mod N`, so parts get
//! equal work whatever the corpus order. A shard's bytes depend only on its pairs, so a merged
//! cache is byte-identical to one built by a single process.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use crate::{CacheError, CacheSpec, FORMAT, MANIFEST_FILE, Manifest, io, read_manifest, sha256_of, write_manifest};

/// Part `index` of `count` (`--shard INDEX/COUNT`, from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Part {
    pub index: usize,
    pub count: usize,
}

impl Part {
    /// Whether shard `shard` is this part's.
    pub fn owns(&self, shard: usize) -> bool {
        shard % self.count == self.index
    }

    /// The folder name of this part's build: `2-of-3`.
    pub fn folder_name(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Part {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not INDEX/COUNT with 0 ≤ INDEX < COUNT (e.g. 0/4)");
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) =
            (index.trim().parse().map_err(|_| bad())?, count.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Part { index, count })
    }
}

/// The parts a merge has found: each once, all of one count. Shared by every merge of parts (the
/// top-k cache here, the seq-KD corpus in `exporter`), so they accept and name parts alike.
#[derive(Debug, Default)]
pub struct PartRoll {
    count: Option<usize>,
    seen: BTreeMap<usize, PathBuf>,
}

impl PartRoll {
    /// Records `part`, found in `dir`; a part of another count than the first, or one found
    /// already, is not recorded and its problem is returned.
    pub fn add(&mut self, part: Part, dir: &Path) -> Result<(), String> {
        let shown = dir.display();
        match self.count {
            Some(n) if n != part.count => return Err(format!("{shown}: part {part}, but other parts are of {n}")),
            _ => self.count = Some(part.count),
        }
        if let Some(other) = self.seen.get(&part.index) {
            return Err(format!("part {part} twice: {} and {shown}", other.display()));
        }
        self.seen.insert(part.index, dir.to_owned());
        Ok(())
    }

    /// The count every recorded part shares (`None` before the first).
    pub fn count(&self) -> Option<usize> {
        self.count
    }

    /// One `part I/N is missing` per part not recorded.
    pub fn missing(&self) -> Vec<String> {
        let Some(count) = self.count else { return Vec::new() };
        (0..count)
            .filter(|i| !self.seen.contains_key(i))
            .map(|index| format!("part {} is missing", Part { index, count }))
            .collect()
    }
}

/// The part folders under `dir` (where `--shard` builds them), in name order.
pub fn part_folders(dir: &Path) -> Result<Vec<PathBuf>, CacheError> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    parts.sort();
    Ok(parts)
}

/// Checks the part folders `parts` — each built for `spec`, parts of one count, every part once,
/// each holding exactly its shards with their checksums — and only then copies their shards into
/// the cache folder `out` and writes its manifest. Every problem is named; with any, nothing is
/// written. Returns how many shards the cache has.
pub fn merge(parts: &[PathBuf], out: &Path, spec: &CacheSpec) -> Result<usize, CacheError> {
    let mut problems = Vec::new();
    if parts.is_empty() {
        problems.push("no part folders given".to_owned());
    }
    let mut roll = PartRoll::default();
    let mut sources: BTreeMap<usize, (PathBuf, crate::ShardInfo)> = BTreeMap::new();
    for dir in parts {
        let shown = dir.display();
        let Some(manifest) = read_manifest(dir) else {
            problems.push(format!("{shown}: no readable {MANIFEST_FILE}"));
            continue;
        };
        if manifest.format != FORMAT || &manifest.spec != spec {
            problems.push(format!("{shown}: built for another teacher, corpus or settings ({:?})", manifest.spec));
            continue;
        }
        let Some(part) = manifest.part else {
            problems.push(format!("{shown}: a whole cache, not a part"));
            continue;
        };
        if let Err(problem) = roll.add(part, dir) {
            problems.push(problem);
            continue;
        }
        for shard in (0..spec.shards()).filter(|&s| part.owns(s)) {
            let Some(info) = manifest.shards.get(&shard) else {
                problems.push(format!("{shown}: shard {shard} of part {part} is not built"));
                continue;
            };
            let path = dir.join(&info.file);
            match sha256_of(&path) {
                Ok(sha) if sha == info.sha256 => {
                    sources.insert(shard, (path, info.clone()));
                }
                Ok(_) => problems.push(format!("{}: checksum mismatch", path.display())),
                Err(e) => problems.push(e.to_string()),
            }
        }
        for shard in manifest.shards.keys().filter(|&&s| !part.owns(s)) {
            problems.push(format!("{shown}: holds shard {shard}, which is not part {part}'s"));
        }
    }
    problems.extend(roll.missing());
    if !problems.is_empty() {
        return Err(CacheError::Merge { problems });
    }
    std::fs::create_dir_all(out).map_err(io(out))?;
    // An empty manifest first: a merge stopped half-way leaves a cache that lists nothing.
    let mut manifest = Manifest { format: FORMAT, spec: spec.clone(), part: None, shards: BTreeMap::new() };
    write_manifest(out, &manifest)?;
    for (shard, (from, info)) in sources {
        let to = out.join(&info.file);
        let tmp = out.join(format!(".{}.tmp", info.file));
        std::fs::copy(&from, &tmp).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &to).map_err(io(&to))?;
        manifest.shards.insert(shard, info);
    }
    write_manifest(out, &manifest)?;
    Ok(manifest.shards.len())
}
