//! One model's measurements for `exporter report`, run in a child process (`exporter
//! report-model`) so that its peak memory is its own: test-set BLEU/chrF, latency at batch 1,
//! throughput at larger batches, parameters, bytes on disk.

use std::{path::Path, time::Instant};

use anyhow::{Context, ensure};
use serde::{Deserialize, Serialize};
use xlmc_decoding::{DecodeOptions, Hypothesis};
use xlmc_runtime::{OrtModel, SessionOptions};
use xlmc_scoring::{BLEU_SIGNATURE, CHRF_SIGNATURE, corpus_bleu, corpus_chrf};
use xlmc_tokenizer::Tokenizer;

use crate::{
    cli::{Device, MeasureOptions},
    export::open_bundle,
    model_dir,
    report_speed::{SpeedRound, Timing},
    torch_device,
    translate::language_ids,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Throughput {
    pub batch: usize,
    pub tokens_per_second: f64,
    pub sentences_per_second: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub name: String,
    pub path: String,
    /// `libtorch` (a model folder) or `onnxruntime` (a bundle).
    pub backend: String,
    pub architecture: String,
    /// fp32 for model folders; the bundle's export precision.
    pub precision: String,
    /// Stored weight values (a bundle: every initializer of its graphs).
    pub parameters: u64,
    pub bytes: u64,
    /// sha256 of tokenizer.json: models compared must share the BPE vocabulary.
    pub vocabulary: String,
    pub sentences: usize,
    pub bleu: f64,
    pub chrf: f64,
    pub bleu_signature: String,
    pub chrf_signature: String,
    /// Batch-1 latency per sentence, milliseconds, sorted (every round's).
    pub latencies_ms: Vec<f64>,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub latency_p99_ms: f64,
    /// Median over `rounds` per batch size.
    pub throughput: Vec<Throughput>,
    /// Each timing round's batch-1 p50 and throughput (the latencies above pool all rounds).
    #[serde(default)]
    pub rounds: Vec<SpeedRound>,
    pub peak_rss_mib: f64,
}

type Decoder<'a> = Box<dyn FnMut(&[Vec<u32>]) -> anyhow::Result<Vec<Hypothesis>> + 'a>;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Every initializer's element count in a bundle's graphs.
fn stored_weights(dir: &Path) -> anyhow::Result<u64> {
    let graphs = [xlmc_runtime::ENCODER_FILE, xlmc_runtime::DECODER_FILE];
    Ok(graphs.iter().map(|file| xlmc_onnx::stored_values(&dir.join(file))).sum::<Result<u64, _>>()?)
}

/// A model opened for measuring: its decoder and what the report says about it.
struct Opened<'a> {
    decode: Decoder<'a>,
    tokenizer: Tokenizer,
    backend: &'static str,
    architecture: String,
    precision: String,
    parameters: u64,
}

fn open(path: &Path, args: &MeasureOptions) -> anyhow::Result<Opened<'static>> {
    ensure!(path.is_dir(), "{}: no such model folder or bundle", path.display());
    if let Some(threads) = args.threads {
        tch::set_num_threads(threads as i32);
    }
    let options = DecodeOptions { beam_size: args.beam, ..Default::default() };
    if path.join(xlmc_bundle::MANIFEST_FILE).is_file() {
        let (bundle, tokenizer) = open_bundle(path)?;
        let session = SessionOptions { intra_threads: args.threads.unwrap_or(1), cuda: args.device == Device::Cuda };
        let mut ort = OrtModel::load(&bundle, &session).with_context(|| path.display().to_string())?;
        let langs = language_ids(&tokenizer, Some(&args.source_lang), Some(&args.target_lang))?;
        Ok(Opened {
            decode: Box::new(move |chunk| Ok(ort.decode(chunk, langs, options)?)),
            tokenizer,
            backend: "onnxruntime",
            architecture: bundle.manifest.architecture.to_string(),
            precision: bundle.manifest.export.precision.clone(),
            parameters: stored_weights(path)?,
        })
    } else {
        let (torch, tokenizer) = model_dir::load_any(path, torch_device::select(args.device)?)?;
        let langs = language_ids(&tokenizer, Some(&args.source_lang), Some(&args.target_lang))?;
        let (architecture, parameters) = (torch.architecture().to_string(), torch.parameters() as u64);
        Ok(Opened {
            decode: Box::new(move |chunk| Ok(torch.decode(chunk, langs, options)?)),
            tokenizer,
            backend: "libtorch",
            architecture,
            precision: "fp32".to_owned(),
            parameters,
        })
    }
}

