//! Consistency of the tch model with itself: incremental decoding against the full forward,
//! batch invariance through the decoding core, checkpoint round trips.

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};
use xlmc_decoding::{DecodeOptions, StepModel, decode, decode_joining};

use crate::{CheckpointError, Config, INDEX_FILE, SaveOptions, Seq2Seq, WEIGHTS_FILE};

const VOCAB: i64 = 60;
const TOLERANCE: f64 = 1e-5;

fn model(seed: i64) -> Seq2Seq {
    tch::manual_seed(seed);
    Seq2Seq::new(Config::tiny(VOCAB), Device::Cpu).unwrap()
}

fn sources() -> Vec<Vec<u32>> {
    sources_n(30)
}

/// `n` sources of 1–23 tokens.
fn sources_n(n: u32) -> Vec<Vec<u32>> {
    (0..n).map(|i| (0..(1 + i * 5 % 23)).map(|j| 14 + (i * 17 + j * 5) % 46).collect()).collect()
}

/// Log-probabilities of every target position from one teacher-forced pass: [bs, len, vocab].
fn full_log_probs(model: &Seq2Seq, sources: &[Vec<u32>], targets: &[Vec<u32>]) -> Tensor {
    full_logits(model, sources, targets).log_softmax(-1, Kind::Float)
}

/// Logits of every target position from one teacher-forced pass: [bs, len, vocab].
fn full_logits(model: &Seq2Seq, sources: &[Vec<u32>], targets: &[Vec<u32>]) -> Tensor {
    let translator = model.translator(0, 1);
    let (src, src_len) = translator.batch(sources).unwrap();
    // Decoder input: </s> y1 … ym (XLM starts from </s>); all targets have the same length here.
    let input: Vec<Vec<u32>> = targets.iter().map(|t| [vec![1], t.clone()].concat()).collect();
    let len = input[0].len() as i64;
    let flat: Vec<i64> = input.iter().flatten().map(|&t| i64::from(t)).collect();
    let tgt = Tensor::from_slice(&flat).view([targets.len() as i64, len]);
    let tgt_len = Tensor::full([targets.len() as i64], len, (Kind::Int64, Device::Cpu));
    tch::no_grad(|| {
        let (encoded, src_mask) = model.encoder.forward(&src, &src_len, 0, None, false);
        let (hidden, _) = model.decoder.forward(&tgt, &tgt_len, 1, Some((&encoded, &src_mask)), false);
        model.decoder.logits(&hidden)
    })
}

fn max_diff(a: &[f32], b: &Tensor) -> f64 {
    let b = Vec::<f32>::try_from(b.flatten(0, -1)).unwrap();
    a.iter().zip(&b).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max)
}

#[test]
fn incremental_decoding_matches_the_full_forward() {
    let model = model(1);
    let sources = &sources()[..5]; // different lengths: source padding is exercised
    let targets: Vec<Vec<u32>> = (0..5u32).map(|i| (0..6).map(|j| 14 + (i * 7 + j * 3) % 40).collect()).collect();
    let full = full_log_probs(&model, sources, &targets);
    let mut translator = model.translator(0, 1);
    let mut state = translator.encode(sources).unwrap();
    let mut last = vec![1u32; 5];
    for t in 0..=6 {
        let step = translator.step(&mut state, &last).unwrap();
        let diff = max_diff(&step, &full.select(1, t));
        assert!(diff < TOLERANCE, "step {t}: max |Δ| = {diff}");
        if t < 6 {
            last = targets.iter().map(|y| y[t as usize]).collect();
        }
    }
}

