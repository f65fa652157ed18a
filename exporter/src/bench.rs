//! `exporter bench --model DIR [--bundle DIR] --input FILE`: greedy (or beam) decoding throughput
//! at several batch sizes, libtorch (the model folder) and ONNX Runtime (its bundle) side by side,
//! as a table. A benchmark, not a test: numbers depend on the machine, so they are printed with
//! the thread counts and never asserted.

use std::time::Instant;

use anyhow::{Context, ensure};
use xlmc_decoding::{DecodeOptions, Hypothesis};
use xlmc_runtime::{OrtModel, SessionOptions};

use crate::{
    cli::{BenchArgs, Device},
    export::open_bundle,
    model_dir, torch_device,
};

type DecodeChunk<'a> = Box<dyn FnMut(&[Vec<u32>]) -> anyhow::Result<Vec<Hypothesis>> + 'a>;

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    ensure!(args.model.is_some() || args.bundle.is_some(), "--model or --bundle (or both) is required");
    if let Some(threads) = args.threads {
        tch::set_num_threads(threads as i32);
    }
    let ort_threads = args.threads.unwrap_or(1);
    let options = DecodeOptions { beam_size: args.beam, ..Default::default() };
    let torch = match &args.model {
        Some(dir) => Some(model_dir::load_any(dir, torch_device::select(args.device)?)?),
        None => None,
    };
    let ort = match &args.bundle {
        Some(dir) => {
            let (bundle, tokenizer) = open_bundle(dir)?;
            let model = OrtModel::load(
                &bundle,
                &SessionOptions { intra_threads: ort_threads, cuda: args.device == Device::Cuda },
            )
            .with_context(|| format!("--bundle {}", dir.display()))?;
            Some((model, tokenizer))
        }
        None => None,
    };
    let tokenizer = torch.as_ref().map(|(_, t)| t).or(ort.as_ref().map(|(_, t)| t)).expect("one is present").clone();

    let text = std::fs::read_to_string(&args.input).with_context(|| format!("--input {}", args.input.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(args.sentences).collect();
    let sources = tokenizer.encode_batch(&lines)?;
    let source_tokens: usize = sources.iter().map(Vec::len).sum();
    println!(
        "decoding {} sentences ({source_tokens} source tokens), beam {}, device {:?}; threads: libtorch {}, ONNX Runtime {ort_threads}",
        sources.len(),
        args.beam,
        args.device,
        tch::get_num_threads()
    );
    println!(
        "{:<12} {:>6} {:>10} {:>9} {:>12} {:>10}",
        "backend", "batch", "generated", "seconds", "tokens/s", "sent/s"
    );
    let mut backends: Vec<(&str, DecodeChunk)> = Vec::new();
    if let Some((model, _)) = &torch {
        backends.push(("libtorch", Box::new(move |chunk| model.decode(chunk, (0, 1), options))));
    }
    if let Some((mut model, _)) = ort {
        backends.push(("onnxruntime", Box::new(move |chunk| Ok(model.decode(chunk, (0, 1), options)?))));
    }
    for &batch in &args.batch_sizes {
        for (name, decode) in backends.iter_mut() {
            let started = Instant::now();
            let mut generated = 0usize;
            for chunk in sources.chunks(batch.max(1)) {
                generated += decode(chunk)?.iter().map(|h| h.tokens.len() + 1).sum::<usize>();
            }
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{name:<12} {batch:>6} {generated:>10} {seconds:>9.2} {:>12.1} {:>10.2}",
                generated as f64 / seconds,
                sources.len() as f64 / seconds
            );
        }
    }
    Ok(())
}
