//! `exporter doctor`: proves, in a second, that libtorch and ONNX Runtime load from `.deps` and
//! compute the right numbers on this machine. The pipeline runs it as its first stage.

use std::fmt;

use anyhow::{Context, ensure};
use ndarray::Array2;
use tch::{Device as TchDevice, Kind, Tensor};
use xlmc_onnx::{Dim, ElemType, GraphBuilder, Model};

use crate::{
    cli::{Device, DoctorArgs},
    torch_device,
};

/// Largest difference tolerated between a backend's result and the hand computation.
const TOLERANCE: f64 = 1e-5;

/// One line per check, printed by the CLI.
#[derive(Debug, Default)]
pub struct Report {
    lines: Vec<(String, String)>,
}

impl Report {
    fn add(&mut self, check: &str, outcome: impl Into<String>) {
        self.lines.push((check.to_owned(), outcome.into()));
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (check, outcome) in &self.lines {
            writeln!(f, "{check:<22} {outcome}")?;
        }
        Ok(())
    }
}

/// Runs every check; the first failure is returned as an error naming the check.
pub fn check(args: &DoctorArgs) -> anyhow::Result<Report> {
    let mut report = Report::default();
    // Before any CUDA query: libtorch remembers the first answer.
    let cuda_library = xlmc_torch_device::load_cuda();
    let cuda_devices = tch::Cuda::device_count();
    report.add("libtorch", format!("tch {} for torch 2.11.0, {} CPU threads", tch_version(), tch::get_num_threads()));
    report.add(
        "cuda",
        if tch::Cuda::is_available() {
            format!("{cuda_devices} device(s), cuDNN {}", tch::Cuda::cudnn_is_available())
        } else {
            match cuda_library {
                Ok(()) => "no device visible (CPU only)".to_owned(),
                Err(reason) => format!("not loaded (CPU only): {}", first_line(reason)),
            }
        },
    );

    torch_linear_backward(TchDevice::Cpu).context("libtorch on CPU")?;
    report.add("torch cpu fwd/bwd", "ok");
    if args.device == Device::Cuda {
        torch_linear_backward(torch_device::select(Device::Cuda)?).context("libtorch on CUDA")?;
        report.add("torch cuda fwd/bwd", "ok");
    }

    let library = xlmc_runtime::locate_library()?;
    report.add("onnxruntime", library.display().to_string());
    ort_affine().context("ONNX Runtime")?;
    report.add("ort onnx graph", "ok");
    Ok(report)
}

fn tch_version() -> &'static str {
    "0.24.0"
}

/// The loader's message up to the first missing library, enough to say what is absent.
fn first_line(reason: &str) -> &str {
    reason.split(';').next_back().unwrap_or(reason).trim()
}

/// loss = Σ (x·w + b); its gradient wrt w is the column sums of x, and wrt b the row count.
fn torch_linear_backward(device: TchDevice) -> anyhow::Result<()> {
    let x_values = [1.0f32, 2.0, 3.0, -1.0, 0.5, 4.0];
    let x = Tensor::from_slice(&x_values).reshape([2, 3]).to(device);
    let w = Tensor::from_slice(&[0.1f32, -0.2, 0.3]).reshape([3, 1]).to(device).set_requires_grad(true);
    let b = Tensor::from_slice(&[0.5f32]).to(device).set_requires_grad(true);
    let loss = (x.matmul(&w) + &b).sum(Kind::Float);
    loss.backward();

    // Hand computation: rows of x·w are 0.6 and 1.0, plus b twice.
    let expected_loss = 0.6 + 1.0 + 2.0 * 0.5;
    ensure!((loss.double_value(&[]) - expected_loss).abs() < TOLERANCE, "forward gave {loss}");
    let grad_w = Vec::<f32>::try_from(w.grad().to(TchDevice::Cpu).flatten(0, -1))?;
    let expected_grad = [x_values[0] + x_values[3], x_values[1] + x_values[4], x_values[2] + x_values[5]];
    for (got, want) in grad_w.iter().zip(expected_grad) {
        ensure!((f64::from(got - want)).abs() < TOLERANCE, "grad w = {grad_w:?}, expected {expected_grad:?}");
    }
    ensure!((b.grad().double_value(&[0]) - 2.0).abs() < TOLERANCE, "grad b = {}", b.grad());
    Ok(())
}

/// y = x·w + b through a graph written by xlmc-onnx and run by ORT.
fn ort_affine() -> anyhow::Result<()> {
    let w = [1.0f32, -1.0, 0.5, 2.0, 0.0, 3.0]; // 3×2, row-major
    let b = [0.25f32, -0.5];
    let mut g = GraphBuilder::new("doctor_affine");
    g.input("x", ElemType::F32, &[Dim::symbolic("batch"), Dim::fixed(3)])?;
    g.initializer_f32("w", &[3, 2], &w)?;
    g.initializer_f32("b", &[2], &b)?;
    let xw = g.op("MatMul", &["x", "w"], vec![])?;
    let y = g.op("Add", &[&xw, "b"], vec![])?;
    g.output(&y, "y", ElemType::F32, &[Dim::symbolic("batch"), Dim::fixed(2)])?;
    let model = Model::new(g.finish()).to_bytes();

    let env = xlmc_runtime::environment()?;
    let mut session = xlmc_runtime::SessionOptions::default().from_memory(env, &model)?;
    let x = Array2::from_shape_vec((1, 3), vec![1.0f32, 2.0, 3.0])?;
    let outputs = session.run(ort::inputs!["x" => ort::value::TensorRef::from_array_view(&x)?])?;
    let y = outputs["y"].try_extract_array::<f32>()?;
    // Hand computation: [1+1+0, -1+4+9] + b.
    let expected = [2.0 + 0.25, 12.0 - 0.5];
    for (got, want) in y.iter().zip(expected) {
        ensure!((f64::from(got - want)).abs() < TOLERANCE, "y = {y}, expected {expected:?}");
    }
    Ok(())
}
