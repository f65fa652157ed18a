//! The BiGRU as two ONNX graphs, built on ONNX's own `GRU` operator:
//!
//! - `encoder.onnx`: `tokens` [batch, src_len], `lengths` [batch], `lang` [1] → `encoded`
//!   [batch, src_len, 2H] (a bidirectional `GRU` with `sequence_lens`, so each direction starts
//!   and ends at the sentence's own ends and padding stays zero), `keys` (the attention's
//!   `encoded · Wᵀ`, once per sentence), `source_mask` and the decoder's first state `h`;
//! - `decoder.onnx`, one step: `tokens` [rows], `lang`, `h` [rows, 2H], `encoded`, `keys`,
//!   `source_mask` → `log_probs` [rows, vocab] and `h_out` (a one-step `GRU` from `initial_h`,
//!   then Luong attention and the tied output layer).
//!
//! PyTorch stacks GRU gates r, z, n; ONNX wants z, r, h, with `linear_before_reset = 1` for
//! PyTorch's `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`.

use std::collections::HashMap;

use tch::Tensor;
use xlmc_onnx::{Dim, ElemType, Emitter, Model, OnnxError, Precision, WeightData, attr};

use crate::BiGru;

use xlmc_bundle::contract::graph;
pub use xlmc_bundle::contract::{DECODER_GRAPH as DECODER_FILE, ENCODER_GRAPH as ENCODER_FILE};

/// The two graphs of an exported BiGRU.
#[derive(Debug)]
pub struct OnnxGraphs {
    pub encoder: Model,
    pub decoder: Model,
}

fn weight_data(variables: &HashMap<String, Tensor>, name: &str) -> Option<WeightData> {
    let tensor = variables.get(name)?;
    let flat = tensor.to_kind(tch::Kind::Float).to(tch::Device::Cpu).contiguous().flatten(0, -1);
    Some((tensor.size(), Vec::<f32>::try_from(flat).ok()?))
}

/// PyTorch's [r; z; n] blocks of `3·hidden` rows reordered to ONNX's [z; r; n].
fn onnx_gate_order(values: &[f32], hidden: usize) -> Vec<f32> {
    let block = values.len() / 3;
    debug_assert_eq!(block % hidden, 0);
    [1, 0, 2].iter().flat_map(|&g| values[g * block..(g + 1) * block].iter().copied()).collect()
}

/// W, R, B inputs of an ONNX `GRU` for the PyTorch weights at `prefix` (`encoder.gru`) and the
/// given direction suffixes (`""`, `"_reverse"`), stacked along the direction axis.
fn gru_inputs(e: &mut Emitter, prefix: &str, suffixes: &[&str], hidden: usize) -> Result<[String; 3], OnnxError> {
    let (mut w, mut r, mut b) = (Vec::new(), Vec::new(), Vec::new());
    let mut input = 0;
    for suffix in suffixes {
        let (dims, w_ih) = e.values(&format!("{prefix}.weight_ih_l0{suffix}"))?;
        input = dims[1];
        w.extend(onnx_gate_order(&w_ih, hidden));
        r.extend(onnx_gate_order(&e.values(&format!("{prefix}.weight_hh_l0{suffix}"))?.1, hidden));
        b.extend(onnx_gate_order(&e.values(&format!("{prefix}.bias_ih_l0{suffix}"))?.1, hidden));
        b.extend(onnx_gate_order(&e.values(&format!("{prefix}.bias_hh_l0{suffix}"))?.1, hidden));
    }
    let (d, h) = (suffixes.len() as i64, hidden as i64);
    Ok([
        e.derived(&format!("{prefix}.W"), &[d, 3 * h, input], &w)?,
        e.derived(&format!("{prefix}.R"), &[d, 3 * h, h], &r)?,
        e.derived(&format!("{prefix}.B"), &[d, 6 * h], &b)?,
    ])
}

