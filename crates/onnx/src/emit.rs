//! [`Emitter`]: a [`GraphBuilder`] that reads model weights by checkpoint name, with the small
//! vocabulary every xlmc graph is written in (linear layers, constants, unsqueeze).

use crate::{GraphBuilder, OnnxError, proto::GraphProto};

/// A weight: its dims and row-major fp32 values.
pub type WeightData = (Vec<i64>, Vec<f32>);

/// Builds one graph whose initializers come from `weights` (a model's named tensors).
pub struct Emitter<'w> {
    pub g: GraphBuilder,
    weights: &'w dyn Fn(&str) -> Option<WeightData>,
    added: std::collections::HashSet<String>,
    constants: usize,
    /// Weight matrices as int8 with dynamic int8 activations (see [`Emitter::matmul_weight_t`]).
    pub quantize: bool,
}

impl std::fmt::Debug for Emitter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter").field("g", &self.g).finish_non_exhaustive()
    }
}

impl<'w> Emitter<'w> {
    pub fn new(name: &str, weights: &'w dyn Fn(&str) -> Option<WeightData>) -> Self {
        Self { g: GraphBuilder::new(name), weights, added: Default::default(), constants: 0, quantize: false }
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
        self.g.initializer_f32(name, &dims, &values)
    }

    /// A 2-D weight `[rows, cols]` stored transposed as `{name}_t` (`[out, in]` → `[in, out]`
    /// for `MatMul`).
    pub fn weight_t(&mut self, name: &str) -> Result<String, OnnxError> {
        let (dims, values) = self.data(name)?;
        let [rows, cols] = dims[..] else { return Err(OnnxError::MissingWeight(format!("{name} (2-D)"))) };
        let (rows, cols) = (rows as usize, cols as usize);
        let transposed: Vec<f32> = (0..cols * rows).map(|i| values[(i % rows) * cols + i / rows]).collect();
        self.g.initializer_f32(&format!("{name}_t"), &[cols as i64, rows as i64], &transposed)
    }

    /// A named initializer from values computed here (reordered gates, stacked directions).
    pub fn derived(&mut self, name: &str, dims: &[i64], values: &[f32]) -> Result<String, OnnxError> {
        self.g.initializer_f32(name, dims, values)
    }

    /// The raw values of a weight, for [`Emitter::derived`].
    pub fn values(&self, name: &str) -> Result<WeightData, OnnxError> {
        self.data(name)
    }

    pub fn const_f32(&mut self, value: f32) -> Result<String, OnnxError> {
        self.constants += 1;
        self.g.initializer_f32(&format!("const_f32_{}", self.constants), &[], &[value])
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
        if self.quantize {
            let y = self.matmul_weight_t(x, embeddings)?;
            return self.op("Add", &[&y, &bias]);
        }
        let table = self.weight(embeddings)?;
        self.g.op("Gemm", &[x, &table, &bias], vec![crate::attr::int("transB", 1)])
    }

    /// `x Wᵀ` for the weight `name` `[out, in]`. With `quantize`, W is stored as int8 with one
    /// scale per output column (symmetric, max |w| ↦ 127) and `x` is quantized per call
    /// (`DynamicQuantizeLinear` → `MatMulInteger` → rescale), which ONNX Runtime runs as one
    /// dynamic int8 MatMul on CPU.
    pub fn matmul_weight_t(&mut self, x: &str, name: &str) -> Result<String, OnnxError> {
        if !self.quantize {
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
        let mut e = Emitter::new("g", &weights);
        e.weight_t("w").unwrap();
        assert!(matches!(e.weight("missing"), Err(OnnxError::MissingWeight(name)) if name == "missing"));
        let graph = e.finish();
        let init = &graph.initializer[0];
        assert_eq!((init.name.as_str(), init.dims.as_slice()), ("w_t", &[3i64, 2][..]));
        let values: Vec<f32> = init.raw_data.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(values, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
