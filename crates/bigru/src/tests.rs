//! The BiGRU against itself: incremental decoding equals teacher forcing, and batching (padding,
//! rows leaving and joining) never changes a sentence's translation.

use tch::{Device, Kind, Tensor};
use xlmc_decoding::{DecodeOptions, StepModel, decode};

use crate::{BiGru, Config};

const VOCAB: i64 = 50;

fn model() -> BiGru {
    tch::manual_seed(21);
    BiGru::new(Config::tiny(VOCAB), Device::Cpu)
}

/// `n` sources of 1–19 tokens.
fn sources(n: u32) -> Vec<Vec<u32>> {
    (0..n).map(|i| (0..(1 + i * 7 % 19)).map(|j| 14 + (i * 13 + j * 3) % 36).collect()).collect()
}

#[test]
fn incremental_decoding_matches_teacher_forcing() {
    let model = model();
    let sources = &sources(6)[..];
    let targets: Vec<Vec<u32>> = (0..6u32).map(|i| (0..5).map(|j| 14 + (i * 5 + j * 7) % 36).collect()).collect();
    let (src, src_len) = model.batch(sources);
    let inputs: Vec<i64> =
        targets.iter().flat_map(|t| std::iter::once(1).chain(t.iter().map(|&x| i64::from(x)))).collect();
    let inputs = Tensor::from_slice(&inputs).view([6, 6]);
    let full = tch::no_grad(|| model.forward(&src, &src_len, &inputs, (0, 1), false)).log_softmax(-1, Kind::Float);

    let mut translator = model.translator(0, 1);
    let mut state = translator.encode(sources).unwrap();
    let mut last = vec![1u32; 6];
    for t in 0..6 {
        let step = translator.step(&mut state, &last).unwrap();
        let expected = Vec::<f32>::try_from(full.select(1, t).flatten(0, -1)).unwrap();
        let diff = step.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "step {t}: {diff}");
        if t < 5 {
            last = targets.iter().map(|tg| tg[t as usize]).collect();
        }
    }
}

/// Batch shapes (and backends) move the last bits of matmuls (≈2e-7 here); an untrained model's
/// nearly flat distributions would turn that into coin flips between tied beams. Sharper output
/// weights (as a trained model has) leave only the property under test.
fn sharpened_model() -> BiGru {
    let model = model();
    tch::no_grad(|| {
        let mut table = model.vs.variables()["decoder.embeddings.weight"].shallow_clone();
        let _ = table.g_mul_scalar_(6.0);
    });
    model
}

#[test]
fn outputs_do_not_depend_on_the_batch() {
    let model = sharpened_model();
    let all = sources(64);
    for beam_size in [1, 3] {
        let options = DecodeOptions { beam_size, ..Default::default() };
        let batched = decode(&mut model.translator(0, 1), &all, options).unwrap();
        for (i, source) in all.iter().enumerate() {
            let alone = decode(&mut model.translator(0, 1), std::slice::from_ref(source), options).unwrap();
            assert_eq!(alone[0].tokens, batched[i].tokens, "sentence {i}, beam {beam_size}");
        }
        let sevens: Vec<_> =
            all.chunks(7).flat_map(|c| decode(&mut model.translator(0, 1), c, options).unwrap()).collect();
        assert_eq!(
            sevens.iter().map(|h| &h.tokens).collect::<Vec<_>>(),
            batched.iter().map(|h| &h.tokens).collect::<Vec<_>>()
        );
    }
}

#[test]
fn pytorch_parameter_names() {
    let model = model();
    let names: Vec<String> = model.vs.variables().into_keys().collect();
    for name in [
        "encoder.gru.weight_ih_l0",
        "encoder.gru.weight_hh_l0_reverse",
        "encoder.gru.bias_ih_l0_reverse",
        "decoder.gru.weight_hh_l0",
        "decoder.attention.weight",
        "decoder.combine.weight",
        "decoder.pred_layer.proj.bias",
        "bridge.weight",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
    }
    assert_eq!(model.vs.variables()["encoder.gru.weight_ih_l0"].size(), [3 * 32, 32]);
    assert_eq!(model.vs.variables()["decoder.gru.weight_hh_l0"].size(), [3 * 64, 64]);
}

#[test]
fn saved_models_load_identically_and_mismatches_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let original = model();
    original.save(dir.path()).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(crate::CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(xlmc_bundle::contract::folder_architecture(&config), Ok(crate::ARCHITECTURE));
    let loaded = BiGru::load(dir.path(), Device::Cpu).unwrap();
    let all = sources(10);
    let run = |m: &BiGru| decode(&mut m.translator(0, 1), &all, DecodeOptions::default()).unwrap();
    assert_eq!(
        run(&loaded).iter().map(|h| &h.tokens).collect::<Vec<_>>(),
        run(&original).iter().map(|h| &h.tokens).collect::<Vec<_>>()
    );
    let mut wider = BiGru::new(Config { hidden: 40, ..Config::tiny(VOCAB) }, Device::Cpu);
    let err = wider.load_weights(dir.path()).unwrap_err().to_string();
    assert!(err.contains("encoder.gru.weight_hh_l0") && err.contains("nothing was loaded"), "{err}");
}

#[test]
fn onnx_runtime_decodes_like_libtorch_alone_in_batches_and_with_rows_joining_mid_decode() {
    use xlmc_decoding::decode_joining;
    let model = sharpened_model();
    let dir = tempfile::tempdir().unwrap();
    let graphs = model.to_onnx(xlmc_onnx::Precision::Fp32).unwrap();
    let out = dir.path().join("bundle");
    xlmc_bundle::write(&out, false, |d| {
        graphs.encoder.write(&d.join(crate::ENCODER_FILE)).unwrap();
        graphs.decoder.write(&d.join(crate::DECODER_FILE)).unwrap();
        Ok(xlmc_bundle::Manifest::new(
            xlmc_bundle::Architecture::BiGru,
            serde_json::to_value(&model.config).unwrap(),
            vec!["en".into(), "fr".into()],
        ))
    })
    .unwrap();
    let bundle = xlmc_bundle::Bundle::open(&out).unwrap();
    let mut ort = xlmc_runtime::OrtBiGru::load(&bundle, &xlmc_runtime::SessionOptions::default()).unwrap();

    let sources = sources(40);
    let options = DecodeOptions { beam_size: 2, ..Default::default() };
    let expected: Vec<Vec<u32>> =
        decode(&mut model.translator(0, 1), &sources, options).unwrap().into_iter().map(|h| h.tokens).collect();
    let alone: Vec<Vec<u32>> = sources
        .iter()
        .map(|s| decode(&mut ort.translator(0, 1), std::slice::from_ref(s), options).unwrap()[0].tokens.clone())
        .collect();
    assert_eq!(alone, expected, "ORT one by one = libtorch batched");
    let joined: Vec<Vec<u32>> = decode_joining(&mut ort.translator(0, 1), &sources, options, 3)
        .unwrap()
        .into_iter()
        .map(|h| h.tokens)
        .collect();
    assert_eq!(joined, expected, "rows joining mid-decode");
}
