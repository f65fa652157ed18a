//! `exporter export` → bundle → ONNX Runtime, against the same model through libtorch: parity of
//! every graph, identical greedy and beam translations, a valid ONNX file by onnx's own checker,
//! and bundles that refuse to load when changed.

use std::process::Command;

use xlmc_tests::{binary, oracle_python};

use crate::train::{corpus_tokenizer_and_teacher_config, exporter, exporter_fails};

/// The number after `label` in `text` (`max |Δ| 1.9e-6`).
fn number_after(text: &str, label: &str) -> f64 {
    let rest = text.split(label).nth(1).unwrap_or_else(|| panic!("no `{label}` in {text}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn exported_teacher_and_students_decode_through_onnx_runtime_like_libtorch() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    corpus_tokenizer_and_teacher_config(dir.path());
    exporter(&["train", "--config", &path("teacher.toml"), "--max-updates", "40"]);
    exporter(&["prune", "--teacher", &path("run/model"), "--keep", "2-1", "--out", &path("student")]);
    let trim = ["prune", "--teacher", &path("run/model"), "--keep", "1-1", "--trim-vocab", &path("corpus")];
    exporter(&[&trim[..], &["--out", &path("trimmed")]].concat());
    // A BiGRU student, distilled for a few updates: exported with ONNX's own GRU operator.
    let bigru = format!(
        "corpus = {:?}\nout = {:?}\ndev_sentences = 20\n[train]\nmax_tokens = 300\nlr = 0.003\nwarmup_updates = 2\nmax_updates = 12\neval_every = 12\ncheckpoint_every = 12\n[bigru]\nemb_dim = 16\nhidden = 12\ndropout = 0.0\n",
        path("corpus"),
        path("bigru")
    );
    std::fs::write(path("bigru.toml"), bigru).unwrap();
    exporter(&["distill", "--teacher", &path("run/model"), "--arch", "bigru", "--config", &path("bigru.toml")]);
    // 240 sentences of 1–12 words, some longer than anything in training.
    let sentences: String = (0..240)
        .map(|i| (0..1 + i % 12).map(|j| format!("w{}", (i * 7 + j * 3) % 6)).collect::<Vec<_>>().join(" ") + "\n")
        .collect();
    std::fs::write(path("in.en"), sentences).unwrap();

    for model in ["run/model", "student", "trimmed", "bigru/model"] {
        let bundle = path(&format!("{}.bundle", model.replace('/', "-")));
        let text = exporter(&["export", "--model", &path(model), "--out", &bundle]);
        assert!(text.contains("encoder.onnx") && text.contains("decoder.onnx"), "{text}");
        let report = exporter(&["verify", "--model", &path(model), "--bundle", &bundle, "--input", &path("in.en")]);
        let (encoder, decoder) = (number_after(&report, "encoder: max |Δ|"), number_after(&report, "max |Δ log-prob|"));
        assert!(encoder <= 1e-4 && decoder <= 1e-4, "{model}: {report}");
        assert!(report.contains("20 steps") && report.contains("greedy: 240/240 translations identical"), "{report}");
        let manifest = std::fs::read_to_string(format!("{bundle}/manifest.json")).unwrap();
        let architecture = if model.starts_with("bigru") { "bigru" } else { "transformer" };
        assert!(manifest.contains(&format!("\"architecture\": \"{architecture}\"")), "{manifest}");

        // Beam search through the shared core: the same file either way.
        for (flag, dir_or_bundle, out) in [("--model", path(model), "torch.fr"), ("--bundle", bundle.clone(), "ort.fr")]
        {
            let out = path(out);
            exporter(&["translate", flag, &dir_or_bundle, "--input", &path("in.en"), "--output", &out, "--beam", "3"]);
        }
        assert_eq!(
            std::fs::read_to_string(path("ort.fr")).unwrap(),
            std::fs::read_to_string(path("torch.fr")).unwrap()
        );
    }
    // Asking for CUDA where ONNX Runtime has none: one clear warning, the same translations on the CPU.
    let cuda = Command::new(binary("exporter"))
        .env_clear()
        .args(["translate", "--bundle", &path("bigru-model.bundle"), "--input", &path("in.en"), "--beam", "3"])
        .args(["--device", "cuda", "--output", &path("cuda.fr")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&cuda.stderr);
    assert!(cuda.status.success() && stderr.contains("running on the CPU"), "{stderr}");
    assert_eq!(std::fs::read_to_string(path("cuda.fr")).unwrap(), std::fs::read_to_string(path("ort.fr")).unwrap());

    // int8: smaller graphs that still decode every sentence; verify's fp32 tolerance refuses
    // them, since their numbers really differ.
    let int8 = path("int8.bundle");
    exporter(&["export", "--model", &path("run/model"), "--out", &int8, "--precision", "int8"]);
    let graph_bytes = |bundle: &str| -> u64 {
        ["encoder.onnx", "decoder.onnx"].iter().map(|f| std::fs::metadata(format!("{bundle}/{f}")).unwrap().len()).sum()
    };
    assert!(graph_bytes(&int8) < graph_bytes(&path("run-model.bundle")));
    assert!(std::fs::read_to_string(format!("{int8}/manifest.json")).unwrap().contains("\"precision\": \"int8\""));
    let error =
        exporter_fails(&["verify", "--model", &path("run/model"), "--bundle", &int8, "--input", &path("in.en")]);
    assert!(error.contains("over the tolerance"), "{error}");
    exporter(&["translate", "--bundle", &int8, "--input", &path("in.en"), "--output", &path("int8.fr")]);
    assert_eq!(std::fs::read_to_string(path("int8.fr")).unwrap().lines().count(), 240);

    // fp16: half the graph bytes, fp16 arithmetic inside, fp32 at the edges; within a loose
    // tolerance of libtorch's fp32 (the BiGRU's ONNX GRU in fp16 too).
    for model in ["run/model", "bigru/model"] {
        let fp32 = path(&format!("{}.bundle", model.replace('/', "-")));
        let fp16 = path(&format!("{}-fp16.bundle", model.replace('/', "-")));
        exporter(&["export", "--model", &path(model), "--out", &fp16, "--precision", "fp16"]);
        assert!(graph_bytes(&fp16) * 100 < graph_bytes(&fp32) * 55, "{model}: fp16 graphs about half the size");
        let verify = ["verify", "--model", &path(model), "--bundle", &fp16, "--input", &path("in.en")];
        let report = exporter(&[&verify[..], &["--tolerance", "0.05"]].concat());
        let (encoder, decoder) = (number_after(&report, "encoder: max |Δ|"), number_after(&report, "max |Δ log-prob|"));
        assert!(encoder > 1e-6 && decoder > 1e-6, "{model}: fp16 really rounds: {report}");
    }

    // The benchmark times every backend on the same sentences; with a reference it scores them,
    // and ONNX Runtime fp32 translates exactly as libtorch does.
    let bench = exporter(&[
        "bench",
        "--model",
        &path("run/model"),
        "--bundle",
        &path("run-model.bundle"),
        "--bundle",
        &path("run-model-fp16.bundle"),
        "--bundle",
        &int8,
        "--input",
        &path("in.en"),
        "--reference",
        &path("in.en"),
        "--sentences",
        "24",
        "--batch-sizes",
        "1,8",
    ]);
    let rows = |label: &str| -> Vec<String> {
        bench.lines().filter(|l| l.starts_with(&format!("| {label} |"))).map(str::to_owned).collect()
    };
    for label in ["libtorch", "onnxruntime fp32", "onnxruntime fp16", "onnxruntime int8"] {
        assert_eq!(rows(label).len(), 3, "two speed rows and one quality row for {label}: {bench}");
    }
    let quality = |label: &str| {
        rows(label)[2].split('|').map(str::trim).filter(|c| !c.is_empty()).skip(1).collect::<Vec<_>>().join(" ")
    };
    assert_eq!(quality("onnxruntime fp32"), quality("libtorch"), "{bench}");
    assert!(quality("libtorch").ends_with("24/24"), "{bench}");

    // onnx's own checker, with shape inference, accepts every graph.
    let bundle = path("run-model.bundle");
    let check = oracle_python()
        .args(["-c", "import onnx, sys\nfor f in sys.argv[1:]:\n    onnx.checker.check_model(f, full_check=True)\n    m = onnx.load(f)\n    print(f, m.ir_version, m.opset_import[0].version)"])
        .arg(format!("{bundle}/encoder.onnx"))
        .arg(format!("{bundle}/decoder.onnx"))
        .arg(path("bigru-model.bundle/encoder.onnx"))
        .arg(path("bigru-model.bundle/decoder.onnx"))
        .arg(format!("{int8}/encoder.onnx"))
        .arg(format!("{int8}/decoder.onnx"))
        .arg(path("run-model-fp16.bundle/encoder.onnx"))
        .arg(path("run-model-fp16.bundle/decoder.onnx"))
        .arg(path("bigru-model-fp16.bundle/encoder.onnx"))
        .arg(path("bigru-model-fp16.bundle/decoder.onnx"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "onnx.checker: {}{stdout}", String::from_utf8_lossy(&check.stderr));
    assert_eq!(stdout.matches(" 8 17").count(), 10, "{stdout}");

    // An existing bundle is only replaced with --force, and then as a whole.
    let error = exporter_fails(&["export", "--model", &path("student"), "--out", &bundle]);
    assert!(error.contains("exists") && error.contains("--force"), "{error}");
    exporter(&["export", "--model", &path("student"), "--out", &bundle, "--force"]);
    let manifest = std::fs::read_to_string(format!("{bundle}/manifest.json")).unwrap();
    assert!(manifest.contains(&path("student")), "the student's manifest now");

    // A changed, missing or newer bundle is refused, naming the file.
    let translate = ["translate", "--bundle", &bundle, "--input", &path("in.en")];
    let decoder = format!("{bundle}/decoder.onnx");
    let original = std::fs::read(&decoder).unwrap();
    let mut bytes = original.clone();
    bytes[original.len() / 2] ^= 1;
    std::fs::write(&decoder, bytes).unwrap();
    let error = exporter_fails(&translate);
    assert!(error.contains("decoder.onnx") && error.contains("sha256"), "{error}");
    std::fs::write(&decoder, original).unwrap();
    std::fs::remove_file(format!("{bundle}/tokenizer.json")).unwrap();
    let error = exporter_fails(&translate);
    assert!(error.contains("tokenizer.json") && error.contains("missing"), "{error}");
    let current = format!("\"format_version\": {}", xlmc_bundle::FORMAT_VERSION);
    let newer = manifest.replace(&current, "\"format_version\": 99");
    assert_ne!(newer, manifest);
    std::fs::write(format!("{bundle}/manifest.json"), newer).unwrap();
    let error = exporter_fails(&translate);
    assert!(error.contains("manifest.json") && error.contains("newer"), "{error}");
    std::fs::write(format!("{bundle}/manifest.json"), manifest.replace(&current, "\"format_version\": 1")).unwrap();
    let error = exporter_fails(&translate);
    assert!(error.contains("manifest.json") && error.contains("older") && error.contains("export"), "{error}");
}
