//! ONNX Runtime running a graph that xlmc wrote itself, against a hand computation.

use ndarray::Array2;
use ort::value::TensorRef;
use xlmc_onnx::{Dim, ElemType, GraphBuilder, Model, attr};

const TOLERANCE: f32 = 1e-5;
const W: [f32; 6] = [0.5, -1.0, 2.0, 0.25, -0.75, 1.5]; // 2×3
const B: [f32; 3] = [0.1, 0.0, -0.2];

/// softmax(relu(x·W + b)) over the last axis, with a dynamic batch axis.
fn model_bytes() -> Vec<u8> {
    let mut g = GraphBuilder::new("relu_softmax");
    g.input("x", ElemType::F32, &[Dim::symbolic("batch"), Dim::fixed(2)]).unwrap();
    g.initializer_f32("w", &[2, 3], &W).unwrap();
    g.initializer_f32("b", &[3], &B).unwrap();
    let xw = g.op("MatMul", &["x", "w"], vec![]).unwrap();
    let a = g.op("Add", &[&xw, "b"], vec![]).unwrap();
    let r = g.op("Relu", &[&a], vec![]).unwrap();
    let s = g.op("Softmax", &[&r], vec![attr::int("axis", -1)]).unwrap();
    g.output(&s, "probs", ElemType::F32, &[Dim::symbolic("batch"), Dim::fixed(3)]).unwrap();
    Model::new(g.finish()).with_metadata("xlmc.test", "relu_softmax").to_bytes()
}

fn by_hand(x: &[f32]) -> Vec<f32> {
    x.chunks(2)
        .flat_map(|row| {
            let z: Vec<f32> = (0..3).map(|j| (row[0] * W[j] + row[1] * W[3 + j] + B[j]).max(0.0)).collect();
            let total: f32 = z.iter().map(|v| v.exp()).sum();
            z.into_iter().map(move |v| v.exp() / total)
        })
        .collect()
}

#[test]
fn self_written_graph_matches_hand_computation_at_any_batch_size() {
    let env = xlmc_runtime::environment().expect("ORT environment");
    let mut session = xlmc_runtime::SessionOptions::default().from_memory(env, &model_bytes()).expect("session");
    for batch in [1usize, 3, 8] {
        let x: Vec<f32> = (0..batch * 2).map(|i| (i as f32 - 4.0) * 0.37).collect();
        let input = Array2::from_shape_vec((batch, 2), x.clone()).unwrap();
        let outputs = session.run(ort::inputs!["x" => TensorRef::from_array_view(&input).unwrap()]).expect("run");
        let probs = outputs["probs"].try_extract_array::<f32>().expect("f32 output");
        assert_eq!(probs.shape(), &[batch, 3]);
        for (got, want) in probs.iter().zip(by_hand(&x)) {
            assert!((got - want).abs() < TOLERANCE, "batch {batch}: {probs} vs {want}");
        }
    }
}

#[test]
fn graph_metadata_and_io_names_survive_the_round_trip() {
    let env = xlmc_runtime::environment().expect("ORT environment");
    let session = xlmc_runtime::SessionOptions::default().from_memory(env, &model_bytes()).expect("session");
    let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    assert_eq!((inputs, outputs), (vec!["x"], vec!["probs"]));
    let metadata = session.metadata().expect("metadata");
    assert_eq!(metadata.custom("xlmc.test").as_deref(), Some("relu_softmax"));
    assert_eq!(metadata.producer().as_deref(), Some("xlmc"));
}

#[test]
fn a_wrong_input_shape_is_an_error_not_a_crash() {
    let env = xlmc_runtime::environment().expect("ORT environment");
    let mut session = xlmc_runtime::SessionOptions::default().from_memory(env, &model_bytes()).expect("session");
    let input = Array2::<f32>::zeros((2, 5));
    let result = session.run(ort::inputs!["x" => TensorRef::from_array_view(&input).unwrap()]);
    assert!(result.is_err());
}