#[test]
fn rows_appended_mid_decode_see_only_their_own_history() {
    let model = model(2);
    let all = sources();
    let (a, b) = (&all[..3], &all[3..5]);
    let mut translator = model.translator(0, 1);
    // B alone, two steps.
    let mut alone = translator.encode(b).unwrap();
    translator.step(&mut alone, &[1, 1]).unwrap();
    let second_alone = translator.step(&mut alone, &[20, 21]).unwrap();
    // A runs three steps, then B joins (longer source, fewer steps), then one more step each.
    let mut state = translator.encode(a).unwrap();
    for token in [1, 30, 31] {
        translator.step(&mut state, &[token; 3]).unwrap();
    }
    let joined = translator.encode(b).unwrap();
    translator.append(&mut state, joined).unwrap();
    translator.step(&mut state, &[32, 32, 32, 1, 1]).unwrap();
    let out = translator.step(&mut state, &[33, 33, 33, 20, 21]).unwrap();
    let v = VOCAB as usize;
    let b_rows = Tensor::from_slice(&out[3 * v..]);
    let diff = max_diff(&second_alone, &b_rows);
    assert!(diff < TOLERANCE, "max |Δ| = {diff}");
}

#[test]
fn select_drops_the_cache_and_source_columns_no_row_uses() {
    use xlmc_bundle::contract::state::transformer::{CROSS_K, PAST_K};
    let model = model(2);
    let mut translator = model.translator(0, 1);
    // A (3 source tokens) runs four steps; B (1 token) joins and both step once: 5 cached steps,
    // of which B owns the last.
    let mut joined_state = || {
        let mut state = translator.encode(&[vec![5, 6, 7]]).unwrap();
        for _ in 0..4 {
            translator.step(&mut state, &[1]).unwrap();
        }
        let joined = translator.encode(&[vec![5]]).unwrap();
        translator.append(&mut state, joined).unwrap();
        translator.step(&mut state, &[1, 1]).unwrap();
        state
    };
    let mut state = joined_state();
    let mut copy = joined_state();
    assert_eq!((state.steps_mask().size()[1], state.source_mask().size()[1]), (5, 5));
    let expected = {
        translator.select(&mut copy, &[0, 1]).unwrap(); // both rows kept: nothing to drop
        assert_eq!(copy.steps_mask().size()[1], 5);
        translator.step(&mut copy, &[9, 9]).unwrap()
    };
    // A leaves: only B's own step and its source (</s> 5 </s>) stay.
    translator.select(&mut state, &[1]).unwrap();
    assert_eq!((state.steps_mask().size()[1], state.source_mask().size()[1]), (1, 3));
    assert_eq!((state.tensor(PAST_K).size()[2], state.tensor(CROSS_K).size()[2]), (1, 3));
    let out = translator.step(&mut state, &[9]).unwrap();
    let diff = max_diff(&out, &Tensor::from_slice(&expected[VOCAB as usize..]));
    assert!(diff < TOLERANCE, "B's next step is unchanged: max |Δ| = {diff}");
}

#[test]
fn greedy_and_beam_outputs_are_batch_invariant() {
    let model = model(3);
    let sources = sources_n(200);
    for beam_size in [1, 3] {
        let options = DecodeOptions { beam_size, ..Default::default() };
        let run = |batch: usize| -> Vec<Vec<u32>> {
            let mut translator = model.translator(0, 1);
            sources
                .chunks(batch)
                .flat_map(|chunk| decode(&mut translator, chunk, options).unwrap())
                .map(|h| h.tokens)
                .collect()
        };
        let one = run(1);
        assert_eq!(run(7), one, "beam {beam_size}, batch 7");
        assert_eq!(run(64), one, "beam {beam_size}, batch 64");
    }
}

#[test]
fn continuous_joins_give_the_same_translations() {
    let model = model(4);
    let sources = sources();
    let mut translator = model.translator(0, 1);
    let alone: Vec<Vec<u32>> = sources
        .iter()
        .map(|s| decode(&mut translator, std::slice::from_ref(s), DecodeOptions::default()).unwrap()[0].tokens.clone())
        .collect();
    let out: Vec<Vec<u32>> = decode_joining(&mut translator, &sources, DecodeOptions::default(), 3)
        .unwrap()
        .into_iter()
        .map(|h| h.tokens)
        .collect();
    assert_eq!(out, alone);
}

