//! The Transformer as two ONNX graphs for ONNX Runtime, computing what [`crate::Translator`]
//! computes:
//!
//! - `encoder.onnx`: `tokens` [batch, src_len] (XLM layout `</s> w… </s>`, padded), `lengths`
//!   [batch], `lang` [1] → `source_mask` [batch, src_len] and, for every decoder layer `i`, the
//!   cross-attention keys/values `cross_k.i`/`cross_v.i` [batch, heads, src_len, head_dim] —
//!   computed once per sentence here rather than in a third graph, so a step never recomputes them
//!   and a backend keeps one session fewer;
//! - `decoder.onnx`, one step: `tokens` [rows], `positions` [rows], `lang` [1], `source_mask`,
//!   `cross_k.i`/`cross_v.i`, and the self-attention cache `past_k.i`/`past_v.i` [rows, heads,
//!   room, cache_head_dim] → `log_probs` [rows, vocab] and `present_k.i`/`present_v.i`: the same
//!   cache with the step written at column `positions[r]` of row `r`. Self-attention is ONNX
//!   Runtime's `com.microsoft.GroupQueryAttention` on the packed query/key/value projection: it
//!   attends over each row's own `positions[r] + 1` steps (not the widest row's), and when the
//!   caller passes one buffer as both `past` and `present` it writes the step in place — no
//!   step copies the cache, in the graph or outside it.
//!
//! Batch, length and step axes are dynamic. Weights are initializers named after the
//! checkpoint's tensors (linear weights stored transposed, `…weight_t`); the decoder's output
//! layer reads the tied embedding through `Gemm` with `transB`, so it is stored once. With int8,
//! every weight matrix (and the output layer) is stored as int8 per-column-scaled, and activations
//! are quantized per call (xlmc-onnx's `Emitter::matmul_weight_t`); the vocabulary embeddings are
//! int8 rows rescaled after the lookup (`Emitter::embedding`); with fp16, weights and
//! arithmetic are fp16 and the float inputs/outputs stay fp32 (cast at the graph's edges).

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};
use xlmc_onnx::{Dim, ElemType, Emitter, Model, OnnxError, Precision, WeightData, attr};

use crate::{Config, Seq2Seq};

pub use xlmc_bundle::contract::{DECODER_GRAPH as DECODER_FILE, ENCODER_GRAPH as ENCODER_FILE};
use xlmc_bundle::contract::{graph, state::transformer::cache_head_dim};
/// XLM's LayerNorm epsilon.
const LAYER_NORM_EPS: f32 = 1e-12;

/// The two graphs of an exported Transformer.
#[derive(Debug)]
pub struct OnnxGraphs {
    pub encoder: Model,
    pub decoder: Model,
}

impl Seq2Seq {
    /// Builds the encoder and one-step decoder graphs from the current weights in `precision`.
    pub fn to_onnx(&self, precision: Precision) -> Result<OnnxGraphs, OnnxError> {
        let weights: BTreeMap<String, Tensor> = self.vs.variables().into_iter().collect();
        let lookup = |name: &str| {
            let stored = |name: &str| weight_data(&weights, name);
            stored(name).or_else(|| derived_weight(&stored, &self.config, name))
        };
        let mut encoder = Graph::new("xlmc_encoder", &lookup, &self.config, precision);
        encoder.encoder()?;
        let mut decoder = Graph::new("xlmc_decoder_step", &lookup, &self.config, precision);
        decoder.decoder_step()?;
        Ok(OnnxGraphs { encoder: Model::new(encoder.e.finish()), decoder: Model::new(decoder.e.finish()) })
    }
}

/// A named tensor of `weights` as dims + fp32 values.
pub(crate) fn weight_data(weights: &BTreeMap<String, Tensor>, name: &str) -> Option<WeightData> {
    let tensor = weights.get(name)?;
    let flat = tensor.to_kind(Kind::Float).to(Device::Cpu).contiguous().flatten(0, -1);
    Some((tensor.size(), Vec::<f32>::try_from(flat).ok()?))
}

/// Names the graphs read derived weights by: the decoder self-attention's query, key and value
/// projections packed into one `[3 · heads · cache_head_dim, dim]` linear layer (`{prefix}.qkv_lin`,
/// in GroupQueryAttention's order) and its output projection over the padded heads
/// (`{prefix}.out_lin_padded`; the plain `out_lin` when no padding is needed); and the other
/// attentions' query projection scaled by 1/√head_dim (`{prefix}.q_lin_scaled`), so that the
/// scores are a plain product — ONNX Runtime's single-row kernel takes no scale factor, and a
/// scaled product was 1.75× slower (32 rows, 30 source positions).
const PACKED_QKV: &str = "qkv_lin";
const PADDED_OUT: &str = "out_lin_padded";
const SCALED_QUERY: &str = "q_lin_scaled";

