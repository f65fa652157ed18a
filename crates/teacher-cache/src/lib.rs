//! The teacher's top-k log-probabilities for every target token of a training set, cached on
//! disk so offline distillation reads them instead of running the teacher.
//!
//! A cache folder holds `cache.json` and shards `shard-00000.bin`, … of `shard_pairs` consecutive
//! training pairs each. `cache.json` names what the cache was built from (`key`: teacher weights,
//! corpus, tokenisation), `k`, and each finished shard with its sha256; it is rewritten
//! atomically after every shard, so a killed build resumes at the first missing shard, and a
//! shard whose checksum does not match is rebuilt, never read. Shards are memory-mapped.
//!
//! Shard layout (little-endian): `XLMCKD01`, k (u32), pairs (u32), first pair (u64); per pair
//! its hash (u64) and token count (u32, u32 padding); then every token's k ids (u32) for the
//! whole shard; then every token's k log-probabilities (f32).

use std::{
    collections::BTreeMap,
    fs::File,
    io::Read,
    path::{Path, PathBuf},
};

use memmap2::Mmap;
use sha2::{Digest, Sha256};

mod parts;
pub use parts::{Part, PartRoll, merge, part_folders};

const MAGIC: &[u8; 8] = b"XLMCKD01";
const HEADER: usize = 24;
const INDEX_ENTRY: usize = 16;
pub const MANIFEST_FILE: &str = "cache.json";
pub(crate) const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
    #[error("pair {index}: {detail}")]
    Pair { index: usize, detail: String },
    /// Parts that cannot be merged, every problem named; nothing was merged.
    #[error("{}; nothing was merged", problems.join("; "))]
    Merge { problems: Vec<String> },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io { path: path.to_owned(), source }
}

/// What a cache must match to be used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheSpec {
    /// Identifies the teacher and the training pairs (hashes), chosen by the builder.
    pub key: String,
    pub k: usize,
    pub pairs: usize,
    pub shard_pairs: usize,
}

impl CacheSpec {
    pub fn shards(&self) -> usize {
        self.pairs.div_ceil(self.shard_pairs.max(1))
    }