#[test]
fn checkpoints_round_trip_and_mismatches_name_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let original = model(5);
    original.save(dir.path()).unwrap();
    let loaded = Seq2Seq::load(dir.path(), Device::Cpu).unwrap();
    let sources = &sources()[..6];
    let translate = |m: &Seq2Seq| decode(&mut m.translator(0, 1), sources, DecodeOptions::default()).unwrap();
    assert_eq!(translate(&loaded), translate(&original));
    assert_eq!(loaded.parameters(), original.parameters());

    let mut stored: BTreeMap<String, Tensor> = original.vs.variables().into_iter().collect();
    stored.remove("decoder.ffns.1.lin2.weight");
    stored.insert("decoder.extra.weight".into(), Tensor::zeros([2], (Kind::Float, Device::Cpu)));
    stored.insert("encoder.embeddings.weight".into(), Tensor::zeros([VOCAB + 1, 32], (Kind::Float, Device::Cpu)));
    let mut target = model(6);
    let before = Vec::<f32>::try_from(target.vs.variables()["encoder.layer_norm_emb.bias"].shallow_clone()).unwrap();
    let err = target.copy_from(dir.path(), stored).unwrap_err();
    let CheckpointError::Mismatch { missing, unexpected, shapes, .. } = &err else { panic!("{err}") };
    assert_eq!(missing, &["decoder.ffns.1.lin2.weight"]);
    assert_eq!(unexpected, &["decoder.extra.weight"]);
    assert_eq!(shapes.len(), 1, "{shapes:?}");
    let after = Vec::<f32>::try_from(target.vs.variables()["encoder.layer_norm_emb.bias"].shallow_clone()).unwrap();
    assert_eq!(before, after, "nothing loads half-way");
}

#[test]
fn init_from_copies_weights_whatever_the_dropout_and_names_every_difference() {
    let dir = tempfile::tempdir().unwrap();
    let source = model(11);
    source.save_with(dir.path(), SaveOptions { half: true, max_shard_bytes: Some(20_000) }).unwrap();

    let mut config = Config::tiny(VOCAB);
    config.dropout = 0.3;
    let mut target = Seq2Seq::new(config.clone(), Device::Cpu).unwrap();
    target.init_from(dir.path()).unwrap();
    for (name, value) in source.vs.variables() {
        let expected = value.to_kind(Kind::Half).to_kind(Kind::Float);
        assert!(target.vs.variables()[&name].equal(&expected), "{name}");
    }

    // Another vocabulary and depth: each parameter and tensor named with both values.
    let mut other = Config::tiny(VOCAB + 4);
    other.n_dec_layers = 3;
    other.n_heads = 8;
    let mut target = Seq2Seq::new(other, Device::Cpu).unwrap();
    let before = Vec::<f32>::try_from(target.vs.variables()["encoder.layer_norm_emb.bias"].shallow_clone()).unwrap();
    let err = target.init_from(dir.path()).unwrap_err();
    let CheckpointError::Incompatible { differences, .. } = &err else { panic!("{err}") };
    let text = err.to_string();
    for expected in [
        "n_words: 60 there, 64 here",
        "n_dec_layers: 2 there, 3 here",
        "n_heads: 4 there, 8 here",
        "encoder.embeddings.weight: [60, 32] there, [64, 32] here",
        "decoder.attentions.2.q_lin.weight: missing there, [32, 32] here",
    ] {
        assert!(differences.iter().any(|d| d == expected), "{expected} not in {text}");
    }
    let after = Vec::<f32>::try_from(target.vs.variables()["encoder.layer_norm_emb.bias"].shallow_clone()).unwrap();
    assert_eq!(before, after, "nothing is copied");
}