/// The derived weight `name` (see [`PACKED_QKV`]) from the stored ones, or `None` if `name` is
/// not one.
fn derived_weight(stored: &dyn Fn(&str) -> Option<WeightData>, config: &Config, name: &str) -> Option<WeightData> {
    let (heads, head_dim) = (config.n_heads as usize, config.head_dim() as usize);
    let padded = cache_head_dim(head_dim);
    let (layer_prefix, leaf) = name.rsplit_once('.')?;
    let (prefix, derived) = layer_prefix.rsplit_once('.')?;
    match (derived, leaf) {
        (PACKED_QKV, "weight" | "bias") => {
            let mut values = Vec::new();
            let mut inputs = 1;
            for projection in ["q_lin", "k_lin", "v_lin"] {
                let (dims, data) = stored(&format!("{prefix}.{projection}.{leaf}"))?;
                inputs = dims.get(1).copied().unwrap_or(1) as usize;
                // Each head's rows (output values), then zero rows up to the padded head size.
                values.extend(pad_chunks(&data, head_dim * inputs, padded * inputs));
            }
            let rows = (values.len() / inputs) as i64;
            let dims = if leaf == "weight" { vec![rows, inputs as i64] } else { vec![rows] };
            Some((dims, values))
        }
        (PADDED_OUT, "weight") => {
            let (dims, data) = stored(&format!("{prefix}.out_lin.weight"))?;
            // Each output row reads the heads' values (its inputs), each then zeros for the padding.
            Some((vec![dims[0], (heads * padded) as i64], pad_chunks(&data, head_dim, padded)))
        }
        (PADDED_OUT, "bias") => stored(&format!("{prefix}.out_lin.bias")),
        (SCALED_QUERY, "weight" | "bias") => {
            let (dims, data) = stored(&format!("{prefix}.q_lin.{leaf}"))?;
            let scale = 1.0 / (head_dim as f32).sqrt();
            Some((dims, data.into_iter().map(|v| v * scale).collect()))
        }
        _ => None,
    }
}

/// `data` in chunks of `chunk` values, each followed by zeros up to `padded` values.
fn pad_chunks(data: &[f32], chunk: usize, padded: usize) -> Vec<f32> {
    let mut values = Vec::with_capacity(data.len() / chunk * padded);
    for part in data.chunks(chunk) {
        values.extend_from_slice(part);
        values.resize(values.len() + padded - chunk, 0.0);
    }
    values
}

/// Transformer layers on top of the shared [`Emitter`].
struct Graph<'w> {
    e: Emitter<'w>,
    config: &'w Config,
    /// Every sequence this graph attends from has length 1 (the decoder step): moving the length
    /// axis past the heads is then a reshape, not a transpose.
    one_position: bool,
}

impl<'w> Graph<'w> {
    fn new(
        name: &str,
        weights: &'w dyn Fn(&str) -> Option<WeightData>,
        config: &'w Config,
        precision: Precision,
    ) -> Self {
        Self { e: Emitter::new(name, weights, precision), config, one_position: false }
    }

    fn layer_norm(&mut self, x: &str, prefix: &str) -> Result<String, OnnxError> {
        let w = self.e.weight(&format!("{prefix}.weight"))?;
        let b = self.e.weight(&format!("{prefix}.bias"))?;
        self.e.g.op(
            "LayerNormalization",
            &[x, &w, &b],
            vec![attr::int("axis", -1), attr::float("epsilon", LAYER_NORM_EPS)],
        )
    }

    /// [b, len, dim] → [b, heads, len, head_dim].
    fn split_heads(&mut self, x: &str) -> Result<String, OnnxError> {
        let (heads, head_dim) = (self.config.n_heads, self.config.head_dim());
        if self.one_position {
            let shape = self.e.const_i64(&[4], &[0, heads, 1, head_dim])?;
            return self.e.op("Reshape", &[x, &shape]);
        }
        let shape = self.e.const_i64(&[4], &[0, 0, heads, head_dim])?;
        let y = self.e.op("Reshape", &[x, &shape])?;
        self.e.g.op("Transpose", &[&y], vec![attr::ints("perm", &[0, 2, 1, 3])])
    }