impl BiGru {
    /// The two graphs in `precision`; int8 quantizes the linear layers, the vocabulary embeddings
    /// and the output layer (the GRUs stay fp32: ONNX has no integer GRU).
    pub fn to_onnx(&self, precision: Precision) -> Result<OnnxGraphs, OnnxError> {
        // The variable map once, not once per weight read.
        let variables = self.vs.variables();
        let lookup = |name: &str| weight_data(&variables, name);
        let mut encoder = Emitter::new("xlmc_bigru_encoder", &lookup, precision);
        self.encoder_graph(&mut encoder)?;
        let mut decoder = Emitter::new("xlmc_bigru_decoder_step", &lookup, precision);
        self.decoder_graph(&mut decoder)?;
        Ok(OnnxGraphs { encoder: Model::new(encoder.finish()), decoder: Model::new(decoder.finish()) })
    }

    /// Token + language embeddings.
    fn embed_graph(e: &mut Emitter, side: &str, tokens: &str, lang: &str) -> Result<String, OnnxError> {
        let x = e.embedding(&format!("{side}.embeddings.weight"), tokens)?;
        let langs = e.weight(&format!("{side}.lang_embeddings.weight"))?;
        let l = e.op("Gather", &[&langs, lang])?; // [1, emb]
        e.op("Add", &[&x, &l])
    }

    fn encoder_graph(&self, e: &mut Emitter) -> Result<(), OnnxError> {
        let (batch, len) = (Dim::symbolic("batch"), Dim::symbolic("src_len"));
        let hidden = self.config.hidden;
        let tokens = e.g.input(graph::TOKENS, ElemType::I64, &[batch.clone(), len.clone()])?;
        let lengths = e.g.input(graph::LENGTHS, ElemType::I64, std::slice::from_ref(&batch))?;
        let lang = e.g.input(graph::LANG, ElemType::I64, &[Dim::fixed(1)])?;

        let shape = e.op("Shape", &[&tokens])?;
        let one = e.const_i64(&[], &[1])?;
        let width = e.op("Gather", &[&shape, &one])?;
        let zero = e.const_i64(&[], &[0])?;
        let positions = e.op("Range", &[&zero, &width, &one])?;
        let row = e.unsqueeze(&positions, &[0])?;
        let column = e.unsqueeze(&lengths, &[1])?;
        let mask = e.op("Less", &[&row, &column])?; // [batch, len]

        let x = Self::embed_graph(e, "encoder", &tokens, &lang)?;
        let x = e.g.op("Transpose", &[&x], vec![attr::ints("perm", &[1, 0, 2])])?; // [len, batch, emb]
        let sequence_lens = e.g.op("Cast", &[&lengths], vec![attr::int("to", 6)])?; // INT32
        let [w, r, b] = gru_inputs(e, "encoder.gru", &["", "_reverse"], hidden as usize)?;
        let y = "encoder_gru_y".to_owned();
        e.g.node(
            "GRU",
            &[&x, &w, &r, &b, &sequence_lens],
            &[&y],
            vec![
                attr::int("hidden_size", hidden),
                attr::string("direction", "bidirectional"),
                attr::int("linear_before_reset", 1),
            ],
        )?;
        // Y [len, 2, batch, H] → [batch, len, 2, H] → [batch, len, 2H]: forward then backward.
        let y = e.g.op("Transpose", &[&y], vec![attr::ints("perm", &[2, 0, 1, 3])])?;
        let shape = e.const_i64(&[3], &[0, 0, 2 * hidden])?;
        let encoded = e.op("Reshape", &[&y, &shape])?;

        // The decoder's first state: tanh(bridge(mean of the valid states)).
        let valid = e.cast_to_compute(&mask)?;
        let valid = e.unsqueeze(&valid, &[2])?;
        let masked = e.op("Mul", &[&encoded, &valid])?;
        let axis = e.const_i64(&[1], &[1])?;
        let sum = e.g.op("ReduceSum", &[&masked, &axis], vec![attr::int("keepdims", 0)])?;
        let count = e.g.op("ReduceSum", &[&valid, &axis], vec![attr::int("keepdims", 0)])?;
        let at_least_one = e.const_float(1.0)?;
        let count = e.op("Max", &[&count, &at_least_one])?;
        let mean = e.op("Div", &[&sum, &count])?;
        let bridged = e.linear(&mean, "bridge")?;
        let h = e.op("Tanh", &[&bridged])?;
        let keys = e.matmul_weight_t(&encoded, "decoder.attention.weight")?;

        let d = Dim::fixed(2 * hidden);
        e.float_output(&encoded, graph::ENCODED, &[batch.clone(), len.clone(), d.clone()])?;
        e.float_output(&keys, graph::KEYS, &[batch.clone(), len.clone(), d.clone()])?;
        e.g.output(&mask, graph::SOURCE_MASK, ElemType::Bool, &[batch.clone(), len])?;
        e.float_output(&h, graph::HIDDEN, &[batch, d])?;
        Ok(())
    }