/// The first `--sentences` lines of the test set's side `lang`.
fn test_lines(args: &MeasureOptions, lang: &str) -> anyhow::Result<Vec<String>> {
    let file = args.test.with_extension(lang);
    let text = std::fs::read_to_string(&file).with_context(|| format!("--test {}", file.display()))?;
    Ok(text.lines().take(args.sentences.unwrap_or(usize::MAX)).map(str::to_owned).collect())
}

/// One timing round: `--latency-sentences` decoded one by one, then the first
/// `--speed-sentences` at each of `--batch-sizes`.
fn time(decode: &mut Decoder, encoded: &[Vec<u32>], args: &MeasureOptions) -> anyhow::Result<Timing> {
    let mut latencies_ms = Vec::new();
    for source in encoded.iter().take(args.latency_sentences) {
        let started = Instant::now();
        decode(std::slice::from_ref(source))?;
        latencies_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies_ms.sort_by(f64::total_cmp);
    let mut throughput = Vec::new();
    let speed_set = &encoded[..encoded.len().min(args.speed_sentences)];
    for &batch in &args.batch_sizes {
        let started = Instant::now();
        let mut generated = 0usize;
        for chunk in speed_set.chunks(batch.max(1)) {
            generated += decode(chunk)?.iter().map(|h| h.tokens.len() + 1).sum::<usize>();
        }
        let seconds = started.elapsed().as_secs_f64();
        throughput.push(Throughput {
            batch,
            tokens_per_second: generated as f64 / seconds,
            sentences_per_second: speed_set.len() as f64 / seconds,
        });
    }
    Ok(Timing { latencies_ms, throughput })
}

fn encode_sources(tokenizer: &Tokenizer, sources: &[String]) -> anyhow::Result<Vec<Vec<u32>>> {
    let lines: Vec<&str> = sources.iter().map(String::as_str).collect();
    Ok(tokenizer.encode_batch(&lines)?.into_iter().filter(|s| !s.is_empty()).collect())
}

/// Another timing round of a model that `run` measured (`exporter report-model --timing-only`).
pub fn run_timing(path: &Path, args: &MeasureOptions) -> anyhow::Result<Timing> {
    let mut model = open(path, args)?;
    let encoded = encode_sources(&model.tokenizer, &test_lines(args, &args.source_lang)?)?;
    time(&mut model.decode, &encoded, args)
}

/// Test-set scores, sizes and the first timing round.
pub fn run(path: &Path, args: &MeasureOptions) -> anyhow::Result<Measurement> {
    let (sources, references) = (test_lines(args, &args.source_lang)?, test_lines(args, &args.target_lang)?);
    ensure!(sources.len() == references.len(), "--test {}: source and target differ in length", args.test.display());
    let mut model = open(path, args)?;
    // `runs/NAME/model` (what train/distill write) is called NAME.
    let named = if path.file_name().is_some_and(|n| n == "model") { path.parent().unwrap_or(path) } else { path };
    let name = named.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let vocabulary = xlmc_atomic_file::sha256_file(&path.join("tokenizer.json")).unwrap_or_default();

    let lines: Vec<&str> = sources.iter().map(String::as_str).collect();
    let decode = &mut model.decode;
    let hypotheses =
        crate::translate::translate_lines(&model.tokenizer, &lines, args.batch_size, |chunk| decode(chunk))?;
    let bleu = corpus_bleu(&hypotheses, &references)?.score;
    let chrf = corpus_chrf(&hypotheses, &references)?.score;

    let timing = time(&mut model.decode, &encode_sources(&model.tokenizer, &sources)?, args)?;
    let mut measurement = Measurement {
        name,
        path: path.display().to_string(),
        backend: model.backend.to_owned(),
        architecture: model.architecture,
        precision: model.precision,
        parameters: model.parameters,
        bytes: xlmc_bundle::folder_bytes(path),
        vocabulary,
        sentences: sources.len(),
        bleu,
        chrf,
        bleu_signature: BLEU_SIGNATURE.to_owned(),
        chrf_signature: CHRF_SIGNATURE.to_owned(),
        latencies_ms: Vec::new(),
        latency_p50_ms: f64::NAN,
        latency_p95_ms: f64::NAN,
        latency_p99_ms: f64::NAN,
        throughput: Vec::new(),
        rounds: Vec::new(),
        peak_rss_mib: peak_rss_mib(),
    };
    measurement.add_round(timing);
    Ok(measurement)
}