    /// Attention of `x` over per-head keys/values; `mask` (bool, true = may attend) broadcasts
    /// to [b, heads, qlen, klen].
    fn attend(&mut self, x: &str, keys: &str, values: &str, mask: &str, prefix: &str) -> Result<String, OnnxError> {
        let q = self.query(x, prefix)?;
        let scores = self.masked_scores(&q, keys, mask)?;
        let weights = self.e.g.op("Softmax", &[&scores], vec![attr::int("axis", -1)])?;
        let context = self.e.op("MatMul", &[&weights, values])?;
        self.merge_heads(&context, prefix)
    }

    /// One decoder step's self-attention (ONNX Runtime's GroupQueryAttention): the step's
    /// packed query/key/value, the layer's cache (`past_k`/`past_v`, updated in place into the
    /// graph outputs `present_k`/`present_v`), `seqlens` [rows] (int32: each row's steps so far,
    /// where its new step is written) and `total` [1] (int32: the longest row's steps + 1).
    fn self_attend_step(
        &mut self,
        x: &str,
        (past_k, past_v): (&str, &str),
        (seqlens, total): (&str, &str),
        layer: i64,
    ) -> Result<String, OnnxError> {
        let prefix = format!("decoder.attentions.{layer}");
        let (heads, head_dim) = (self.config.n_heads, self.config.head_dim());
        let qkv = self.e.linear(x, &format!("{prefix}.{PACKED_QKV}"))?;
        let qkv = self.e.compute_to_float32(&qkv)?; // the cache is fp32 in every precision
        let context = format!("{prefix}.context");
        let (present_k, present_v) = (graph::present_k(layer), graph::present_v(layer));
        self.e.g.node_in(
            "com.microsoft",
            "GroupQueryAttention",
            &[&qkv, "", "", past_k, past_v, seqlens, total],
            &[&context, &present_k, &present_v],
            vec![
                attr::int("num_heads", heads),
                attr::int("kv_num_heads", heads),
                attr::float("scale", 1.0 / (head_dim as f32).sqrt()),
            ],
        )?;
        let cache_dims = self.cache_dims();
        self.e.g.declare_output(&present_k, ElemType::F32, &cache_dims)?;
        self.e.g.declare_output(&present_v, ElemType::F32, &cache_dims)?;
        let context = self.e.float32_to_compute(&context)?;
        let out = if cache_head_dim(head_dim as usize) == head_dim as usize { "out_lin" } else { PADDED_OUT };
        self.e.linear(&context, &format!("{prefix}.{out}"))
    }

    /// The self-attention cache's dims: [rows, heads, room, cache_head_dim].
    fn cache_dims(&self) -> [Dim; 4] {
        let head_dim = cache_head_dim(self.config.head_dim() as usize) as i64;
        [Dim::symbolic("batch"), Dim::fixed(self.config.n_heads), Dim::symbolic("room"), Dim::fixed(head_dim)]
    }

    /// `x`'s per-head queries, scaled by 1/√head_dim: [b, heads, qlen, head_dim].
    fn query(&mut self, x: &str, prefix: &str) -> Result<String, OnnxError> {
        let q = self.e.linear(x, &format!("{prefix}.{SCALED_QUERY}"))?;
        self.split_heads(&q)
    }

    /// q·kᵀ with the columns `mask` forbids at −∞: [b, heads, qlen, klen].
    fn masked_scores(&mut self, q: &str, keys: &str, mask: &str) -> Result<String, OnnxError> {
        let kt = self.e.g.op("Transpose", &[keys], vec![attr::ints("perm", &[0, 1, 3, 2])])?;
        let scores = self.e.op("MatMul", &[q, &kt])?;
        let minus_inf = self.e.const_float(f32::NEG_INFINITY)?;
        self.e.op("Where", &[mask, &scores, &minus_inf])
    }

    /// Per-head contexts [b, heads, qlen, head_dim] back to [b, qlen, dim], through `out_lin`.
    fn merge_heads(&mut self, context: &str, prefix: &str) -> Result<String, OnnxError> {
        let context = if self.one_position {
            let shape = self.e.const_i64(&[3], &[0, 1, self.config.emb_dim])?;
            self.e.op("Reshape", &[context, &shape])?
        } else {
            let context = self.e.g.op("Transpose", &[context], vec![attr::ints("perm", &[0, 2, 1, 3])])?;
            let shape = self.e.const_i64(&[3], &[0, 0, self.config.emb_dim])?;
            self.e.op("Reshape", &[&context, &shape])?
        };
        self.e.linear(&context, &format!("{prefix}.out_lin"))
    }

