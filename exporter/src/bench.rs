//! `exporter bench --model DIR --bundle DIR… --input FILE [--reference FILE]`: greedy (or beam)
//! decoding throughput at several batch sizes, libtorch (the model folder) and ONNX Runtime (one
//! row per bundle: fp32, fp16, int8 exports) side by side, as Markdown tables; with a reference,
//! each backend's BLEU/chrF too. A benchmark, not a test: speeds depend on the machine, so they
//! are printed with the thread counts and never asserted.

use std::time::Instant;

use anyhow::{Context, ensure};
use xlmc_decoding::{DecodeOptions, Hypothesis};
use xlmc_runtime::{OrtModel, SessionOptions};
use xlmc_scoring::{corpus_bleu, corpus_chrf};

use crate::{
    cli::{BenchArgs, Device},
    export::open_bundle,
    model_dir, torch_device,
};

type DecodeChunk<'a> = Box<dyn FnMut(&[Vec<u32>]) -> anyhow::Result<Vec<Hypothesis>> + 'a>;

/// One timed backend: its label, graph size, and decoder.
struct Backend<'a> {
    label: String,
    mib: Option<f64>,
    decode: DecodeChunk<'a>,
    /// Outputs of the first batch size, for the quality table.
    outputs: Vec<Vec<u32>>,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    ensure!(args.model.is_some() || !args.bundle.is_empty(), "--model or --bundle (or both) is required");
    if let Some(threads) = args.threads {
        tch::set_num_threads(threads as i32);
    }
    let ort_threads = args.threads.unwrap_or(1);
    let options = DecodeOptions { beam_size: args.beam, ..Default::default() };
    let torch = match &args.model {
        Some(dir) => Some(model_dir::load_any(dir, torch_device::select(args.device)?).context("--model")?),
        None => None,
    };
    let session = SessionOptions { intra_threads: ort_threads, cuda: args.device == Device::Cuda };
    let mut bundles = Vec::new();
    for dir in &args.bundle {
        let (bundle, tokenizer) = open_bundle(dir)?;
        let model = OrtModel::load(&bundle, &session).with_context(|| format!("--bundle {}", dir.display()))?;
        let graph_bytes: u64 =
            bundle.manifest.files.iter().filter(|(name, _)| name.ends_with(".onnx")).map(|(_, f)| f.bytes).sum();
        let label = format!("onnxruntime {}", bundle.manifest.export.precision);
        bundles.push((label, graph_bytes, model, tokenizer));
    }
    let tokenizer = match (&torch, bundles.first()) {
        (Some((_, tokenizer)), _) | (None, Some((_, _, _, tokenizer))) => tokenizer.clone(),
        (None, None) => unreachable!("checked above"),
    };

    let text = std::fs::read_to_string(&args.input).with_context(|| format!("--input {}", args.input.display()))?;
    let reference = match &args.reference {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("--reference {}", path.display()))?;
            Some(text.lines().map(str::to_owned).collect::<Vec<String>>())
        }
        None => None,
    };
    // Sentence i of the benchmark is input line `kept[i]` (empty lines are skipped).
    let kept: Vec<usize> =
        text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, _)| i).take(args.sentences).collect();
    let all_lines: Vec<&str> = text.lines().collect();
    if let Some(reference) = &reference {
        ensure!(
            reference.len() == all_lines.len(),
            "--reference has {} lines but --input has {}: they must be parallel",
            reference.len(),
            all_lines.len()
        );
    }
    let lines: Vec<&str> = kept.iter().map(|&i| all_lines[i]).collect();
    let sources = tokenizer.encode_batch(&lines)?;
    let source_tokens: usize = sources.iter().map(Vec::len).sum();
    println!(
        "decoding {} sentences ({source_tokens} source tokens), beam {}, device {:?}; threads: libtorch {}, ONNX Runtime {ort_threads}\n",
        sources.len(),
        args.beam,
        args.device,
        tch::get_num_threads()
    );

    let mut backends: Vec<Backend> = Vec::new();
    if let Some((model, _)) = &torch {
        backends.push(Backend {
            label: "libtorch".into(),
            mib: None,
            decode: Box::new(move |chunk| Ok(model.decode(chunk, (0, 1), options)?)),
            outputs: Vec::new(),
        });
    }
    for (label, bytes, mut model, _) in bundles {
        backends.push(Backend {
            label,
            mib: Some(bytes as f64 / (1024.0 * 1024.0)),
            decode: Box::new(move |chunk| Ok(model.decode(chunk, (0, 1), options)?)),
            outputs: Vec::new(),
        });
    }

    println!("| backend | graphs MiB | batch | generated | seconds | tokens/s | sentences/s |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (round, &batch) in args.batch_sizes.iter().enumerate() {
        for backend in backends.iter_mut() {
            let started = Instant::now();
            let mut outputs = Vec::with_capacity(sources.len());
            for chunk in sources.chunks(batch.max(1)) {
                outputs.extend((backend.decode)(chunk)?.into_iter().map(|h| h.tokens));
            }
            let seconds = started.elapsed().as_secs_f64();
            // Each sentence also generated its </s>.
            let generated: usize = outputs.iter().map(|t| t.len() + 1).sum();
            let mib = backend.mib.map_or_else(|| "—".to_owned(), |m| format!("{m:.1}"));
            println!(
                "| {} | {mib} | {batch} | {generated} | {seconds:.2} | {:.1} | {:.2} |",
                backend.label,
                generated as f64 / seconds,
                sources.len() as f64 / seconds
            );
            if round == 0 {
                backend.outputs = outputs;
            }
        }
    }

    let Some(reference) = reference else { return Ok(()) };
    let references: Vec<&str> = kept.iter().map(|&i| reference[i].as_str()).collect();
    println!("\n| backend | BLEU | chrF | outputs equal to {}'s |", backends[0].label);
    println!("| --- | ---: | ---: | ---: |");
    let first = backends[0].outputs.clone();
    for backend in &backends {
        let hypotheses =
            backend.outputs.iter().map(|tokens| tokenizer.decode(tokens)).collect::<Result<Vec<String>, _>>()?;
        let same = backend.outputs.iter().zip(&first).filter(|(a, b)| a == b).count();
        println!(
            "| {} | {:.2} | {:.2} | {same}/{} |",
            backend.label,
            corpus_bleu(&hypotheses, &references)?.score,
            corpus_chrf(&hypotheses, &references)?.score,
            first.len()
        );
    }
    Ok(())
}
