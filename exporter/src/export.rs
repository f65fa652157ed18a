//! `exporter export`: a model directory as an ONNX bundle (xlmc-transformer's graphs,
//! xlmc-bundle's manifest), and `exporter verify`: the bundle through ONNX Runtime against the
//! model through libtorch, graph by graph and end to end.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, bail, ensure};
use tch::{Device, Kind, Tensor};
use xlmc_bundle::{Bundle, BundleError, ExportOptions, Manifest, SpecialIds};
use xlmc_decoding::{DecodeOptions, StepModel};
use xlmc_onnx::{DEFAULT_OPSET, IR_VERSION};
use xlmc_runtime::{OrtModel, SessionOptions};
use xlmc_tokenizer::{BOS_ID, EOS_ID, PAD_ID, Tokenizer, UNK_ID};

use crate::{
    cli::{ExportArgs, VerifyArgs},
    model_dir,
    model_dir::AnyModel,
};

pub fn run(args: &ExportArgs) -> anyhow::Result<String> {
    let (model, tokenizer) = model_dir::load_any(&args.model, Device::Cpu).context("--model")?;
    ensure!(args.force || !args.out.exists(), "--out {} exists; pass --force to replace it", args.out.display());
    let precision = xlmc_onnx::Precision::from(args.precision);
    let (encoder, decoder, config) = match &model {
        AnyModel::Transformer(m) => {
            let graphs = m.to_onnx(precision).context("building the ONNX graphs")?;
            (graphs.encoder, graphs.decoder, serde_json::to_value(&m.config)?)
        }
        AnyModel::BiGru(m) => {
            let graphs = m.to_onnx(precision).context("building the ONNX graphs")?;
            (graphs.encoder, graphs.decoder, serde_json::to_value(&m.config)?)
        }
    };
    let mut source = BTreeMap::from([("model_dir".to_owned(), args.model.display().to_string())]);
    source.insert("weights_sha256".into(), model_dir::weights_fingerprint(&args.model));
    let manifest = xlmc_bundle::write(&args.out, true, |dir| {
        let fail = |e: &dyn std::fmt::Display| BundleError::Export(e.to_string());
        encoder.write(&dir.join(xlmc_runtime::ENCODER_FILE)).map_err(|e| fail(&e))?;
        decoder.write(&dir.join(xlmc_runtime::DECODER_FILE)).map_err(|e| fail(&e))?;
        tokenizer.save(dir).map_err(|e| fail(&e))?;
        let mut tokenizer_files: Vec<String> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.ends_with(".onnx"))
            .collect();
        tokenizer_files.sort();
        let mut manifest = Manifest::new(model.architecture(), config, tokenizer.languages().to_vec());
        manifest.special_ids = SpecialIds { bos: BOS_ID, eos: EOS_ID, pad: PAD_ID, unk: UNK_ID };
        manifest.tokenizer_files = tokenizer_files;
        manifest.source = source;
        manifest.export =
            ExportOptions { precision: precision.name().into(), opset: DEFAULT_OPSET, ir_version: IR_VERSION };
        Ok(manifest)
    })
    .with_context(|| format!("--out {}", args.out.display()))?;
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let mut text =
        format!("bundle → {} (opset {DEFAULT_OPSET}, IR {IR_VERSION}, {})\n", args.out.display(), precision.name());
    for (name, entry) in &manifest.files {
        text += &format!("  {name:<22} {:>8.2} MiB  sha256 {}\n", mib(entry.bytes), &entry.sha256[..16]);
    }
    Ok(text)
}

/// A bundle and its tokenizer, verified.
pub fn open_bundle(dir: &Path) -> anyhow::Result<(Bundle, Tokenizer)> {
    let bundle = Bundle::open(dir).with_context(|| format!("--bundle {}", dir.display()))?;
    let tokenizer = Tokenizer::load(dir).with_context(|| format!("--bundle {}", dir.display()))?;
    Ok((bundle, tokenizer))
}

fn max_diff(torch: &Tensor, ort: &[f32]) -> f64 {
    let torch = Vec::<f32>::try_from(torch.to_kind(Kind::Float).contiguous().flatten(0, -1)).expect("floats");
    assert_eq!(torch.len(), ort.len(), "same shapes");
    torch.iter().zip(ort).map(|(a, b)| f64::from((a - b).abs())).fold(0.0, f64::max)
}

/// The largest difference between the two backends' decoding states, tensor by tensor (both
/// keep them where the contract's `state` module says); `values` gives an ORT tensor's values in
/// use, row-major.
fn state_diff<T>(
    torch: &xlmc_decoding::RowState<Tensor, Tensor>,
    ort: &xlmc_decoding::RowState<T, ndarray::Array2<bool>>,
    values: impl Fn(&T) -> Vec<f32>,
) -> f64
where
    T: xlmc_decoding::RowTensor,
    ndarray::Array2<bool>: xlmc_decoding::RowMask<Error = T::Error, Rows = T::Rows>,
{
    assert_eq!(torch.tensors().count(), ort.tensors().count(), "same number of state tensors");
    torch.tensors().zip(ort.tensors()).map(|((_, t), (_, o))| max_diff(t, &values(o))).fold(0.0, f64::max)
}

