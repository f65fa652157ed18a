//! `exporter import-xlm` against python torch: checkpoints written by `torch.save` in XLM's layout
//! (zip and legacy formats, with and without DataParallel's `module.` prefix, translation and
//! pretrained models) load, and the imported model's logits equal an XLM-style PyTorch forward
//! on the same batch to 1e-5.

use std::path::Path;

use tch::{Device, Kind, Tensor};
use xlmc_tests::{binary, torch_python};
use xlmc_transformer::Seq2Seq;

const TOLERANCE: f64 = 1e-5;
const ORACLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/oracles/xlm_reference.py");

fn oracle(dir: &Path, format: &str, kind: &str, prefix: &str) -> bool {
    let Some(mut python) = torch_python() else { return false };
    let output = python.arg(ORACLE).arg(dir).args([format, kind, prefix]).output().unwrap();
    assert!(output.status.success(), "oracle: {}", String::from_utf8_lossy(&output.stderr));
    true
}

fn import(dir: &Path, out: &Path) -> std::process::Output {
    std::process::Command::new(binary("exporter"))
        .env_clear()
        .arg("import-xlm")
        .arg(dir.join("model.pth"))
        .arg("--codes")
        .arg(dir.join("codes"))
        .arg("--vocab")
        .arg(dir.join("vocab"))
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn rows(value: &serde_json::Value) -> Vec<Vec<u32>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect())
        .collect()
}

/// xlmc's logits [bs, len, vocab] on the oracle's batch: the decoder's for a translation model,
/// the encoder states through the (shared) output layer for a pretrained one.
fn xlmc_logits(model: &Seq2Seq, inputs: &serde_json::Value, kind: &str) -> Tensor {
    let translator = model.translator(0, 1);
    let (src, src_len) = translator.batch(&rows(&inputs["sources"])).unwrap();
    tch::no_grad(|| {
        let (encoded, src_mask) = model.encoder.forward(&src, &src_len, 0, None, false);
        if kind == "mlm" {
            return model.decoder.logits(&encoded);
        }
        let targets = rows(&inputs["targets"]);
        let width = targets.iter().map(Vec::len).max().unwrap() + 1;
        let mut flat = vec![2i64; targets.len() * width];
        for (row, target) in targets.iter().enumerate() {
            flat[row * width] = 1;
            for (i, &t) in target.iter().enumerate() {
                flat[row * width + i + 1] = i64::from(t);
            }
        }
        let tokens = Tensor::from_slice(&flat).view([targets.len() as i64, width as i64]);
        let lengths = Tensor::from_slice(&targets.iter().map(|t| t.len() as i64 + 1).collect::<Vec<_>>());
        let (hidden, _) = model.decoder.forward(&tokens, &lengths, 1, Some((&encoded, &src_mask)), false);
        model.decoder.logits(&hidden)
    })
}

#[test]
fn torch_checkpoints_import_with_python_parity() {
    for (format, kind, prefix) in
        [("zip", "mt", "plain"), ("legacy", "mt", "module"), ("zip", "mlm", "module"), ("legacy", "mlm", "plain")]
    {
        let case = format!("{format}/{kind}/{prefix}");
        let dir = tempfile::tempdir().unwrap();
        if !oracle(dir.path(), format, kind, prefix) {
            return;
        }
        let out = dir.path().join("imported");
        let output = import(dir.path(), &out);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{case}: {}{stdout}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("languages en,fr"), "{case}: {stdout}");
        if kind == "mlm" {
            assert!(stdout.contains("initialised fresh") && stdout.contains("decoder.encoder_attn.*"), "{stdout}");
        } else {
            assert!(!stdout.contains("initialised fresh"), "{case}: a translation checkpoint is complete: {stdout}");
        }

        let model = Seq2Seq::load(&out, Device::Cpu).unwrap();
        let expected = json(&dir.path().join("logits.json"));
        let shape: Vec<i64> = expected["shape"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect();
        let values: Vec<f32> =
            expected["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let expected = Tensor::from_slice(&values).view(shape.as_slice());
        let got = xlmc_logits(&model, &json(&dir.path().join("inputs.json")), kind);
        assert_eq!(got.size(), expected.size(), "{case}");
        let diff = (got - &expected).abs().max().to_kind(Kind::Double).double_value(&[]);
        assert!(diff <= TOLERANCE, "{case}: max |Δ logit| {diff}");
        let spread = expected.std(true).double_value(&[]);
        assert!(spread > 0.1, "{case}: the logits vary ({spread}), so agreement means something");
    }
}

#[test]
fn broken_checkpoints_and_vocabularies_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    if !oracle(dir.path(), "zip", "mt", "plain") {
        return;
    }
    let out = dir.path().join("imported");

    // A vocabulary one word longer than the checkpoint's dictionary.
    let vocab = std::fs::read_to_string(dir.path().join("vocab")).unwrap();
    std::fs::write(dir.path().join("vocab"), format!("{vocab}zz 1\n")).unwrap();
    let output = import(dir.path(), &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("n_words"), "{stderr}");
    assert!(!out.exists());
    std::fs::write(dir.path().join("vocab"), vocab).unwrap();

    // A truncated checkpoint: the error names the file.
    let pth = dir.path().join("model.pth");
    let bytes = std::fs::read(&pth).unwrap();
    std::fs::write(&pth, &bytes[..bytes.len() / 2]).unwrap();
    let output = import(dir.path(), &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("model.pth"), "{stderr}");
    assert!(!out.exists());
    assert!(
        std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".import")),
        "no staging folder is left behind"
    );
}
