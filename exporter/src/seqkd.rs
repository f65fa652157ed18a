//! `exporter distill seqkd`: sequence-level knowledge distillation data (Kim & Rush 2016). The
//! teacher translates the training source side (beam search); the result is a corpus folder
//! whose train targets are the teacher's outputs and whose dev/test keep the human references,
//! so `exporter distill` trains on it like on any corpus (with `--no-kd` for pure seq-KD, or
//! word-level KD on top).
//!
//! Long: translations are appended chunk by chunk to `.seqkd/` inside `--out` with a progress
//! record, so a killed run resumes after the last finished chunk.
//!
//! Spread over processes or machines: `--shard I/N` translates the chunks c with c mod N = I into
//! `.seqkd/parts/I-of-N/` (resumable the same way) and records the part when it is complete;
//! `--merge` checks the parts (every part once, of one count, for the same teacher, corpus and
//! settings, each output's sha256 and line count), puts the chunks back in order and writes the
//! corpus — the bytes one process writes, since each chunk is translated alone either way.

use std::{collections::BTreeMap, io::Write, ops::Range, path::Path};

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};
use xlmc_corpus::{Manifest, Pair, SourceInfo, Split, Splits, sha256_file, split_paths, write_corpus};
use xlmc_decoding::{DecodeOptions, decode};

use xlmc_teacher_cache::{Part, PartRoll};

use crate::{cli::SeqKdArgs, model_dir, torch_device, train::progress_bar, translate::translate_lines};

const WORK_DIR: &str = ".seqkd";
const PROGRESS_FILE: &str = "progress.json";
const OUTPUTS_FILE: &str = "outputs.txt";
const PARTS_DIR: &str = "parts";
/// Written in a part's folder once all its chunks are translated.
const PART_FILE: &str = "part.json";

/// A finished part, as `--merge` checks it.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct PartRecord {
    key: String,
    part: Part,
    chunk: usize,
    lines: usize,
    sha256: String,
}

/// What has been translated so far, and for which inputs (a changed input restarts).
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Progress {
    key: String,
    done: usize,
    /// Bytes of `outputs.txt` that belong to the `done` lines.
    bytes: u64,
}

/// `n` of `total` indices spread evenly, in order (the split is ordered by document and
/// source, so its first `n` pairs would be one domain).
fn spread(total: usize, n: usize) -> Vec<usize> {
    (0..n.min(total)).map(|i| i * total / n.min(total).max(1)).collect()
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("{}", path.display()))?
        .lines()
        .map(str::to_owned)
        .collect())
}

