//! The Transformer as two ONNX graphs for ONNX Runtime, computing what [`crate::Translator`]
//! computes:
//!
//! - `encoder.onnx`: `tokens` [batch, src_len] (XLM layout `</s> w… </s>`, padded), `lengths`
//!   [batch], `lang` [1] → `source_mask` [batch, src_len] and, for every decoder layer `i`, the
//!   cross-attention keys/values `cross_k.i`/`cross_v.i` [batch, heads, src_len, head_dim] —
//!   computed once per sentence here rather than in a third graph, so a step never recomputes them
//!   and a backend keeps one session fewer;
//! - `decoder.onnx`, one step: `tokens` [rows], `positions` [rows], `lang` [1], `source_mask`,
//!   `self_mask` [rows, steps] (this step's column included), `cross_k.i`/`cross_v.i`, and the
//!   self-attention cache `past_k.i`/`past_v.i` [rows, heads, steps − 1, head_dim] →
//!   `log_probs` [rows, vocab] and `present_k.i`/`present_v.i` (the cache with this step).
//!
//! Batch, length and step axes are dynamic. Weights are fp32 initializers named after the
//! checkpoint's tensors (linear weights stored transposed, `…weight_t`); the decoder's output
//! layer reads the tied embedding through `Gemm` with `transB`, so it is stored once.

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};
use xlmc_onnx::{Dim, ElemType, GraphBuilder, Model, OnnxError, attr};

use crate::{Config, Seq2Seq};

pub const ENCODER_FILE: &str = "encoder.onnx";
pub const DECODER_FILE: &str = "decoder.onnx";
/// XLM's LayerNorm epsilon.
const LAYER_NORM_EPS: f32 = 1e-12;

/// The two graphs of an exported Transformer.
#[derive(Debug)]
pub struct OnnxGraphs {
    pub encoder: Model,
    pub decoder: Model,
}

impl Seq2Seq {
    /// Builds the encoder and one-step decoder graphs from the current weights.
    pub fn to_onnx(&self) -> Result<OnnxGraphs, OnnxError> {
        let weights: BTreeMap<String, Tensor> = self.vs.variables().into_iter().collect();
        let mut encoder = Emitter::new("xlmc_encoder", &weights, &self.config);
        encoder.encoder()?;
        let mut decoder = Emitter::new("xlmc_decoder_step", &weights, &self.config);
        decoder.decoder_step()?;
        Ok(OnnxGraphs { encoder: Model::new(encoder.g.finish()), decoder: Model::new(decoder.g.finish()) })
    }
}

fn values(tensor: &Tensor) -> Vec<f32> {
    let flat = tensor.to_kind(Kind::Float).to(Device::Cpu).contiguous().flatten(0, -1);
    Vec::<f32>::try_from(flat).expect("float tensor")
}

/// Adds nodes to one graph, reading weights by checkpoint name.
struct Emitter<'w> {
    g: GraphBuilder,
    weights: &'w BTreeMap<String, Tensor>,
    config: &'w Config,
    constants: usize,
}

impl<'w> Emitter<'w> {
    fn new(name: &str, weights: &'w BTreeMap<String, Tensor>, config: &'w Config) -> Self {
        Self { g: GraphBuilder::new(name), weights, config, constants: 0 }
    }

    fn weight(&mut self, name: &str) -> Result<String, OnnxError> {
        let tensor = &self.weights[name];
        self.g.initializer_f32(name, &tensor.size(), &values(tensor))
    }

    /// A `[out, in]` linear weight stored as `[in, out]` for `MatMul`.
    fn weight_t(&mut self, name: &str) -> Result<String, OnnxError> {
        let tensor = self.weights[name].tr();
        self.g.initializer_f32(&format!("{name}_t"), &tensor.size(), &values(&tensor))
    }

    fn const_f32(&mut self, value: f32) -> Result<String, OnnxError> {
        self.constants += 1;
        self.g.initializer_f32(&format!("const_f32_{}", self.constants), &[], &[value])
    }

