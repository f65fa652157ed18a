//! `exporter prune`: a student made of chosen teacher layers (xlmc-transformer's
//! `Seq2Seq::prune`), written as a model directory with the teacher's tokenizer.

use anyhow::{Context, bail};
use xlmc_transformer::spread_layers;

use crate::{cli::PruneArgs, model_dir};

/// `6-2` → (6, 2).
fn parse_keep(text: &str) -> anyhow::Result<(i64, i64)> {
    let parsed = text.split_once('-').and_then(|(e, d)| Some((e.trim().parse().ok()?, d.trim().parse().ok()?)));
    match parsed {
        Some((e, d)) if e > 0 && d > 0 => Ok((e, d)),
        _ => bail!("--keep {text:?}: expected ENCODER-DECODER layer counts, e.g. 6-2"),
    }
}

pub fn run(args: &PruneArgs) -> anyhow::Result<String> {
    let (teacher, tokenizer) = model_dir::load(&args.teacher, tch::Device::Cpu)?;
    let (encoder_layers, decoder_layers) = match &args.keep {
        Some(keep) => {
            let (e, d) = parse_keep(keep)?;
            if e > teacher.config.n_enc_layers || d > teacher.config.n_dec_layers {
                bail!(
                    "--keep {keep}: the teacher has {}-{} layers",
                    teacher.config.n_enc_layers,
                    teacher.config.n_dec_layers
                );
            }
            (spread_layers(teacher.config.n_enc_layers, e), spread_layers(teacher.config.n_dec_layers, d))
        }
        None => {
            let all = |n: i64| (0..n).collect::<Vec<_>>();
            (
                args.encoder_layers.clone().unwrap_or_else(|| all(teacher.config.n_enc_layers)),
                args.decoder_layers.clone().unwrap_or_else(|| all(teacher.config.n_dec_layers)),
            )
        }
    };
    let student = teacher.prune(&encoder_layers, &decoder_layers).context("--encoder-layers/--decoder-layers")?;
    model_dir::save_new(&args.out, args.force, &student, &tokenizer)?;
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let (teacher_bytes, student_bytes) = (model_dir::weight_bytes(&args.teacher), model_dir::weight_bytes(&args.out));
    Ok(format!(
        "teacher {}-{} layers: {} parameters, {:.1} MiB\nstudent {}-{} layers (encoder {encoder_layers:?}, decoder {decoder_layers:?}): {} parameters ({:.1}%), {:.1} MiB\nstudent → {}\n",
        teacher.config.n_enc_layers,
        teacher.config.n_dec_layers,
        teacher.parameters(),
        mib(teacher_bytes),
        student.config.n_enc_layers,
        student.config.n_dec_layers,
        student.parameters(),
        100.0 * student.parameters() as f64 / teacher.parameters() as f64,
        mib(student_bytes),
        args.out.display()
    ))
}