#[test]
fn averaging_takes_the_mean_of_every_weight_and_refuses_another_network() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut models: Vec<Seq2Seq> = (0..3).map(|i| model(20 + i)).collect();
    models[0].save(dirs[0].path()).unwrap();
    models[1].save_with(dirs[1].path(), SaveOptions { half: false, max_shard_bytes: Some(20_000) }).unwrap();
    // The third differs in a training-only setting, which averaging ignores. (The same model,
    // not one rebuilt from its seed: tests running beside this one draw from libtorch's global
    // generator, so a rebuilt model may differ.)
    models[2].config.dropout = 0.2;
    models[2].save(dirs[2].path()).unwrap();
    let paths: Vec<&std::path::Path> = dirs.iter().map(|d| d.path()).collect();

    let mean = Seq2Seq::average(&paths, Device::Cpu).unwrap();
    let variables = mean.vs.variables();
    assert_eq!(variables.len(), models[0].vs.variables().len());
    for (name, value) in &variables {
        let expected = models.iter().map(|m| m.vs.variables()[name].to_kind(Kind::Double)).sum::<Tensor>() / 3.0;
        let diff = (value.to_kind(Kind::Double) - &expected).abs().max().double_value(&[]);
        assert!(diff < 1e-7, "{name}: {diff}");
        let first = &models[0].vs.variables()[name];
        if !first.equal(&models[1].vs.variables()[name]) {
            assert!(!value.equal(first), "{name} is the first model's");
        }
    }
    assert_eq!(mean.config, models[0].config);
    let alone = Seq2Seq::average(&paths[..1], Device::Cpu).unwrap();
    assert!(
        alone.vs.variables()["encoder.embeddings.weight"].equal(&models[0].vs.variables()["encoder.embeddings.weight"])
    );

    // Another depth among them: named, with both values, and nothing is built.
    let deeper_dir = tempfile::tempdir().unwrap();
    let mut deeper = Config::tiny(VOCAB);
    deeper.n_dec_layers = 3;
    Seq2Seq::new(deeper, Device::Cpu).unwrap().save(deeper_dir.path()).unwrap();
    let err = Seq2Seq::average(&[paths[0], deeper_dir.path(), paths[1]], Device::Cpu).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CheckpointError::Incompatible { .. }), "{text}");
    assert!(
        text.contains(&deeper_dir.path().display().to_string()) && text.contains("n_dec_layers: 3 there, 2 here"),
        "{text}"
    );
    assert!(Seq2Seq::average(&[], Device::Cpu).is_err());
}

#[test]
fn half_precision_shards_round_trip_and_replace_the_single_file() {
    let dir = tempfile::tempdir().unwrap();
    let original = model(8);
    original.save(dir.path()).unwrap();
    let limit = 20_000u64;
    original.save_with(dir.path(), SaveOptions { half: true, max_shard_bytes: Some(limit) }).unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert!(!names.contains(&WEIGHTS_FILE.to_owned()), "the fp32 file is replaced: {names:?}");
    let shards: Vec<&String> = names.iter().filter(|n| n.starts_with("model-")).collect();
    assert!(shards.len() > 3, "{names:?}");
    let largest_tensor = original.vs.variables().values().map(|t| t.numel() as u64 * 2).max().unwrap();
    for shard in &shards {
        let bytes = std::fs::metadata(dir.path().join(shard)).unwrap().len();
        // Each shard's data fits the limit (or is one tensor larger than it), plus a small header.
        assert!(bytes <= limit.max(largest_tensor) + 4096, "{shard}: {bytes} bytes");
    }

    let loaded = Seq2Seq::load(dir.path(), Device::Cpu).unwrap();
    for (name, value) in original.vs.variables() {
        let expected = value.to_kind(Kind::Half).to_kind(Kind::Float);
        let got = &loaded.vs.variables()[&name];
        assert_eq!(got.kind(), Kind::Float, "computes in fp32");
        assert!(got.equal(&expected), "{name} is the fp16 rounding of the original");
    }

    // An index that disagrees with its shards is refused, naming the shard.
    let index_path = dir.path().join(INDEX_FILE);
    let text = std::fs::read_to_string(&index_path).unwrap();
    let moved = text.replacen(shards[0].as_str(), shards[1].as_str(), 1);
    std::fs::write(&index_path, moved).unwrap();
    let err = Seq2Seq::load(dir.path(), Device::Cpu).unwrap_err().to_string();
    assert!(err.contains(shards[0].as_str()) || err.contains(shards[1].as_str()), "{err}");
}