    fn const_i64(&mut self, dims: &[i64], data: &[i64]) -> Result<String, OnnxError> {
        self.constants += 1;
        self.g.initializer_i64(&format!("const_i64_{}", self.constants), dims, data)
    }

    fn op(&mut self, op: &str, inputs: &[&str]) -> Result<String, OnnxError> {
        self.g.op(op, inputs, vec![])
    }

    fn unsqueeze(&mut self, x: &str, axes: &[i64]) -> Result<String, OnnxError> {
        let axes = self.const_i64(&[axes.len() as i64], axes)?;
        self.op("Unsqueeze", &[x, &axes])
    }

    /// `x W^T + b` for the checkpoint's `prefix.weight`/`prefix.bias`.
    fn linear(&mut self, x: &str, prefix: &str) -> Result<String, OnnxError> {
        let w = self.weight_t(&format!("{prefix}.weight"))?;
        let b = self.weight(&format!("{prefix}.bias"))?;
        let y = self.op("MatMul", &[x, &w])?;
        self.op("Add", &[&y, &b])
    }

    fn layer_norm(&mut self, x: &str, prefix: &str) -> Result<String, OnnxError> {
        let w = self.weight(&format!("{prefix}.weight"))?;
        let b = self.weight(&format!("{prefix}.bias"))?;
        self.g.op(
            "LayerNormalization",
            &[x, &w, &b],
            vec![attr::int("axis", -1), attr::float("epsilon", LAYER_NORM_EPS)],
        )
    }

    /// [b, len, dim] → [b, heads, len, head_dim].
    fn split_heads(&mut self, x: &str) -> Result<String, OnnxError> {
        let shape = self.const_i64(&[4], &[0, 0, self.config.n_heads, self.config.head_dim()])?;
        let y = self.op("Reshape", &[x, &shape])?;
        self.g.op("Transpose", &[&y], vec![attr::ints("perm", &[0, 2, 1, 3])])
    }

    /// Attention of `x` over per-head keys/values; `mask` (bool, true = may attend) broadcasts
    /// to [b, heads, qlen, klen].
    fn attend(&mut self, x: &str, keys: &str, values: &str, mask: &str, prefix: &str) -> Result<String, OnnxError> {
        let q = self.linear(x, &format!("{prefix}.q_lin"))?;
        let q = self.split_heads(&q)?;
        let scale = self.const_f32((self.config.head_dim() as f32).sqrt())?;
        let q = self.op("Div", &[&q, &scale])?;
        let kt = self.g.op("Transpose", &[keys], vec![attr::ints("perm", &[0, 1, 3, 2])])?;
        let scores = self.op("MatMul", &[&q, &kt])?;
        let minus_inf = self.const_f32(f32::NEG_INFINITY)?;
        let scores = self.op("Where", &[mask, &scores, &minus_inf])?;
        let weights = self.g.op("Softmax", &[&scores], vec![attr::int("axis", -1)])?;
        let context = self.op("MatMul", &[&weights, values])?;
        let context = self.g.op("Transpose", &[&context], vec![attr::ints("perm", &[0, 2, 1, 3])])?;
        let shape = self.const_i64(&[3], &[0, 0, self.config.emb_dim])?;
        let context = self.op("Reshape", &[&context, &shape])?;
        self.linear(&context, &format!("{prefix}.out_lin"))
    }

    /// XLM's FFN with exact (erf) GELU.
    fn ffn(&mut self, x: &str, prefix: &str) -> Result<String, OnnxError> {
        let h = self.linear(x, &format!("{prefix}.lin1"))?;
        let sqrt2 = self.const_f32(std::f32::consts::SQRT_2)?;
        let (half, one) = (self.const_f32(0.5)?, self.const_f32(1.0)?);
        let scaled = self.op("Div", &[&h, &sqrt2])?;
        let erf = self.op("Erf", &[&scaled])?;
        let erf1 = self.op("Add", &[&erf, &one])?;
        let hh = self.op("Mul", &[&h, &half])?;
        let gelu = self.op("Mul", &[&hh, &erf1])?;
        self.linear(&gelu, &format!("{prefix}.lin2"))
    }

