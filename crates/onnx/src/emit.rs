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
    /// which ONNX Runtime's CPU provider runs as dynamic int8 matrix products; vocabulary
    /// embeddings as int8 rows (one scale per entry); the rest is fp32.
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
    /// scale per output column (symmetric, max |w| ↦ [`WEIGHT_LEVELS`]) and `x` is quantized per call
    /// (`DynamicQuantizeLinear` → `MatMulInteger` → rescale), which ONNX Runtime runs as one
    /// dynamic int8 MatMul on CPU.
    pub fn matmul_weight_t(&mut self, x: &str, name: &str) -> Result<String, OnnxError> {
        if self.precision != Precision::Int8 {
            let w = self.weight_t(name)?;
            return self.op("MatMul", &[x, &w]);
        }
        let (dims, values) = self.data(name)?;
        let [out, inp] = two_dims(name, &dims)?;
        let (scale_name, scales) = self.row_scales(name, out, &values)?;
        // Transposed to [in, out], as MatMulInteger's B.
        let quantized: Vec<i8> =
            (0..inp * out).map(|i| quantize(values[(i % out) * inp + i / out], scales[i % out])).collect();
        let w = self.g.initializer_i8(&format!("{name}_t_int8"), &[inp as i64, out as i64], &quantized)?;
        self.constants += 1;
        let w_zero = self.g.initializer_i8(&format!("const_i8_{}", self.constants), &[], &[0])?;
        let (x_q, x_scale, x_zero) = (format!("{name}_xq"), format!("{name}_xscale"), format!("{name}_xzero"));
        self.g.node("DynamicQuantizeLinear", &[x], &[&x_q, &x_scale, &x_zero], vec![])?;
        let y = self.op("MatMulInteger", &[&x_q, &w, &x_zero, &w_zero])?;
        let y = self.g.op("Cast", &[&y], vec![crate::attr::int("to", 1)])?;
        let scale = self.op("Mul", &[&x_scale, &scale_name])?;
        self.op("Mul", &[&y, &scale])
    }

    /// The rows of the embedding table `table` `[entries, dim]` for `ids` (any shape): `[..ids,
    /// dim]` in the compute type. With int8 the table is stored as int8 with one scale per entry
    /// (the scales the tied output layer's columns use) and the looked-up rows are rescaled, so
    /// no fp32 copy of the vocabulary's embeddings is kept.
    pub fn embedding(&mut self, table: &str, ids: &str) -> Result<String, OnnxError> {
        if self.precision != Precision::Int8 {
            let table = self.weight(table)?;
            return self.op("Gather", &[&table, ids]);
        }
        let (dims, values) = self.data(table)?;
        let [entries, dim] = two_dims(table, &dims)?;
        let (scale_name, scales) = self.row_scales(table, entries, &values)?;
        let quantized: Vec<i8> = values.iter().enumerate().map(|(i, &v)| quantize(v, scales[i / dim])).collect();
        let rows = self.g.initializer_i8(&format!("{table}_int8"), &[entries as i64, dim as i64], &quantized)?;
        let rows = self.op("Gather", &[&rows, ids])?;
        let rows = self.cast_to_compute(&rows)?;
        let row_scales = self.op("Gather", &[&scale_name, ids])?;
        let row_scales = self.unsqueeze(&row_scales, &[-1])?;
        self.op("Mul", &[&rows, &row_scales])
    }

    /// One scale per row of `name` `[rows, ..]` (max |w| / [`WEIGHT_LEVELS`]), as the fp32 initializer
    /// `{name}_scale`, added once and shared by every int8 copy of the weight.
    fn row_scales(&mut self, name: &str, rows: usize, values: &[f32]) -> Result<(String, Vec<f32>), OnnxError> {
        let width = values.len() / rows.max(1);
        let scales: Vec<f32> = (0..rows)
            .map(|r| {
                values[r * width..(r + 1) * width].iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12) / WEIGHT_LEVELS
            })
            .collect();
        let scale_name = format!("{name}_scale");
        if self.added.insert(scale_name.clone()) {
            self.g.initializer_f32(&scale_name, &[rows as i64], &scales)?;
        }
        Ok((scale_name, scales))
    }
}