    /// Pair indices of shard `shard`.
    pub fn shard_range(&self, shard: usize) -> std::ops::Range<usize> {
        let start = shard * self.shard_pairs;
        start..(start + self.shard_pairs).min(self.pairs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Manifest {
    pub(crate) format: u32,
    pub(crate) spec: CacheSpec,
    /// Set in a part's folder: the shards it builds are this part's ([`Part::owns`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) part: Option<Part>,
    /// Finished shards by index.
    pub(crate) shards: BTreeMap<usize, ShardInfo>,
}

/// One pair's cached distribution: `tokens × k` ids and log-probabilities, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct PairEntry {
    pub pair_hash: u64,
    pub tokens: usize,
    pub ids: Vec<u32>,
    pub log_probs: Vec<f32>,
}

/// FNV-1a over a pair's token ids: ties a cached entry to the exact pair it was computed for.
pub fn pair_hash(source: &[u32], target: &[u32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for value in source.iter().chain(&[u32::MAX]).chain(target) {
        for byte in value.to_le_bytes() {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

pub(crate) fn shard_file(index: usize) -> String {
    format!("shard-{index:05}.bin")
}

pub(crate) fn sha256_of(path: &Path) -> Result<String, CacheError> {
    let mut file = File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

pub(crate) fn read_manifest(dir: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

pub(crate) fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), CacheError> {
    let path = dir.join(MANIFEST_FILE);
    let json = serde_json::to_string_pretty(manifest).expect("manifest serialises");
    xlmc_atomic_file::write(&path, json.as_bytes()).map_err(io(&path))
}

/// Which shards must be (re)built for `spec` — of the whole cache, or of one `part` of it (a
/// folder of its own, merged later by [`merge`]): all of them for a folder of another spec or
/// part, else those missing or failing their checksum. Shards of a stale folder are forgotten.
pub fn shards_to_build(dir: &Path, spec: &CacheSpec, part: Option<Part>) -> Result<Vec<usize>, CacheError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut manifest = match read_manifest(dir) {
        Some(m) if m.format == FORMAT && &m.spec == spec && m.part == part => m,
        _ => {
            let fresh = Manifest { format: FORMAT, spec: spec.clone(), part, shards: BTreeMap::new() };
            write_manifest(dir, &fresh)?;
            fresh
        }
    };
    let mut todo = Vec::new();
    for shard in (0..spec.shards()).filter(|&shard| part.is_none_or(|p| p.owns(shard))) {
        let intact = match manifest.shards.get(&shard) {
            Some(info) => {
                let path = dir.join(&info.file);
                path.exists() && sha256_of(&path)? == info.sha256
            }
            None => false,
        };
        if !intact {
            manifest.shards.remove(&shard);
            todo.push(shard);
        }
    }
    write_manifest(dir, &manifest)?;
    Ok(todo)
}

/// Writes shard `shard` (its pairs' entries in order), then records it in `cache.json`.
pub fn write_shard(dir: &Path, spec: &CacheSpec, shard: usize, entries: &[PairEntry]) -> Result<(), CacheError> {
    let range = spec.shard_range(shard);
    let name = shard_file(shard);
    let path = dir.join(&name);
    if entries.len() != range.len() {
        return Err(CacheError::Invalid {
            path,
            detail: format!("{} entries for {} pairs", entries.len(), range.len()),
        });
    }
    let tokens: usize = entries.iter().map(|e| e.tokens).sum();
    let mut bytes = Vec::with_capacity(HEADER + INDEX_ENTRY * entries.len() + tokens * spec.k * 8);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(spec.k as u32).to_le_bytes());
    bytes.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&(range.start as u64).to_le_bytes());
    for entry in entries {
        if entry.ids.len() != entry.tokens * spec.k || entry.log_probs.len() != entry.tokens * spec.k {
            return Err(CacheError::Invalid { path, detail: "an entry's arrays are not tokens × k".into() });
        }
        bytes.extend_from_slice(&entry.pair_hash.to_le_bytes());
        bytes.extend_from_slice(&(entry.tokens as u32).to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
    }
    for entry in entries {
        entry.ids.iter().for_each(|id| bytes.extend_from_slice(&id.to_le_bytes()));
    }
    for entry in entries {
        entry.log_probs.iter().for_each(|p| bytes.extend_from_slice(&p.to_le_bytes()));
    }
    xlmc_atomic_file::write(&path, &bytes).map_err(io(&path))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let mut manifest = read_manifest(dir).filter(|m| &m.spec == spec).ok_or_else(|| CacheError::Invalid {
        path: dir.join(MANIFEST_FILE),
        detail: "changed during the build".into(),
    })?;
    manifest.shards.insert(shard, ShardInfo { file: name, sha256 });
    write_manifest(dir, &manifest)
}

/// A complete, verified cache, memory-mapped.
#[derive(Debug)]
pub struct TeacherCache {
    spec: CacheSpec,
    shards: Vec<Shard>,
}

#[derive(Debug)]
struct Shard {
    map: Mmap,
    /// Per pair: (hash, tokens, first token in the shard).
    index: Vec<(u64, usize, usize)>,
    tokens: usize,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl TeacherCache {
    /// Opens a cache built for `spec`; every shard must be present and pass its checksum.
    pub fn open(dir: &Path, spec: &CacheSpec) -> Result<Self, CacheError> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest = read_manifest(dir).ok_or_else(|| CacheError::Invalid {
            path: manifest_path.clone(),
            detail: "missing or unreadable".into(),
        })?;
        if &manifest.spec != spec {
            return Err(CacheError::Invalid {
                path: manifest_path,
                detail: format!("built for {:?}, not {spec:?}", manifest.spec),
            });
        }
        let mut shards = Vec::with_capacity(spec.shards());
        for shard in 0..spec.shards() {
            let info = manifest.shards.get(&shard).ok_or_else(|| CacheError::Invalid {
                path: dir.join(shard_file(shard)),
                detail: "not built yet (run `exporter distill cache`)".into(),
            })?;
            let path = dir.join(&info.file);
            if sha256_of(&path)? != info.sha256 {
                return Err(CacheError::Invalid {
                    path,
                    detail: "checksum mismatch: rebuild it with `exporter distill cache`".into(),
                });
            }
            shards.push(Self::map_shard(&path, spec, shard)?);
        }
        Ok(Self { spec: spec.clone(), shards })
    }

    #[allow(unsafe_code)]
    fn map_shard(path: &Path, spec: &CacheSpec, shard: usize) -> Result<Shard, CacheError> {
        let file = File::open(path).map_err(io(path))?;
        // SAFETY: shard files are written once (temp + rename) and never modified in place; the
        // checksum was verified just before mapping, and every read below is bounds-checked.
        let map = unsafe { Mmap::map(&file) }.map_err(io(path))?;
        let invalid = |detail: &str| CacheError::Invalid { path: path.to_owned(), detail: detail.to_owned() };
        if map.len() < HEADER || &map[..8] != MAGIC {
            return Err(invalid("not a teacher-cache shard"));
        }
        let range = spec.shard_range(shard);
        let (k, count, first) = (u32_at(&map, 8) as usize, u32_at(&map, 12) as usize, u64_at(&map, 16) as usize);
        if k != spec.k || count != range.len() || first != range.start {
            return Err(invalid("header does not match cache.json"));
        }
        if map.len() < HEADER + INDEX_ENTRY * count {
            return Err(invalid("truncated index"));
        }
        let mut index = Vec::with_capacity(count);
        let mut tokens = 0;
        for i in 0..count {
            let at = HEADER + INDEX_ENTRY * i;
            let n = u32_at(&map, at + 8) as usize;
            index.push((u64_at(&map, at), n, tokens));
            tokens += n;
        }
        if map.len() != HEADER + INDEX_ENTRY * count + tokens * k * 8 {
            return Err(invalid("size does not match its index"));
        }
        Ok(Shard { map, index, tokens })
    }

    pub fn spec(&self) -> &CacheSpec {
        &self.spec
    }

    /// Pair `index`'s entry; `expected_hash` (from [`pair_hash`]) must match the cached one.
    pub fn pair(&self, index: usize, expected_hash: u64) -> Result<PairEntry, CacheError> {
        let error = |detail: String| CacheError::Pair { index, detail };
        if index >= self.spec.pairs {
            return Err(error(format!("beyond the cache's {} pairs", self.spec.pairs)));
        }
        let shard = &self.shards[index / self.spec.shard_pairs];
        let (pair_hash, tokens, first_token) = shard.index[index % self.spec.shard_pairs];
        if pair_hash != expected_hash {
            return Err(error("cached for a different pair (corpus or tokenizer changed?)".into()));
        }
        let k = self.spec.k;
        let ids_at = HEADER + INDEX_ENTRY * shard.index.len() + first_token * k * 4;
        let probs_at = HEADER + INDEX_ENTRY * shard.index.len() + shard.tokens * k * 4 + first_token * k * 4;
        let n = tokens * k;
        let ids = (0..n).map(|i| u32_at(&shard.map, ids_at + 4 * i)).collect();
        let log_probs = (0..n).map(|i| f32::from_bits(u32_at(&shard.map, probs_at + 4 * i))).collect();
        Ok(PairEntry { pair_hash, tokens, ids, log_probs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(spec: &CacheSpec, shard: usize) -> Vec<PairEntry> {
        spec.shard_range(shard)
            .map(|i| {
                let tokens = 1 + i % 4;
                let n = tokens * spec.k;
                PairEntry {
                    pair_hash: pair_hash(&[i as u32], &[7]),
                    tokens,
                    ids: (0..n).map(|j| (i * 100 + j) as u32).collect(),
                    log_probs: (0..n).map(|j| -(j as f32) / 3.0 - i as f32).collect(),
                }
            })
            .collect()
    }

    #[test]
    fn shards_round_trip_resume_and_corruption_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let spec = CacheSpec { key: "teacher-a".into(), k: 3, pairs: 10, shard_pairs: 4 };
        assert_eq!(shards_to_build(dir.path(), &spec, None).unwrap(), [0, 1, 2]);
        write_shard(dir.path(), &spec, 0, &entries(&spec, 0)).unwrap();
        // A killed build resumes where it stopped; opening before it is complete is refused.
        assert_eq!(shards_to_build(dir.path(), &spec, None).unwrap(), [1, 2]);
        assert!(TeacherCache::open(dir.path(), &spec).unwrap_err().to_string().contains("shard-00001.bin"));
        for shard in [1, 2] {
            write_shard(dir.path(), &spec, shard, &entries(&spec, shard)).unwrap();
        }
        let cache = TeacherCache::open(dir.path(), &spec).unwrap();
        for shard in 0..3 {
            for (i, expected) in spec.shard_range(shard).zip(entries(&spec, shard)) {
                assert_eq!(cache.pair(i, expected.pair_hash).unwrap(), expected);
            }
        }
        assert!(cache.pair(3, 12345).unwrap_err().to_string().contains("different pair"));
        drop(cache);

        // One flipped byte: that shard fails its checksum and only it is rebuilt.
        let path = dir.path().join("shard-00001.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(TeacherCache::open(dir.path(), &spec).unwrap_err().to_string().contains("checksum"));
        assert_eq!(shards_to_build(dir.path(), &spec, None).unwrap(), [1]);

        // Another teacher: everything is rebuilt.
        let other = CacheSpec { key: "teacher-b".into(), ..spec };
        assert_eq!(shards_to_build(dir.path(), &other, None).unwrap(), [0, 1, 2]);
    }

    /// Builds `part` of `spec` into `dir` the way a worker does.
    fn build_part(dir: &Path, spec: &CacheSpec, part: Part) {
        for shard in shards_to_build(dir, spec, Some(part)).unwrap() {
            assert!(part.owns(shard));
            write_shard(dir, spec, shard, &entries(spec, shard)).unwrap();
        }
    }

    fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
            .collect()
    }

    #[test]
    fn three_parts_merge_into_the_bytes_one_process_writes_and_bad_parts_are_named() {
        let root = tempfile::tempdir().unwrap();
        let spec = CacheSpec { key: "teacher-a".into(), k: 2, pairs: 23, shard_pairs: 3 }; // 8 shards
        let whole = root.path().join("whole");
        for shard in shards_to_build(&whole, &spec, None).unwrap() {
            write_shard(&whole, &spec, shard, &entries(&spec, shard)).unwrap();
        }
        let parts: Vec<PathBuf> = (0..3).map(|i| root.path().join(format!("{i}-of-3"))).collect();
        for (index, dir) in parts.iter().enumerate() {
            build_part(dir, &spec, Part { index, count: 3 });
        }
        assert_eq!(files(&parts[1]).keys().filter(|n| n.ends_with(".bin")).count(), 3, "shards 1, 4, 7");

        // Each failure is named, and nothing is written.
        let out = root.path().join("merged");
        let check = |parts: &[PathBuf], expected: &str| {
            let err = merge(parts, &out, &spec).unwrap_err().to_string();
            assert!(err.contains(expected) && err.ends_with("nothing was merged"), "{expected} not in {err}");
            assert!(!out.exists(), "{err}");
        };
        check(&parts[..2], "part 2/3 is missing");
        check(&[parts[0].clone(), parts[1].clone(), parts[1].clone(), parts[2].clone()], "part 1/3 twice");
        check(&[parts[0].clone(), parts[1].clone(), whole.clone()], "a whole cache, not a part");
        let other = CacheSpec { key: "teacher-b".into(), ..spec.clone() };
        let stale = root.path().join("stale");
        build_part(&stale, &other, Part { index: 2, count: 3 });
        check(&[parts[0].clone(), parts[1].clone(), stale], "built for another teacher");
        let four = root.path().join("3-of-4");
        build_part(&four, &spec, Part { index: 3, count: 4 });
        check(&[parts[0].clone(), parts[1].clone(), parts[2].clone(), four], "part 3/4, but other parts are of 3");
        let shard = parts[2].join("shard-00005.bin");
        let good = std::fs::read(&shard).unwrap();
        let mut bad = good.clone();
        bad[30] ^= 1;
        std::fs::write(&shard, bad).unwrap();
        check(&parts, "shard-00005.bin: checksum mismatch");
        std::fs::write(&shard, &good).unwrap();

        assert_eq!(merge(&parts, &out, &spec).unwrap(), 8);
        assert_eq!(files(&out), files(&whole), "byte for byte, the manifest included");
        TeacherCache::open(&out, &spec).unwrap();
        assert_eq!("2/3".parse::<Part>().unwrap(), Part { index: 2, count: 3 });
        for bad in ["3/3", "1/0", "x/2", "2"] {
            assert!(bad.parse::<Part>().unwrap_err().contains("INDEX/COUNT"), "{bad}");
        }
    }
}