    /// Token + position (+ language) embeddings, normalised. `positions` broadcasts to `tokens`.
    fn embed(&mut self, side: &str, tokens: &str, positions: &str, lang: &str) -> Result<String, OnnxError> {
        let table = self.weight(&format!("{side}.embeddings.weight"))?;
        let x = self.op("Gather", &[&table, tokens])?;
        let position_table = self.weight(&format!("{side}.position_embeddings.weight"))?;
        let p = self.op("Gather", &[&position_table, positions])?;
        let mut x = self.op("Add", &[&x, &p])?;
        if self.config.n_langs > 1 {
            let lang_table = self.weight(&format!("{side}.lang_embeddings.weight"))?;
            let l = self.op("Gather", &[&lang_table, lang])?; // [1, dim]
            x = self.op("Add", &[&x, &l])?;
        }
        self.layer_norm(&x, &format!("{side}.layer_norm_emb"))
    }

    fn encoder(&mut self) -> Result<(), OnnxError> {
        let (batch, src_len) = (Dim::symbolic("batch"), Dim::symbolic("src_len"));
        let tokens = self.g.input("tokens", ElemType::I64, &[batch.clone(), src_len.clone()])?;
        let lengths = self.g.input("lengths", ElemType::I64, std::slice::from_ref(&batch))?;
        let lang = self.g.input("lang", ElemType::I64, &[Dim::fixed(1)])?;

        let shape = self.op("Shape", &[&tokens])?;
        let one = self.const_i64(&[], &[1])?;
        let len = self.op("Gather", &[&shape, &one])?;
        let zero = self.const_i64(&[], &[0])?;
        let positions = self.op("Range", &[&zero, &len, &one])?; // [len]
        let row = self.unsqueeze(&positions, &[0])?;
        let column = self.unsqueeze(&lengths, &[1])?;
        let mask = self.op("Less", &[&row, &column])?; // [batch, len]
        let keep = self.g.op("Cast", &[&mask], vec![attr::int("to", 1)])?; // FLOAT
        let keep = self.unsqueeze(&keep, &[2])?;
        let attention_mask = self.unsqueeze(&mask, &[1, 2])?;

        let x = self.embed("encoder", &tokens, &positions, &lang)?;
        let mut x = self.op("Mul", &[&x, &keep])?;
        for i in 0..self.config.n_enc_layers {
            let prefix = format!("encoder.attentions.{i}");
            let k = self.linear(&x, &format!("{prefix}.k_lin"))?;
            let k = self.split_heads(&k)?;
            let v = self.linear(&x, &format!("{prefix}.v_lin"))?;
            let v = self.split_heads(&v)?;
            let attended = self.attend(&x, &k, &v, &attention_mask, &prefix)?;
            let sum = self.op("Add", &[&x, &attended])?;
            x = self.layer_norm(&sum, &format!("encoder.layer_norm1.{i}"))?;
            let ffn = self.ffn(&x, &format!("encoder.ffns.{i}"))?;
            let sum = self.op("Add", &[&x, &ffn])?;
            let normed = self.layer_norm(&sum, &format!("encoder.layer_norm2.{i}"))?;
            x = self.op("Mul", &[&normed, &keep])?;
        }

        self.g.output(&mask, "source_mask", ElemType::Bool, &[batch.clone(), src_len.clone()])?;
        let kv_dims = self.kv_dims("src_len");
        for i in 0..self.config.n_dec_layers {
            for (kind, lin) in [("k", "k_lin"), ("v", "v_lin")] {
                let y = self.linear(&x, &format!("decoder.encoder_attn.{i}.{lin}"))?;
                let y = self.split_heads(&y)?;
                self.g.output(&y, &format!("cross_{kind}.{i}"), ElemType::F32, &kv_dims)?;
            }
        }
        Ok(())
    }

    fn kv_dims(&self, len: &str) -> [Dim; 4] {
        [
            Dim::symbolic("batch"),
            Dim::fixed(self.config.n_heads),
            Dim::symbolic(len),
            Dim::fixed(self.config.head_dim()),
        ]
    }

