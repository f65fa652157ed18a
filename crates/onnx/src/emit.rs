//! [`Emitter`]: a [`GraphBuilder`] that reads model weights by checkpoint name, with the small
//! vocabulary every xlmc graph is written in (linear layers, constants, unsqueeze), in one of
//! three [`Precision`]s.

use crate::{Dim, ElemType, GraphBuilder, OnnxError, attr, proto::GraphProto};

/// How a graph stores its weights and computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// fp32 weights and arithmetic: the reference, equal to libtorch within float rounding.
    #[default]
    Fp32,
    /// fp16 weights and arithmetic inside the graph (for GPUs); float inputs and outputs stay
    /// fp32 at the graph's edges, so runtimes and their caches do not change. ONNX Runtime's CPU
    /// provider runs such graphs too, casting around kernels it has no fp16 version of.
    Fp16,
    /// Weight matrices as int8 (one scale per output column) with activations quantized per call,
    /// which ONNX Runtime's CPU provider runs as dynamic int8 matrix products; the rest is fp32.
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        }
    }

    /// The element type of the graph's internal float arithmetic.
    pub fn compute_type(self) -> ElemType {
        if self == Precision::Fp16 { ElemType::F16 } else { ElemType::F32 }
    }
}

/// A weight: its dims and row-major fp32 values.
pub type WeightData = (Vec<i64>, Vec<f32>);

/// Builds one graph whose initializers come from `weights` (a model's named tensors).
pub struct Emitter<'w> {
    pub g: GraphBuilder,
    weights: &'w dyn Fn(&str) -> Option<WeightData>,
    added: std::collections::HashSet<String>,
    constants: usize,
    precision: Precision,
}

impl std::fmt::Debug for Emitter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter").field("g", &self.g).finish_non_exhaustive()
    }
}