pub fn run(args: &SeqKdArgs) -> anyhow::Result<String> {
    let Some(manifest) = Manifest::load_valid(&args.corpus) else {
        bail!("--corpus {}: no valid corpus (MANIFEST.json missing or changed)", args.corpus.display());
    };
    if Manifest::load_valid(&args.out).is_some() && !args.force {
        return Ok(format!("{}: sequence-level KD corpus complete and valid; nothing to do\n", args.out.display()));
    }
    let device = torch_device::select(args.device)?;
    let (teacher, tokenizer) = model_dir::load(&args.teacher, device).context("--teacher")?;
    let languages = (manifest.source_language.as_str(), manifest.target_language.as_str());
    let source_id = i64::from(tokenizer.language_id(languages.0)?);
    let target_id = i64::from(tokenizer.language_id(languages.1)?);
    let (train_src, train_tgt) = split_paths(&args.corpus, Split::Train, languages);
    let mut sources = read_lines(&train_src)?;
    let references = read_lines(&train_tgt)?;
    ensure!(sources.len() == references.len(), "{}: source and target line counts differ", args.corpus.display());
    if let Some(limit) = args.limit.filter(|&n| n < sources.len()) {
        let picked = spread(sources.len(), limit);
        sources = picked.iter().map(|&i| std::mem::take(&mut sources[i])).collect();
    }

    let work = args.out.join(WORK_DIR);
    std::fs::create_dir_all(&work).with_context(|| format!("--out {}", args.out.display()))?;
    let key = format!(
        "teacher={} corpus={} n={} spread beam={}",
        model_dir::weights_fingerprint(&args.teacher),
        sha256_file(&train_src).unwrap_or_default(),
        sources.len(),
        args.beam
    );
    let chunk = args.chunk as usize;
    let chunks: Vec<Range<usize>> =
        (0..sources.len()).step_by(chunk).map(|start| start..(start + chunk).min(sources.len())).collect();
    let outputs_path = work.join(OUTPUTS_FILE);
    if args.merge {
        merge_parts(&work, &key, chunk, &chunks, &outputs_path)?;
    } else {
        let (folder, mine) = match args.shard {
            None => (work.clone(), chunks.clone()),
            Some(part) => {
                let folder = work.join(PARTS_DIR).join(part.folder_name());
                let mine = chunks.iter().enumerate().filter(|(c, _)| part.owns(*c)).map(|(_, r)| r.clone()).collect();
                (folder, mine)
            }
        };
        std::fs::create_dir_all(&folder).with_context(|| format!("{}", folder.display()))?;
        let translate = |lines: &[&str]| -> anyhow::Result<Vec<String>> {
            let options = DecodeOptions { beam_size: args.beam, ..Default::default() };
            let mut translator = teacher.translator(source_id, target_id);
            translate_lines(&tokenizer, lines, args.batch_size, |batch| Ok(decode(&mut translator, batch, options)?))
        };
        let lines = translate_chunks(&folder, &key, &sources, &mine, translate)?;
        if let Some(part) = args.shard {
            let sha256 = sha256_file(&folder.join(OUTPUTS_FILE)).unwrap_or_default();
            let record = PartRecord { key, part, chunk, lines, sha256 };
            xlmc_atomic_file::write(&folder.join(PART_FILE), serde_json::to_string_pretty(&record)?.as_bytes())?;
            return Ok(format!(
                "{}: part {part} done, {lines} sentences; once every part is, run with --merge\n",
                folder.display()
            ));
        }
    }

    let outputs = read_lines(&outputs_path)?;
    ensure!(
        outputs.len() == sources.len(),
        "{}: {} lines for {} sources",
        outputs_path.display(),
        outputs.len(),
        sources.len()
    );
    let mut splits = Splits::default();
    let mut empty = 0;
    for (source, target) in sources.into_iter().zip(outputs) {
        if target.trim().is_empty() {
            empty += 1;
            continue;
        }
        splits.train.push(Pair { source, target, document: "seqkd".into() });
    }
    if splits.train.is_empty() {
        // Written anyway (a rerun must find the work done); `distill` refuses an empty train split.
        eprintln!(
            "warning: all {empty} teacher translations are empty (an untrained teacher?); the corpus has no training pairs"
        );
    }
    for split in [Split::Dev, Split::Test] {
        let (src, tgt) = split_paths(&args.corpus, split, languages);
        let pairs = read_lines(&src)?
            .into_iter()
            .zip(read_lines(&tgt)?)
            .map(|(source, target)| Pair { source, target, document: format!("{}:reference", split.name()) })
            .collect();
        match split {
            Split::Dev => splits.dev = pairs,
            _ => splits.test = pairs,
        }
    }
    let source_info = SourceInfo {
        name: "seqkd".into(),
        origin: vec![format!("teacher {}", args.teacher.display()), format!("corpus {}", args.corpus.display())],
        license: "that of the source corpus".into(),
        sha256: BTreeMap::from([("train source".to_owned(), sha256_file(&train_src).unwrap_or_default())]),
        pairs: splits.train.len() + empty,
        dropped: BTreeMap::from([("empty teacher output".to_owned(), empty)]),
    };
    let rule = format!(
        "train targets = teacher beam-{} translations; dev/test = the references of {}",
        args.beam,
        args.corpus.display()
    );
    write_corpus(&args.out, languages, &splits, vec![source_info], &rule)?;
    std::fs::remove_dir_all(&work).with_context(|| format!("{}", work.display()))?;
    Ok(format!(
        "{}: {} teacher translations (beam {}), {empty} empty left out; dev/test keep the references\n",
        args.out.display(),
        splits.train.len(),
        args.beam
    ))
}