/// The largest |int8 weight|: 7 bits, not 8. ONNX Runtime's x86 kernels without VNNI (AVX2)
/// multiply uint8 activations by int8 weights with `vpmaddubsw`, which adds adjacent products in
/// saturating int16: 255·127·2 overflows it, 255·63·2 does not. With 8-bit weights such a CPU
/// returned wrong sums for 117 of 3,072 outputs of one 256 × 768 product (up to 11% of the
/// largest), costing the teacher 0.7 test BLEU; 7-bit weights are exact on every CPU.
pub const WEIGHT_LEVELS: f32 = 63.0;

/// `value` as int8 under `scale` (symmetric, round to nearest, within ±[`WEIGHT_LEVELS`]).
fn quantize(value: f32, scale: f32) -> i8 {
    (value / scale).round().clamp(-WEIGHT_LEVELS, WEIGHT_LEVELS) as i8
}

/// The dims of a 2-D weight, or an error naming it.
fn two_dims(name: &str, dims: &[i64]) -> Result<[usize; 2], OnnxError> {
    match dims {
        &[rows, cols] => Ok([rows as usize, cols as usize]),
        _ => Err(OnnxError::MissingWeight(format!("{name} (2-D)"))),
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

    #[test]
    fn int8_embeddings_are_int8_rows_sharing_the_output_layers_scales() {
        // A tied table [3 entries, 2 dims]: looked up, and read by the output layer.
        let table = vec![0.5, -1.0, 2.0, 0.25, -0.03, 0.01];
        let weights = |name: &str| (name == "e").then(|| (vec![3, 2], table.clone()));
        let mut e = Emitter::new("g", &weights, Precision::Int8);
        let ids = e.g.input("ids", ElemType::I64, &[Dim::fixed(4)]).unwrap();
        let rows = e.embedding("e", &ids).unwrap();
        e.matmul_weight_t(&rows, "e").unwrap();
        let graph = e.finish();
        let float = crate::proto::tensor_proto::DataType::Float as i32;
        let names: Vec<(&str, i32)> = graph.initializer.iter().map(|i| (i.name.as_str(), i.data_type)).collect();
        // No fp32 copy of the table: int8 rows for the lookup, int8 columns for the output layer,
        // and one scale per entry for both.
        assert!(!names.iter().any(|&(n, t)| t == float && n.starts_with('e') && n != "e_scale"), "{names:?}");
        let init = |name: &str| graph.initializer.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("{name}"));
        let scales: Vec<f32> =
            init("e_scale").raw_data.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(scales, [1.0 / WEIGHT_LEVELS, 2.0 / WEIGHT_LEVELS, 0.03 / WEIGHT_LEVELS]);
        let rows = init("e_int8");
        assert_eq!(rows.dims, [3, 2]);
        for (i, &q) in rows.raw_data.iter().enumerate() {
            let restored = q as i8 as f32 * scales[i / 2];
            assert!((restored - table[i]).abs() <= scales[i / 2] / 2.0, "entry {i}: {restored} vs {}", table[i]);
        }
        assert_eq!(init("e_t_int8").dims, [2, 3]);
        // Each entry's largest value maps to ±63, never beyond: 7-bit weights, so AVX2's
        // saturating int16 pair sums cannot overflow (255 · 63 · 2 < 32,767).
        for name in ["e_int8", "e_t_int8"] {
            let largest = init(name).raw_data.iter().map(|&q| (q as i8).unsigned_abs()).max();
            assert_eq!(largest, Some(63), "{name}");
        }
        assert_eq!(graph.initializer.iter().filter(|i| i.name.ends_with("_scale")).count(), 1);
    }
}