    /// XLM's FFN with exact (erf) GELU.
    fn ffn(&mut self, x: &str, prefix: &str) -> Result<String, OnnxError> {
        let h = self.e.linear(x, &format!("{prefix}.lin1"))?;
        let sqrt2 = self.e.const_float(std::f32::consts::SQRT_2)?;
        let (half, one) = (self.e.const_float(0.5)?, self.e.const_float(1.0)?);
        let scaled = self.e.op("Div", &[&h, &sqrt2])?;
        let erf = self.e.op("Erf", &[&scaled])?;
        let erf1 = self.e.op("Add", &[&erf, &one])?;
        let hh = self.e.op("Mul", &[&h, &half])?;
        let gelu = self.e.op("Mul", &[&hh, &erf1])?;
        self.e.linear(&gelu, &format!("{prefix}.lin2"))
    }

    /// Token + position (+ language) embeddings, normalised. `positions` broadcasts to `tokens`.
    fn embed(&mut self, side: &str, tokens: &str, positions: &str, lang: &str) -> Result<String, OnnxError> {
        let x = self.e.embedding(&format!("{side}.embeddings.weight"), tokens)?;
        let position_table = self.e.weight(&format!("{side}.position_embeddings.weight"))?;
        let p = self.e.op("Gather", &[&position_table, positions])?;
        let mut x = self.e.op("Add", &[&x, &p])?;
        if self.config.n_langs > 1 {
            let lang_table = self.e.weight(&format!("{side}.lang_embeddings.weight"))?;
            let l = self.e.op("Gather", &[&lang_table, lang])?; // [1, dim]
            x = self.e.op("Add", &[&x, &l])?;
        }
        self.layer_norm(&x, &format!("{side}.layer_norm_emb"))
    }

    fn encoder(&mut self) -> Result<(), OnnxError> {
        let (batch, src_len) = (Dim::symbolic("batch"), Dim::symbolic("src_len"));
        let tokens = self.e.g.input(graph::TOKENS, ElemType::I64, &[batch.clone(), src_len.clone()])?;
        let lengths = self.e.g.input(graph::LENGTHS, ElemType::I64, std::slice::from_ref(&batch))?;
        let lang = self.e.g.input(graph::LANG, ElemType::I64, &[Dim::fixed(1)])?;

        let shape = self.e.op("Shape", &[&tokens])?;
        let one = self.e.const_i64(&[], &[1])?;
        let len = self.e.op("Gather", &[&shape, &one])?;
        let zero = self.e.const_i64(&[], &[0])?;
        let positions = self.e.op("Range", &[&zero, &len, &one])?; // [len]
        let row = self.e.unsqueeze(&positions, &[0])?;
        let column = self.e.unsqueeze(&lengths, &[1])?;
        let mask = self.e.op("Less", &[&row, &column])?; // [batch, len]
        let keep = self.e.cast_to_compute(&mask)?;
        let keep = self.e.unsqueeze(&keep, &[2])?;
        let attention_mask = self.e.unsqueeze(&mask, &[1, 2])?;

        let x = self.embed("encoder", &tokens, &positions, &lang)?;
        let mut x = self.e.op("Mul", &[&x, &keep])?;
        for i in 0..self.config.n_enc_layers {
            let prefix = format!("encoder.attentions.{i}");
            let k = self.e.linear(&x, &format!("{prefix}.k_lin"))?;
            let k = self.split_heads(&k)?;
            let v = self.e.linear(&x, &format!("{prefix}.v_lin"))?;
            let v = self.split_heads(&v)?;
            let attended = self.attend(&x, &k, &v, &attention_mask, &prefix)?;
            let sum = self.e.op("Add", &[&x, &attended])?;
            x = self.layer_norm(&sum, &format!("encoder.layer_norm1.{i}"))?;
            let ffn = self.ffn(&x, &format!("encoder.ffns.{i}"))?;
            let sum = self.e.op("Add", &[&x, &ffn])?;
            let normed = self.layer_norm(&sum, &format!("encoder.layer_norm2.{i}"))?;
            x = self.e.op("Mul", &[&normed, &keep])?;
        }

        self.e.g.output(&mask, graph::SOURCE_MASK, ElemType::Bool, &[batch.clone(), src_len.clone()])?;
        let kv_dims = self.kv_dims(Dim::symbolic("src_len"));
        for i in 0..self.config.n_dec_layers {
            let names: [fn(i64) -> String; 2] = [graph::cross_k, graph::cross_v];
            for (name, lin) in names.into_iter().zip(["k_lin", "v_lin"]) {
                let y = self.e.linear(&x, &format!("decoder.encoder_attn.{i}.{lin}"))?;
                let y = self.split_heads(&y)?;
                self.e.float_output(&y, &name(i), &kv_dims)?;
            }
        }
        Ok(())
    }