impl<'w> Emitter<'w> {
    pub fn new(name: &str, weights: &'w dyn Fn(&str) -> Option<WeightData>, precision: Precision) -> Self {
        Self { g: GraphBuilder::new(name), weights, added: Default::default(), constants: 0, precision }
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// A float initializer in the graph's compute type.
    fn float_initializer(&mut self, name: &str, dims: &[i64], values: &[f32]) -> Result<String, OnnxError> {
        match self.precision {
            Precision::Fp16 => self.g.initializer_f16(name, dims, values),
            Precision::Fp32 | Precision::Int8 => self.g.initializer_f32(name, dims, values),
        }
    }

    /// An fp32 graph input, as the compute type (cast once at the edge for fp16).
    pub fn float_input(&mut self, name: &str, dims: &[Dim]) -> Result<String, OnnxError> {
        let x = self.g.input(name, ElemType::F32, dims)?;
        self.float32_to_compute(&x)
    }

    /// `x` (fp32) in the compute type: a cast with fp16, `x` itself otherwise.
    pub fn float32_to_compute(&mut self, x: &str) -> Result<String, OnnxError> {
        if self.precision != Precision::Fp16 {
            return Ok(x.to_owned());
        }
        self.cast_to_compute(x)
    }

    /// `x` (compute type) as fp32: a cast with fp16, `x` itself otherwise (for an operator that
    /// takes fp32 only in this graph, like ONNX Runtime's attention over an fp32 cache).
    pub fn compute_to_float32(&mut self, x: &str) -> Result<String, OnnxError> {
        if self.precision != Precision::Fp16 {
            return Ok(x.to_owned());
        }
        self.g.op("Cast", &[x], vec![attr::int("to", ElemType::F32.onnx_code())])
    }

    /// Exposes `value` (compute type) as the fp32 graph output `name`.
    pub fn float_output(&mut self, value: &str, name: &str, dims: &[Dim]) -> Result<(), OnnxError> {
        if self.precision == Precision::Fp16 {
            self.g.node("Cast", &[value], &[name], vec![attr::int("to", ElemType::F32.onnx_code())])?;
            return self.g.declare_output(name, ElemType::F32, dims);
        }
        self.g.output(value, name, ElemType::F32, dims)
    }

    /// `x` (bool, integer or float) cast to the compute type.
    pub fn cast_to_compute(&mut self, x: &str) -> Result<String, OnnxError> {
        self.g.op("Cast", &[x], vec![attr::int("to", self.precision.compute_type().onnx_code())])
    }

    pub fn finish(self) -> GraphProto {
        self.g.finish()
    }

    fn data(&self, name: &str) -> Result<WeightData, OnnxError> {
        (self.weights)(name).ok_or_else(|| OnnxError::MissingWeight(name.to_owned()))
    }

    /// The weight `name` as an initializer of the same name (added once, however often read).
    pub fn weight(&mut self, name: &str) -> Result<String, OnnxError> {
        if !self.added.insert(name.to_owned()) {
            return Ok(name.to_owned());
        }
        let (dims, values) = self.data(name)?;
        self.float_initializer(name, &dims, &values)
    }

    /// A 2-D weight `[rows, cols]` stored transposed as `{name}_t` (`[out, in]` → `[in, out]`
    /// for `MatMul`).
    pub fn weight_t(&mut self, name: &str) -> Result<String, OnnxError> {
        let (dims, values) = self.data(name)?;
        let [rows, cols] = dims[..] else { return Err(OnnxError::MissingWeight(format!("{name} (2-D)"))) };
        let (rows, cols) = (rows as usize, cols as usize);
        let transposed: Vec<f32> = (0..cols * rows).map(|i| values[(i % rows) * cols + i / rows]).collect();
        self.float_initializer(&format!("{name}_t"), &[cols as i64, rows as i64], &transposed)
    }

    /// A named initializer from values computed here (reordered gates, stacked directions).
    pub fn derived(&mut self, name: &str, dims: &[i64], values: &[f32]) -> Result<String, OnnxError> {
        self.float_initializer(name, dims, values)
    }

    /// The raw values of a weight, for [`Emitter::derived`].
    pub fn values(&self, name: &str) -> Result<WeightData, OnnxError> {
        self.data(name)
    }

    /// A scalar in the compute type.
    pub fn const_float(&mut self, value: f32) -> Result<String, OnnxError> {
        self.constants += 1;
        self.float_initializer(&format!("const_float_{}", self.constants), &[], &[value])
    }

    pub fn const_i64(&mut self, dims: &[i64], data: &[i64]) -> Result<String, OnnxError> {
        self.constants += 1;
        self.g.initializer_i64(&format!("const_i64_{}", self.constants), dims, data)
    }

    /// A node without attributes; returns its output's name.
    pub fn op(&mut self, op: &str, inputs: &[&str]) -> Result<String, OnnxError> {
        self.g.op(op, inputs, vec![])
    }

    pub fn unsqueeze(&mut self, x: &str, axes: &[i64]) -> Result<String, OnnxError> {
        let axes = self.const_i64(&[axes.len() as i64], axes)?;
        self.op("Unsqueeze", &[x, &axes])
    }

    pub fn squeeze(&mut self, x: &str, axes: &[i64]) -> Result<String, OnnxError> {
        let axes = self.const_i64(&[axes.len() as i64], axes)?;
        self.op("Squeeze", &[x, &axes])
    }

    /// `x Wᵀ + b` for the checkpoint's `prefix.weight` `[out, in]` and `prefix.bias`.
    pub fn linear(&mut self, x: &str, prefix: &str) -> Result<String, OnnxError> {
        let y = self.matmul_weight_t(x, &format!("{prefix}.weight"))?;
        let b = self.weight(&format!("{prefix}.bias"))?;
        self.op("Add", &[&y, &b])
    }

    /// The tied output layer: `x Eᵀ + bias` for embeddings `E` `[vocab, dim]`; `Gemm` with
    /// `transB` reads the embedding table itself (stored once), int8 keeps a transposed copy.
    pub fn tied_output(&mut self, x: &str, embeddings: &str, bias: &str) -> Result<String, OnnxError> {
        let bias = self.weight(bias)?;
        if self.precision == Precision::Int8 {
            let y = self.matmul_weight_t(x, embeddings)?;
            return self.op("Add", &[&y, &bias]);
        }
        let table = self.weight(embeddings)?;
        self.g.op("Gemm", &[x, &table, &bias], vec![crate::attr::int("transB", 1)])
    }

    /// `x Wᵀ` for the weight `name` `[out, in]`. With int8, W is stored as int8 with one
    /// scale per output column (symmetric, max |w| ↦ 127) and `x` is quantized per call
    /// (`DynamicQuantizeLinear` → `MatMulInteger` → rescale), which ONNX Runtime runs as one
    /// dynamic int8 MatMul on CPU.
    pub fn matmul_weight_t(&mut self, x: &str, name: &str) -> Result<String, OnnxError> {
        if self.precision != Precision::Int8 {
            let w = self.weight_t(name)?;
            return self.op("MatMul", &[x, &w]);
        }
        let (dims, values) = self.data(name)?;
        let [rows, cols] = dims[..] else { return Err(OnnxError::MissingWeight(format!("{name} (2-D)"))) };
        let (out, inp) = (rows as usize, cols as usize);
        let scales: Vec<f32> = (0..out)
            .map(|o| values[o * inp..(o + 1) * inp].iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12) / 127.0)
            .collect();
        // Transposed to [in, out], as MatMulInteger's B.
        let quantized: Vec<i8> = (0..inp * out)
            .map(|i| (values[(i % out) * inp + i / out] / scales[i % out]).round().clamp(-127.0, 127.0) as i8)
            .collect();
        let w = self.g.initializer_i8(&format!("{name}_t_int8"), &[inp as i64, out as i64], &quantized)?;
        let w_scale = self.g.initializer_f32(&format!("{name}_t_scale"), &[out as i64], &scales)?;
        self.constants += 1;
        let w_zero = self.g.initializer_i8(&format!("const_i8_{}", self.constants), &[], &[0])?;
        let (x_q, x_scale, x_zero) = (format!("{name}_xq"), format!("{name}_xscale"), format!("{name}_xzero"));
        self.g.node("DynamicQuantizeLinear", &[x], &[&x_q, &x_scale, &x_zero], vec![])?;
        let y = self.op("MatMulInteger", &[&x_q, &w, &x_zero, &w_zero])?;
        let y = self.g.op("Cast", &[&y], vec![crate::attr::int("to", 1)])?;
        let scale = self.op("Mul", &[&x_scale, &w_scale])?;
        self.op("Mul", &[&y, &scale])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposed_weights_are_stored_in_column_order() {
        let weights = |name: &str| (name == "w").then(|| (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        let mut e = Emitter::new("g", &weights, Precision::Fp32);
        e.weight_t("w").unwrap();
        assert!(matches!(e.weight("missing"), Err(OnnxError::MissingWeight(name)) if name == "missing"));
        let graph = e.finish();
        let init = &graph.initializer[0];
        assert_eq!((init.name.as_str(), init.dims.as_slice()), ("w_t", &[3i64, 2][..]));
        let values: Vec<f32> = init.raw_data.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(values, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn fp16_stores_half_weights_and_keeps_fp32_edges() {
        let weights = |name: &str| (name == "w").then(|| (vec![1, 2], vec![1.0, 1.0 / 3.0]));
        let mut e = Emitter::new("g", &weights, Precision::Fp16);
        let x = e.float_input("x", &[Dim::fixed(1), Dim::fixed(2)]).unwrap();
        let w = e.weight("w").unwrap();
        let y = e.op("Mul", &[&x, &w]).unwrap();
        e.float_output(&y, "y", &[Dim::fixed(1), Dim::fixed(2)]).unwrap();
        let graph = e.finish();
        let init = &graph.initializer[0];
        assert_eq!(init.data_type, crate::proto::tensor_proto::DataType::Float16 as i32);
        let values: Vec<f32> =
            init.raw_data.chunks(2).map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32()).collect();
        assert_eq!(values, [1.0, 0.333_251_95]); // 1/3 rounded to fp16's 10-bit mantissa
        let casts: Vec<_> = graph.node.iter().filter(|n| n.op_type == "Cast").collect();
        assert_eq!(casts.len(), 2, "one cast in, one out");
        assert_eq!((graph.input[0].name.as_str(), graph.output[0].name.as_str()), ("x", "y"));
        let elem = |v: &crate::proto::ValueInfoProto| match &v.r#type.as_ref().unwrap().value {
            Some(crate::proto::type_proto::Value::TensorType(t)) => t.elem_type,
            _ => panic!("tensor"),
        };
        let float = crate::proto::tensor_proto::DataType::Float as i32;
        assert_eq!((elem(&graph.input[0]), elem(&graph.output[0])), (float, float));
    }
}