/// Translates the lines of `chunks` (in order) into `folder/outputs.txt`, one chunk at a time
/// with a progress record after each, resuming after the last recorded chunk. Returns the lines.
fn translate_chunks(
    folder: &Path,
    key: &str,
    sources: &[String],
    chunks: &[Range<usize>],
    mut translate: impl FnMut(&[&str]) -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<usize> {
    let progress_path = folder.join(PROGRESS_FILE);
    let outputs_path = folder.join(OUTPUTS_FILE);
    let mut progress: Progress = std::fs::read_to_string(&progress_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(|p: &Progress| p.key == key)
        .unwrap_or(Progress { key: key.to_owned(), ..Default::default() });
    // Drop whatever a killed run wrote after its last progress record.
    let file = std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(&outputs_path)?;
    file.set_len(progress.bytes)?;
    drop(file);
    let total: usize = chunks.iter().map(|r| r.len()).sum();
    if progress.done > 0 {
        eprintln!("resuming after {} of {total} sentences", progress.done);
    }
    let bar = progress_bar(total as u64, "{pos}/{len} sentences  {per_sec} eta {eta}");
    bar.set_position(progress.done as u64);
    let mut offset = 0;
    for range in chunks {
        offset += range.len();
        if offset <= progress.done {
            continue; // recorded by an earlier run (records fall on chunk ends)
        }
        let lines: Vec<&str> = sources[range.clone()].iter().map(String::as_str).collect();
        let translated = translate(&lines)?;
        let mut out = std::fs::OpenOptions::new().append(true).open(&outputs_path)?;
        // One line per pair (translate_lines keeps decoded line breaks out of the text).
        let text: String = translated.iter().map(|t| format!("{t}\n")).collect();
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        progress.done = offset;
        progress.bytes += text.len() as u64;
        xlmc_atomic_file::write(&progress_path, serde_json::to_string(&progress)?.as_bytes())?;
        bar.set_position(offset as u64);
    }
    bar.finish();
    Ok(total)
}

/// Checks every part under `work/parts` and writes their outputs back in chunk order to `out`.
/// Every problem is named; with any, nothing is written.
fn merge_parts(work: &Path, key: &str, chunk: usize, chunks: &[Range<usize>], out: &Path) -> anyhow::Result<()> {
    let parts_dir = work.join(PARTS_DIR);
    let folders = xlmc_teacher_cache::part_folders(&parts_dir)
        .with_context(|| format!("{}: no parts translated here (run with --shard I/N first)", parts_dir.display()))?;
    let mut problems = Vec::new();
    let mut roll = PartRoll::default();
    let mut found: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for folder in &folders {
        let shown = folder.display();
        let record: Option<PartRecord> =
            std::fs::read_to_string(folder.join(PART_FILE)).ok().and_then(|t| serde_json::from_str(&t).ok());
        let Some(record) = record else {
            problems.push(format!("{shown}: not finished (no {PART_FILE})"));
            continue;
        };
        let part = record.part;
        if record.key != key || record.chunk != chunk {
            problems.push(format!("{shown}: part {part} was translated with another teacher, corpus or settings"));
            continue;
        }
        if let Err(problem) = roll.add(part, folder) {
            problems.push(problem);
            continue;
        }
        let outputs = folder.join(OUTPUTS_FILE);
        if sha256_file(&outputs).as_deref() != Some(record.sha256.as_str()) {
            problems.push(format!("{}: checksum mismatch", outputs.display()));
            continue;
        }
        let lines = read_lines(&outputs)?;
        let expected: usize = chunks.iter().enumerate().filter(|(c, _)| part.owns(*c)).map(|(_, r)| r.len()).sum();
        if lines.len() != expected || record.lines != expected {
            problems.push(format!("{}: {} lines, part {part} has {expected}", outputs.display(), lines.len()));
            continue;
        }
        found.insert(part.index, lines);
    }
    problems.extend(roll.missing());
    if roll.count().is_none() && problems.is_empty() {
        problems.push(format!("{}: no parts", parts_dir.display()));
    }
    if !problems.is_empty() {
        bail!("{}; nothing was merged", problems.join("; "));
    }
    let n = roll.count().expect("checked above");
    let mut next: Vec<std::vec::IntoIter<String>> =
        (0..n).map(|i| found.remove(&i).expect("checked").into_iter()).collect();
    let mut text = String::new();
    for (c, range) in chunks.iter().enumerate() {
        for _ in range.clone() {
            text.push_str(&next[c % n].next().expect("line counts checked"));
            text.push('\n');
        }
    }
    xlmc_atomic_file::write(out, text.as_bytes()).with_context(|| format!("{}", out.display()))?;
    eprintln!("merged {n} parts: {} sentences", chunks.iter().map(|r| r.len()).sum::<usize>());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn a_limit_takes_pairs_from_the_whole_split() {
        assert_eq!(spread(10, 5), [0, 2, 4, 6, 8]);
        assert_eq!(spread(7, 3), [0, 2, 4]);
        assert_eq!(spread(3, 5), [0, 1, 2]);
        assert_eq!(spread(114_225, 30_000).last(), Some(&114_221));
    }
}