#[test]
fn bf16_matmuls_stay_within_bf16_rounding_and_train_the_fp32_weights() {
    let sources = &sources()[..4];
    let targets: Vec<Vec<u32>> = (0..4u32).map(|i| (0..5).map(|j| 14 + (i * 5 + j * 7) % 40).collect()).collect();
    let mut model = model(5);
    let fp32 = full_logits(&model, sources, &targets);
    model.set_matmul_kind(Kind::BFloat16);
    let bf16 = full_logits(&model, sources, &targets);
    assert_eq!(bf16.kind(), Kind::Float, "logits come back as fp32");
    let scale = fp32.abs().max().double_value(&[]);
    let diff = (&bf16 - &fp32).abs().max().double_value(&[]);
    // bf16 keeps 8 significant bits (relative rounding 2^-9 ≈ 0.002 per operand).
    assert!(diff > 0.0, "the bf16 path was not taken");
    assert!(diff < 0.05 * scale, "bf16 logits differ by {diff} at scale {scale}");
    // Gradients reach the fp32 weights through the casts.
    let translator = model.translator(0, 1);
    let (src, src_len) = translator.batch(sources).unwrap();
    let (encoded, _) = model.encoder.forward(&src, &src_len, 0, None, true);
    encoded.sum(Kind::Float).backward();
    for (name, var) in model.vs.variables() {
        assert_eq!(var.kind(), Kind::Float, "{name} stays fp32");
        if name.starts_with("encoder.ffns.0.lin1.weight") {
            assert!(var.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name} got no gradient");
        }
    }
    model.set_matmul_kind(Kind::Float);
    let back = full_logits(&model, sources, &targets);
    assert_eq!(max_diff(&Vec::<f32>::try_from(fp32.flatten(0, -1)).unwrap(), &back), 0.0);
}

#[test]
fn linear_layers_start_like_pytorch_nn_linear() {
    // U(±1/√fan_in) like XLM's (PyTorch's) nn.Linear; tch's default is √6× wider, which left the
    // 6+6-layer model stuck at a unigram distribution on real data.
    tch::manual_seed(9);
    let model = Seq2Seq::new(Config::small(1000), Device::Cpu).unwrap();
    let variables = model.vs.variables();
    for (name, fan_in) in [("encoder.attentions.0.q_lin.weight", 256), ("decoder.ffns.5.lin2.weight", 1024)] {
        let w = &variables[name];
        let bound = 1.0 / f64::from(fan_in).sqrt();
        assert!(w.abs().max().double_value(&[]) <= bound, "{name} exceeds ±{bound}");
        let std = w.std(true).double_value(&[]);
        let expected = bound / 3f64.sqrt();
        assert!((std / expected - 1.0).abs() < 0.02, "{name}: std {std}, PyTorch's {expected}");
    }
}

