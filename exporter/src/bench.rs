//! `exporter bench --model DIR --input FILE`: greedy (or beam) decoding throughput of the tch
//! backend at several batch sizes, as a table. A benchmark, not a test: numbers depend on the
//! machine, so they are printed with the thread count and never asserted.

use std::time::Instant;

use anyhow::Context;
use xlmc_decoding::DecodeOptions;

use crate::{cli::BenchArgs, model_dir, torch_device};

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let device = torch_device::select(args.device)?;
    let (model, tokenizer) = model_dir::load_any(&args.model, device)?;
    let text = std::fs::read_to_string(&args.input).with_context(|| format!("--input {}", args.input.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(args.sentences).collect();
    let sources = tokenizer.encode_batch(&lines)?;
    let source_tokens: usize = sources.iter().map(Vec::len).sum();
    println!(
        "decoding {} sentences ({source_tokens} source tokens), beam {}, device {device:?}, {} libtorch threads",
        sources.len(),
        args.beam,
        tch::get_num_threads()
    );
    println!("{:>6} {:>10} {:>9} {:>12} {:>10}", "batch", "generated", "seconds", "tokens/s", "sent/s");
    let options = DecodeOptions { beam_size: args.beam, ..Default::default() };
    for &batch in &args.batch_sizes {
        let started = Instant::now();
        let mut generated = 0usize;
        for chunk in sources.chunks(batch.max(1)) {
            generated += model.decode(chunk, (0, 1), options)?.iter().map(|h| h.tokens.len() + 1).sum::<usize>();
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{batch:>6} {generated:>10} {seconds:>9.2} {:>12.1} {:>10.2}",
            generated as f64 / seconds,
            sources.len() as f64 / seconds
        );
    }
    Ok(())
}
