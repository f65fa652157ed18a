//! `exporter export`: a model directory as an ONNX bundle (xlmc-transformer's graphs,
//! xlmc-bundle's manifest), and `exporter verify`: the bundle through ONNX Runtime against the
//! model through libtorch, graph by graph and end to end.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, bail, ensure};
use tch::{Device, Kind, Tensor};
use xlmc_bundle::{Bundle, BundleError, ExportOptions, Manifest, SpecialIds};
use xlmc_decoding::{DecodeOptions, StepModel, decode};
use xlmc_onnx::{DEFAULT_OPSET, IR_VERSION};
use xlmc_runtime::{OrtTransformer, SessionOptions};
use xlmc_tokenizer::{BOS_ID, EOS_ID, PAD_ID, Tokenizer, UNK_ID};

use crate::{
    cli::{ExportArgs, VerifyArgs},
    model_dir,
};

pub fn run(args: &ExportArgs) -> anyhow::Result<String> {
    let (model, tokenizer) = model_dir::load(&args.model, Device::Cpu).context("--model")?;
    ensure!(args.force || !args.out.exists(), "--out {} exists; pass --force to replace it", args.out.display());
    let graphs = model.to_onnx().context("building the ONNX graphs")?;
    let mut source = BTreeMap::from([("model_dir".to_owned(), args.model.display().to_string())]);
    source.insert("weights_sha256".into(), model_dir::weights_fingerprint(&args.model));
    let manifest = xlmc_bundle::write(&args.out, true, |dir| {
        let fail = |e: &dyn std::fmt::Display| BundleError::Export(e.to_string());
        graphs.encoder.write(&dir.join(xlmc_transformer::ENCODER_FILE)).map_err(|e| fail(&e))?;
        graphs.decoder.write(&dir.join(xlmc_transformer::DECODER_FILE)).map_err(|e| fail(&e))?;
        tokenizer.save(dir).map_err(|e| fail(&e))?;
        let mut tokenizer_files: Vec<String> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.ends_with(".onnx"))
            .collect();
        tokenizer_files.sort();
        Ok(Manifest {
            format_version: xlmc_bundle::FORMAT_VERSION,
            architecture: "transformer".into(),
            config: serde_json::to_value(&model.config).map_err(|e| fail(&e))?,
            languages: tokenizer.languages().to_vec(),
            special_ids: SpecialIds { bos: BOS_ID, eos: EOS_ID, pad: PAD_ID, unk: UNK_ID },
            tokenizer_files,
            files: BTreeMap::new(),
            source,
            export: ExportOptions { precision: "fp32".into(), opset: DEFAULT_OPSET, ir_version: IR_VERSION },
            created_by: format!("xlmc {}", env!("CARGO_PKG_VERSION")),
        })
    })
    .with_context(|| format!("--out {}", args.out.display()))?;
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let mut text = format!("bundle → {} (opset {DEFAULT_OPSET}, IR {IR_VERSION}, fp32)\n", args.out.display());
    for (name, entry) in &manifest.files {
        text += &format!("  {name:<22} {:>8.2} MiB  sha256 {}\n", mib(entry.bytes), &entry.sha256[..16]);
    }
    Ok(text)
}

/// A bundle and its tokenizer, verified.
pub fn open_bundle(dir: &Path) -> anyhow::Result<(Bundle, Tokenizer)> {
    let bundle = Bundle::open(dir).with_context(|| format!("--bundle {}", dir.display()))?;
    if bundle.manifest.architecture != "transformer" {
        bail!(
            "--bundle {}: architecture {:?} has no ONNX Runtime decoder yet",
            dir.display(),
            bundle.manifest.architecture
        );
    }
    let tokenizer = Tokenizer::load(dir).with_context(|| format!("--bundle {}", dir.display()))?;
    Ok((bundle, tokenizer))
}

fn max_diff(torch: &Tensor, ort: &[f32]) -> f64 {
    let torch = Vec::<f32>::try_from(torch.to_kind(Kind::Float).contiguous().flatten(0, -1)).expect("floats");
    assert_eq!(torch.len(), ort.len(), "same shapes");
    torch.iter().zip(ort).map(|(a, b)| f64::from((a - b).abs())).fold(0.0, f64::max)
}

pub fn verify(args: &VerifyArgs) -> anyhow::Result<String> {
    let (model, tokenizer) = model_dir::load(&args.model, Device::Cpu).context("--model")?;
    let (bundle, bundle_tokenizer) = open_bundle(&args.bundle)?;
    let mut ort = OrtTransformer::load(&bundle, &SessionOptions::default()).context("--bundle")?;
    let text = std::fs::read_to_string(&args.input).with_context(|| format!("--input {}", args.input.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(!lines.is_empty(), "--input {}: no sentences", args.input.display());
    let sources = tokenizer.encode_batch(&lines)?;
    ensure!(sources == bundle_tokenizer.encode_batch(&lines)?, "the bundle's tokenizer segments --input differently");
    let (source_lang, target_lang) = (0, i64::from(tokenizer.languages().len() > 1));

    // Teacher-forced comparison: both backends get the same batch and, each step, the same tokens
    // (libtorch's argmax), so every difference is numerical.
    let batch = &sources[..args.batch.min(sources.len())];
    let mut torch = model.translator(source_lang, target_lang);
    let mut onnx = ort.translator(source_lang, target_lang);
    let mut torch_state = torch.encode(batch)?;
    let mut ort_state = onnx.encode(batch)?;
    let mut encoder_diff: f64 = 0.0;
    for ((tk, tv), (ok, ov)) in torch_state.cross_keys_values().iter().zip(ort_state.cross_keys_values()) {
        encoder_diff = encoder_diff.max(max_diff(tk, ok.as_slice().expect("standard layout")));
        encoder_diff = encoder_diff.max(max_diff(tv, ov.as_slice().expect("standard layout")));
    }
    let mut decoder_diff: f64 = 0.0;
    let mut tokens = vec![EOS_ID; batch.len()];
    let vocab = torch.vocab_size();
    for _ in 0..args.steps {
        let expected = torch.step(&mut torch_state, &tokens)?;
        let got = onnx.step(&mut ort_state, &tokens)?;
        decoder_diff = decoder_diff.max(max_diff(&Tensor::from_slice(&expected), &got));
        tokens = expected
            .chunks(vocab)
            .map(|row| row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32))
            .collect();
    }

    // End to end: greedy translations of every sentence through the one decoding core.
    let options = DecodeOptions::default();
    let through_torch = decode(&mut model.translator(source_lang, target_lang), &sources, options)?;
    let through_ort = decode(&mut ort.translator(source_lang, target_lang), &sources, options)?;
    let same = through_torch.iter().zip(&through_ort).filter(|(a, b)| a.tokens == b.tokens).count();

    let report = format!(
        "encoder: max |Δ| {encoder_diff:.2e} (cross-attention keys/values of {} layers, {} sentences)\n\
         decoder: max |Δ log-prob| {decoder_diff:.2e} ({} steps with KV cache)\n\
         greedy: {same}/{} translations identical\n",
        model.config.n_dec_layers,
        batch.len(),
        args.steps,
        sources.len()
    );
    ensure!(
        encoder_diff <= args.tolerance && decoder_diff <= args.tolerance,
        "{report}over the tolerance {:.0e}",
        args.tolerance
    );
    Ok(report)
}
