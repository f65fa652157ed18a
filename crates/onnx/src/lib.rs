//! Writing ONNX models from Rust.
//!
//! libtorch has no ONNX exporter, so xlmc builds its graphs itself:
//! - [`proto`] holds the ONNX schema types (the subset xlmc emits, field numbers per the spec);
//! - [`GraphBuilder`] adds inputs, initializers and nodes and checks, as it goes, that every
//!   name is defined once and used only after it is defined;
//! - [`Model`] wraps a graph with its opset and metadata and writes it atomically.
//!
//! ```
//! use xlmc_onnx::{Dim, ElemType, GraphBuilder, Model};
//! let mut g = GraphBuilder::new("affine");
//! g.input("x", ElemType::F32, &[Dim::symbolic("batch"), Dim::fixed(2)]).unwrap();
//! g.initializer_f32("w", &[2, 1], &[0.5, -1.0]).unwrap();
//! let y = g.op("MatMul", &["x", "w"], vec![]).unwrap();
//! g.output(&y, "y", ElemType::F32, &[Dim::symbolic("batch"), Dim::fixed(1)]).unwrap();
//! let bytes = Model::new(g.finish()).to_bytes();
//! assert!(!bytes.is_empty());
//! ```

mod emit;
mod graph;
mod model;

pub use emit::{Emitter, Precision, WeightData};
pub use graph::{Dim, ElemType, GraphBuilder, attr};
pub use model::{DEFAULT_OPSET, IR_VERSION, Model, stored_values};

/// ONNX schema types generated from `proto/onnx/onnx_subset.proto`.
#[allow(missing_debug_implementations, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

/// What can go wrong while building or writing a model.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("ONNX name `{0}` is defined twice in graph `{1}`")]
    DuplicateName(String, String),
    #[error("node `{node}` reads `{input}`, which is not defined before it in graph `{graph}`")]
    UndefinedInput { node: String, input: String, graph: String },
    #[error("graph output `{0}` is not produced by any node, input or initializer")]
    UndefinedOutput(String),
    #[error("initializer `{name}`: shape {dims:?} holds {expected} values but {got} were given")]
    InitializerSize { name: String, dims: Vec<i64>, expected: usize, got: usize },
    #[error("the model has no weight `{0}`")]
    MissingWeight(String),
    #[error("reading ONNX model {path}: {source}")]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("ONNX model {path} does not parse: {message}")]
    Decode { path: std::path::PathBuf, message: String },
    #[error("writing ONNX model {path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
}
