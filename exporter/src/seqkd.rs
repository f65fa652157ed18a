//! `exporter distill seqkd`: sequence-level knowledge distillation data (Kim & Rush 2016). The
//! teacher translates the training source side (beam search); the result is a corpus folder
//! whose train targets are the teacher's outputs and whose dev/test keep the human references,
//! so `exporter distill` trains on it like on any corpus (with `--no-kd` for pure seq-KD, or
//! word-level KD on top).
//!
//! Long: translations are appended chunk by chunk to `.seqkd/` inside `--out` with a progress
//! record, so a killed run resumes after the last finished chunk.

use std::{collections::BTreeMap, io::Write, path::Path};

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};
use xlmc_corpus::{Manifest, Pair, SourceInfo, Split, Splits, sha256_file, split_paths, write_corpus};
use xlmc_decoding::{DecodeOptions, decode};

use crate::{cli::SeqKdArgs, model_dir, torch_device, train::progress_bar, translate::translate_lines};

const WORK_DIR: &str = ".seqkd";
const PROGRESS_FILE: &str = "progress.json";

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
    let progress_path = work.join(PROGRESS_FILE);
    let outputs_path = work.join("outputs.txt");
    let mut progress: Progress = std::fs::read_to_string(&progress_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(|p: &Progress| p.key == key)
        .unwrap_or(Progress { key: key.clone(), ..Default::default() });
    // Drop whatever a killed run wrote after its last progress record.
    let file = std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(&outputs_path)?;
    file.set_len(progress.bytes)?;
    drop(file);

    if progress.done > 0 {
        eprintln!("resuming after {} of {} sentences", progress.done, sources.len());
    }
    let options = DecodeOptions { beam_size: args.beam, ..Default::default() };
    let mut translator = teacher.translator(source_id, target_id);
    let bar = progress_bar(sources.len() as u64, "{pos}/{len} sentences  {per_sec} eta {eta}");
    bar.set_position(progress.done as u64);
    while progress.done < sources.len() {
        let end = (progress.done + args.chunk as usize).min(sources.len());
        let lines: Vec<&str> = sources[progress.done..end].iter().map(String::as_str).collect();
        let translated = translate_lines(&tokenizer, &lines, args.batch_size, |sources| {
            Ok(decode(&mut translator, sources, options)?)
        })?;
        let mut out = std::fs::OpenOptions::new().append(true).open(&outputs_path)?;
        // One line per pair (translate_lines keeps decoded line breaks out of the text).
        let text: String = translated.iter().map(|t| format!("{t}\n")).collect();
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        progress.done = end;
        progress.bytes += text.len() as u64;
        xlmc_atomic_file::write(&progress_path, serde_json::to_string(&progress)?.as_bytes())?;
        bar.set_position(end as u64);
    }
    bar.finish();

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