    fn kv_dims(&self, len: Dim) -> [Dim; 4] {
        [Dim::symbolic("batch"), Dim::fixed(self.config.n_heads), len, Dim::fixed(self.config.head_dim())]
    }

    fn decoder_step(&mut self) -> Result<(), OnnxError> {
        self.one_position = true;
        let rows = Dim::symbolic("batch");
        let tokens = self.e.g.input(graph::TOKENS, ElemType::I64, std::slice::from_ref(&rows))?;
        let positions = self.e.g.input(graph::POSITIONS, ElemType::I64, std::slice::from_ref(&rows))?;
        let lang = self.e.g.input(graph::LANG, ElemType::I64, &[Dim::fixed(1)])?;
        let source_mask =
            self.e.g.input(graph::SOURCE_MASK, ElemType::Bool, &[rows.clone(), Dim::symbolic("src_len")])?;
        let layers = self.config.n_dec_layers;
        let mut cross = Vec::new();
        for i in 0..layers {
            let k = self.e.float_input(&graph::cross_k(i), &self.kv_dims(Dim::symbolic("src_len")))?;
            let v = self.e.float_input(&graph::cross_v(i), &self.kv_dims(Dim::symbolic("src_len")))?;
            cross.push((k, v));
        }
        let mut past = Vec::new();
        for i in 0..layers {
            let k = self.e.g.input(&graph::past_k(i), ElemType::F32, &self.cache_dims())?;
            let v = self.e.g.input(&graph::past_v(i), ElemType::F32, &self.cache_dims())?;
            past.push((k, v));
        }
        // A row's steps so far are its position: its cache columns 0..position, the new one at it.
        let int32 = vec![attr::int("to", ElemType::I32.onnx_code())];
        let seqlens = self.e.g.op("Cast", &[&positions], int32.clone())?;
        let longest = self.e.g.op("ReduceMax", &[&positions], vec![attr::int("keepdims", 1)])?;
        let one = self.e.const_i64(&[1], &[1])?;
        let total = self.e.op("Add", &[&longest, &one])?;
        let total = self.e.g.op("Cast", &[&total], int32)?;

        let tokens = self.e.unsqueeze(&tokens, &[1])?;
        let positions = self.e.unsqueeze(&positions, &[1])?;
        let mut x = self.embed("decoder", &tokens, &positions, &lang)?; // [rows, 1, dim]
        let source_mask = self.e.unsqueeze(&source_mask, &[1, 2])?;
        for i in 0..layers {
            let (past_k, past_v) = &past[i as usize];
            let attended = self.self_attend_step(&x, (past_k, past_v), (&seqlens, &total), i)?;
            let sum = self.e.op("Add", &[&x, &attended])?;
            x = self.layer_norm(&sum, &format!("decoder.layer_norm1.{i}"))?;
            let (k, v) = cross[i as usize].clone();
            let attended = self.attend(&x, &k, &v, &source_mask, &format!("decoder.encoder_attn.{i}"))?;
            let sum = self.e.op("Add", &[&x, &attended])?;
            x = self.layer_norm(&sum, &format!("decoder.layer_norm15.{i}"))?;
            let ffn = self.ffn(&x, &format!("decoder.ffns.{i}"))?;
            let sum = self.e.op("Add", &[&x, &ffn])?;
            x = self.layer_norm(&sum, &format!("decoder.layer_norm2.{i}"))?;
        }
        let squeeze = self.e.const_i64(&[1], &[1])?;
        let hidden = self.e.op("Squeeze", &[&x, &squeeze])?; // [rows, dim]
        let logits = self.e.tied_output(&hidden, "decoder.embeddings.weight", "decoder.pred_layer.proj.bias")?;
        let log_probs = self.e.g.op("LogSoftmax", &[&logits], vec![attr::int("axis", -1)])?;
        self.e.float_output(&log_probs, graph::LOG_PROBS, &[rows, Dim::fixed(self.config.n_words)])?;
        Ok(())
    }
}