    fn decoder_step(&mut self) -> Result<(), OnnxError> {
        let rows = Dim::symbolic("batch");
        let tokens = self.g.input("tokens", ElemType::I64, std::slice::from_ref(&rows))?;
        let positions = self.g.input("positions", ElemType::I64, std::slice::from_ref(&rows))?;
        let lang = self.g.input("lang", ElemType::I64, &[Dim::fixed(1)])?;
        let source_mask = self.g.input("source_mask", ElemType::Bool, &[rows.clone(), Dim::symbolic("src_len")])?;
        let self_mask = self.g.input("self_mask", ElemType::Bool, &[rows.clone(), Dim::symbolic("steps")])?;
        let layers = self.config.n_dec_layers;
        let mut cross = Vec::new();
        for i in 0..layers {
            let k = self.g.input(&format!("cross_k.{i}"), ElemType::F32, &self.kv_dims("src_len"))?;
            let v = self.g.input(&format!("cross_v.{i}"), ElemType::F32, &self.kv_dims("src_len"))?;
            cross.push((k, v));
        }
        let mut past = Vec::new();
        for i in 0..layers {
            let k = self.g.input(&format!("past_k.{i}"), ElemType::F32, &self.kv_dims("past_steps"))?;
            let v = self.g.input(&format!("past_v.{i}"), ElemType::F32, &self.kv_dims("past_steps"))?;
            past.push((k, v));
        }

        let tokens = self.unsqueeze(&tokens, &[1])?;
        let positions = self.unsqueeze(&positions, &[1])?;
        let mut x = self.embed("decoder", &tokens, &positions, &lang)?; // [rows, 1, dim]
        let self_mask = self.unsqueeze(&self_mask, &[1, 2])?;
        let source_mask = self.unsqueeze(&source_mask, &[1, 2])?;
        for i in 0..layers {
            let prefix = format!("decoder.attentions.{i}");
            let mut present = Vec::new();
            for (lin, past) in [("k_lin", &past[i as usize].0), ("v_lin", &past[i as usize].1)] {
                let y = self.linear(&x, &format!("{prefix}.{lin}"))?;
                let y = self.split_heads(&y)?;
                present.push(self.g.op("Concat", &[past, &y], vec![attr::int("axis", 2)])?);
            }
            let attended = self.attend(&x, &present[0], &present[1], &self_mask, &prefix)?;
            let sum = self.op("Add", &[&x, &attended])?;
            x = self.layer_norm(&sum, &format!("decoder.layer_norm1.{i}"))?;
            let (k, v) = cross[i as usize].clone();
            let attended = self.attend(&x, &k, &v, &source_mask, &format!("decoder.encoder_attn.{i}"))?;
            let sum = self.op("Add", &[&x, &attended])?;
            x = self.layer_norm(&sum, &format!("decoder.layer_norm15.{i}"))?;
            let ffn = self.ffn(&x, &format!("decoder.ffns.{i}"))?;
            let sum = self.op("Add", &[&x, &ffn])?;
            x = self.layer_norm(&sum, &format!("decoder.layer_norm2.{i}"))?;
            for (kind, value) in ["k", "v"].iter().zip(&present) {
                self.g.output(value, &format!("present_{kind}.{i}"), ElemType::F32, &self.kv_dims("steps"))?;
            }
        }
        let squeeze = self.const_i64(&[1], &[1])?;
        let hidden = self.op("Squeeze", &[&x, &squeeze])?; // [rows, dim]
        // The output layer is tied to the embeddings: Gemm reads them transposed.
        let table = "decoder.embeddings.weight";
        let bias = self.weight("decoder.pred_layer.proj.bias")?;
        let logits = self.g.op("Gemm", &[&hidden, table, &bias], vec![attr::int("transB", 1)])?;
        let log_probs = self.g.op("LogSoftmax", &[&logits], vec![attr::int("axis", -1)])?;
        self.g.output(&log_probs, "log_probs", ElemType::F32, &[rows, Dim::fixed(self.config.n_words)])?;
        Ok(())
    }
}