/// Feeds both step models the same batch and, each step, the same tokens (the first's argmax),
/// so every difference is numerical; returns the max |Δ log-prob|.
fn compare_steps<A: StepModel, B: StepModel>(
    a: &mut A,
    a_state: &mut A::State,
    b: &mut B,
    b_state: &mut B::State,
    rows: usize,
    steps: usize,
) -> anyhow::Result<f64> {
    let mut diff: f64 = 0.0;
    let mut tokens = vec![EOS_ID; rows];
    for _ in 0..steps {
        let expected = a.step(a_state, &tokens)?;
        let got = b.step(b_state, &tokens)?;
        diff = expected.iter().zip(&got).map(|(x, y)| f64::from((x - y).abs())).fold(diff, f64::max);
        tokens = expected
            .chunks(a.vocab_size())
            .map(|row| row.iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1)).map_or(0, |(i, _)| i as u32))
            .collect();
    }
    Ok(diff)
}

pub fn verify(args: &VerifyArgs) -> anyhow::Result<String> {
    let (model, tokenizer) = model_dir::load_any(&args.model, Device::Cpu).context("--model")?;
    let (bundle, bundle_tokenizer) = open_bundle(&args.bundle)?;
    ensure!(
        bundle.manifest.architecture == model.architecture(),
        "--bundle holds a {} model, --model a {}",
        bundle.manifest.architecture,
        model.architecture()
    );
    let mut ort = OrtModel::load(&bundle, &SessionOptions::default()).context("--bundle")?;
    let text = std::fs::read_to_string(&args.input).with_context(|| format!("--input {}", args.input.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(!lines.is_empty(), "--input {}: no sentences", args.input.display());
    let sources = tokenizer.encode_batch(&lines)?;
    ensure!(sources == bundle_tokenizer.encode_batch(&lines)?, "the bundle's tokenizer segments --input differently");
    let langs = (0, i64::from(tokenizer.languages().len() > 1));
    let batch = &sources[..args.batch.min(sources.len())];

    let (encoder_diff, decoder_diff, what) = match (&model, &mut ort) {
        (AnyModel::Transformer(m), OrtModel::Transformer(o)) => {
            let (mut torch, mut onnx) = (m.translator(langs.0, langs.1), o.translator(langs.0, langs.1));
            let (mut t_state, mut o_state) = (torch.encode(batch)?, onnx.encode(batch)?);
            let encoder_diff = state_diff(&t_state, &o_state, |o| o.used().iter().copied().collect());
            let decoder_diff =
                compare_steps(&mut torch, &mut t_state, &mut onnx, &mut o_state, batch.len(), args.steps)?;
            (encoder_diff, decoder_diff, format!("cross-attention keys/values of {} layers", m.config.n_dec_layers))
        }
        (AnyModel::BiGru(m), OrtModel::BiGru(o)) => {
            let (mut torch, mut onnx) = (m.translator(langs.0, langs.1), o.translator(langs.0, langs.1));
            let (mut t_state, mut o_state) = (torch.encode(batch)?, onnx.encode(batch)?);
            let encoder_diff = state_diff(&t_state, &o_state, |o| o.iter().copied().collect());
            let decoder_diff =
                compare_steps(&mut torch, &mut t_state, &mut onnx, &mut o_state, batch.len(), args.steps)?;
            (encoder_diff, decoder_diff, "encoder states, attention keys and the first decoder state".to_owned())
        }
        _ => bail!("--model and --bundle differ in architecture"),
    };

    // End to end: greedy translations of every sentence through the one decoding core.
    let options = DecodeOptions::default();
    let through_torch = model.decode(&sources, langs, options)?;
    let through_ort = ort.decode(&sources, langs, options)?;
    let same = through_torch.iter().zip(&through_ort).filter(|(a, b)| a.tokens == b.tokens).count();

    let report = format!(
        "encoder: max |Δ| {encoder_diff:.2e} ({what}, {} sentences)\n\
         decoder: max |Δ log-prob| {decoder_diff:.2e} ({} steps{})\n\
         greedy: {same}/{} translations identical\n",
        batch.len(),
        args.steps,
        if model.architecture() == xlmc_bundle::Architecture::Transformer { " with KV cache" } else { "" },
        sources.len()
    );
    ensure!(
        encoder_diff <= args.tolerance && decoder_diff <= args.tolerance,
        "{report}over the tolerance {:.0e}",
        args.tolerance
    );
    Ok(report)
}