#[test]
fn pruning_copies_the_chosen_layers_and_keeping_all_changes_nothing() {
    use crate::spread_layers;
    assert_eq!(spread_layers(6, 2), [0, 5]);
    assert_eq!(spread_layers(6, 3), [0, 3, 5]);
    assert_eq!(spread_layers(6, 6), [0, 1, 2, 3, 4, 5]);
    assert_eq!(spread_layers(6, 1), [0]);

    let teacher =
        Seq2Seq::new(Config { n_enc_layers: 3, n_dec_layers: 3, ..Config::tiny(VOCAB) }, Device::Cpu).unwrap();
    let same = teacher.prune(&[0, 1, 2], &[0, 1, 2]).unwrap();
    let sources = &sources()[..8];
    let translate = |m: &Seq2Seq| decode(&mut m.translator(0, 1), sources, DecodeOptions::default()).unwrap();
    assert_eq!(translate(&same), translate(&teacher));

    let student = teacher.prune(&[0, 2], &[1]).unwrap();
    assert_eq!((student.config.n_enc_layers, student.config.n_dec_layers), (2, 1));
    let (t, s) = (teacher.vs.variables(), student.vs.variables());
    for (student_name, teacher_name) in [
        ("encoder.attentions.1.q_lin.weight", "encoder.attentions.2.q_lin.weight"),
        ("encoder.ffns.0.lin1.bias", "encoder.ffns.0.lin1.bias"),
        ("decoder.encoder_attn.0.v_lin.weight", "decoder.encoder_attn.1.v_lin.weight"),
        ("decoder.layer_norm15.0.weight", "decoder.layer_norm15.1.weight"),
        ("decoder.embeddings.weight", "decoder.embeddings.weight"),
        ("decoder.pred_layer.proj.bias", "decoder.pred_layer.proj.bias"),
    ] {
        assert!(s[student_name].equal(&t[teacher_name]), "{student_name} = teacher {teacher_name}");
    }
    assert!(student.parameters() < teacher.parameters());

    for (enc, dec, needle) in
        [(&[0, 3][..], &[0][..], "out of range"), (&[1, 0], &[0], "increasing"), (&[], &[0], "at least")]
    {
        let err = teacher.prune(enc, dec).unwrap_err().to_string();
        assert!(err.contains(needle) && err.contains("encoder"), "{err}");
    }
}

#[test]
fn a_vocabulary_trimmed_model_gives_the_teachers_logits_on_the_tokens_it_keeps() {
    let teacher = model(11);
    // Specials, then every third word.
    let kept: Vec<i64> = (0..14).chain((14..VOCAB).step_by(3)).collect();
    let student = teacher.trim_vocabulary(&kept).unwrap();
    assert_eq!(student.config.n_words, kept.len() as i64);
    assert!(student.parameters() < teacher.parameters());
    let compact = |full: &[Vec<u32>]| -> Vec<Vec<u32>> {
        full.iter()
            .map(|s| s.iter().map(|&t| kept.iter().position(|&k| k == i64::from(t)).unwrap() as u32).collect())
            .collect()
    };
    // Sentences of kept words only, in full ids.
    let sources: Vec<Vec<u32>> =
        (0..6).map(|i| (0..(2 + i)).map(|j| 14 + 3 * ((i * 5 + j * 7) % 15)).collect()).collect();
    let targets: Vec<Vec<u32>> = (0..6).map(|i| (0..5).map(|j| 14 + 3 * ((i * 3 + j * 2) % 15)).collect()).collect();
    let full = full_logits(&teacher, &sources, &targets).index_select(-1, &Tensor::from_slice(&kept));
    let trimmed = full_logits(&student, &compact(&sources), &compact(&targets));
    let diff = (full - trimmed).abs().max().double_value(&[]);
    assert!(diff < TOLERANCE, "max |Δ logit| = {diff}");

    for (ids, needle) in
        [(vec![0, 2, 1], "increasing"), (vec![0, 1, 2, VOCAB], "0..60"), (vec![0, 2, 5], "special id 1")]
    {
        let error = teacher.trim_vocabulary(&ids).unwrap_err().to_string();
        assert!(error.contains(needle), "{error}");
    }
}

#[test]
fn xlm_parameter_names() {
    let model = model(7);
    let names: Vec<String> = model.vs.variables().into_keys().collect();
    for name in [
        "encoder.embeddings.weight",
        "encoder.position_embeddings.weight",
        "encoder.lang_embeddings.weight",
        "encoder.layer_norm_emb.weight",
        "encoder.attentions.0.q_lin.weight",
        "encoder.attentions.1.out_lin.bias",
        "encoder.layer_norm1.0.weight",
        "encoder.ffns.0.lin1.weight",
        "encoder.layer_norm2.1.bias",
        "decoder.encoder_attn.0.k_lin.weight",
        "decoder.layer_norm15.1.weight",
        "decoder.pred_layer.proj.bias",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("encoder.pred_layer") || n.starts_with("encoder.encoder_attn")));
}