    fn decoder_graph(&self, e: &mut Emitter) -> Result<(), OnnxError> {
        let (rows, len) = (Dim::symbolic("batch"), Dim::symbolic("src_len"));
        let d = 2 * self.config.hidden;
        let tokens = e.g.input(graph::TOKENS, ElemType::I64, std::slice::from_ref(&rows))?;
        let lang = e.g.input(graph::LANG, ElemType::I64, &[Dim::fixed(1)])?;
        let h = e.float_input(graph::HIDDEN, &[rows.clone(), Dim::fixed(d)])?;
        let encoded = e.float_input(graph::ENCODED, &[rows.clone(), len.clone(), Dim::fixed(d)])?;
        let keys = e.float_input(graph::KEYS, &[rows.clone(), len.clone(), Dim::fixed(d)])?;
        let mask = e.g.input(graph::SOURCE_MASK, ElemType::Bool, &[rows.clone(), len])?;

        let x = Self::embed_graph(e, "decoder", &tokens, &lang)?; // [rows, emb]
        let x = e.unsqueeze(&x, &[0])?; // [1, rows, emb]
        let h0 = e.unsqueeze(&h, &[0])?; // [1, rows, d]
        let [w, r, b] = gru_inputs(e, "decoder.gru", &[""], d as usize)?;
        let h_next = "decoder_gru_h".to_owned();
        e.g.node(
            "GRU",
            &[&x, &w, &r, &b, "", &h0],
            &["", &h_next],
            vec![attr::int("hidden_size", d), attr::int("linear_before_reset", 1)],
        )?;
        let h_new = e.squeeze(&h_next, &[0])?; // [rows, d]

        // Luong general attention: scores = keys · h.
        let column = e.unsqueeze(&h_new, &[2])?;
        let scores = e.op("MatMul", &[&keys, &column])?;
        let scores = e.squeeze(&scores, &[2])?; // [rows, len]
        let minus_inf = e.const_float(f32::NEG_INFINITY)?;
        let scores = e.op("Where", &[&mask, &scores, &minus_inf])?;
        let weights = e.g.op("Softmax", &[&scores], vec![attr::int("axis", -1)])?;
        let weights = e.unsqueeze(&weights, &[1])?;
        let context = e.op("MatMul", &[&weights, &encoded])?;
        let context = e.squeeze(&context, &[1])?; // [rows, d]
        let joined = e.g.op("Concat", &[&h_new, &context], vec![attr::int("axis", 1)])?;
        let combined = e.linear(&joined, "decoder.combine")?;
        let combined = e.op("Tanh", &[&combined])?;
        let logits = e.tied_output(&combined, "decoder.embeddings.weight", "decoder.pred_layer.proj.bias")?;
        let log_probs = e.g.op("LogSoftmax", &[&logits], vec![attr::int("axis", -1)])?;
        e.float_output(&log_probs, graph::LOG_PROBS, &[rows.clone(), Dim::fixed(self.config.n_words)])?;
        e.float_output(&h_new, graph::HIDDEN_OUT, &[rows, Dim::fixed(d)])?;
        Ok(())
    }
}