/// The model as a bundle opened by ONNX Runtime (graphs from `to_onnx`, a minimal manifest).
fn ort_model(model: &Seq2Seq, dir: &std::path::Path) -> xlmc_runtime::OrtTransformer {
    let graphs = model.to_onnx(xlmc_onnx::Precision::Fp32).unwrap();
    let out = dir.join("bundle");
    xlmc_bundle::write(&out, false, |d| {
        graphs.encoder.write(&d.join(crate::ENCODER_FILE)).unwrap();
        graphs.decoder.write(&d.join(crate::DECODER_FILE)).unwrap();
        Ok(xlmc_bundle::Manifest::new(
            xlmc_bundle::Architecture::Transformer,
            serde_json::to_value(&model.config).unwrap(),
            vec!["en".into(), "fr".into()],
        ))
    })
    .unwrap();
    let bundle = xlmc_bundle::Bundle::open(&out).unwrap();
    xlmc_runtime::OrtTransformer::load(&bundle, &xlmc_runtime::SessionOptions::default()).unwrap()
}

#[test]
fn onnx_runtime_decodes_like_libtorch_alone_in_batches_and_with_rows_joining_mid_decode() {
    let model = model(12);
    let dir = tempfile::tempdir().unwrap();
    let mut ort = ort_model(&model, dir.path());
    let sources = sources_n(40);
    // Greedy leaves finished rows in place and compacts them later (in place, rows from the end
    // filling holes); beam search gathers its rows at every step.
    for beam_size in [1, 2] {
        let options = DecodeOptions { beam_size, ..Default::default() };
        let torch = decode(&mut model.translator(0, 1), &sources, options).unwrap();
        let alone: Vec<Vec<u32>> = sources
            .iter()
            .map(|s| decode(&mut ort.translator(0, 1), std::slice::from_ref(s), options).unwrap()[0].tokens.clone())
            .collect();
        let batched: Vec<Vec<u32>> =
            decode(&mut ort.translator(0, 1), &sources, options).unwrap().into_iter().map(|h| h.tokens).collect();
        let expected: Vec<Vec<u32>> = torch.into_iter().map(|h| h.tokens).collect();
        assert_eq!(alone, expected, "beam {beam_size}: ORT one by one = libtorch batched");
        assert_eq!(batched, expected, "beam {beam_size}: ORT batch of 40 = libtorch");

        // Rows joining a running search (continuous batching) keep their own positions and caches.
        let out: Vec<Vec<u32>> = decode_joining(&mut ort.translator(0, 1), &sources, options, 3)
            .unwrap()
            .into_iter()
            .map(|h| h.tokens)
            .collect();
        assert_eq!(out, expected, "beam {beam_size}: rows joining mid-decode");
    }
}

#[test]
fn heads_of_a_size_onnx_attention_does_not_take_are_padded_and_decode_alike() {
    // GroupQueryAttention takes head sizes that are multiples of 8; these heads have 6 values.
    tch::manual_seed(5);
    let config = Config { emb_dim: 24, n_heads: 4, ..Config::tiny(VOCAB) };
    let model = Seq2Seq::new(config, Device::Cpu).unwrap();
    assert_eq!(xlmc_bundle::contract::state::transformer::cache_head_dim(6), 8);
    let dir = tempfile::tempdir().unwrap();
    let mut ort = ort_model(&model, dir.path());
    let sources = sources_n(16);
    let options = DecodeOptions { beam_size: 2, ..Default::default() };
    let torch = decode(&mut model.translator(0, 1), &sources, options).unwrap();
    let onnx = decode(&mut ort.translator(0, 1), &sources, options).unwrap();
    for (t, o) in torch.iter().zip(&onnx) {
        assert_eq!(t.tokens, o.tokens);
        assert!((t.score - o.score).abs() < 1e-4, "scores {} vs {}", t.score, o.score);
    }
}
