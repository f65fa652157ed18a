//! The BiGRU student: a recurrent seq2seq model on the teacher's shared BPE vocabulary and
//! language ids, decoded by the same batched core as the Transformer.
//!
//! - encoder: token + language embeddings → bidirectional GRU (PyTorch's gate order r, z, n and
//!   parameter names `weight_ih_l0`, `weight_hh_l0_reverse`, …, so ONNX's `GRU` op with
//!   `linear_before_reset=1` maps onto it);
//! - bridge: the decoder's first state is tanh(W·mean of the encoder states);
//! - decoder: a GRU step, then **Luong "general" attention** over the encoder states on the new
//!   state, `tanh(W_c [h; context])`, and an output layer tied to the decoder embeddings.
//!
//! Why Luong rather than Bahdanau: attention comes after the recurrent step and the only
//! recurrent state is `h`, so a decoder step is one GRU cell plus a few matmuls (one ONNX `GRU`
//! node with `initial_h` per step), and rows stay independent for per-sentence EOS.
//!
//! The recurrence is written out step by step with padding masks (a padded position leaves the
//! state unchanged), so the backward direction of a short sentence starts at its own last token
//! and results do not depend on what else is in the batch.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use tch::{Device, Kind, Tensor, nn};
use xlmc_decoding::{Columns, RowState, StepModel, xlm_source_layout};

mod onnx;
pub use onnx::{DECODER_FILE, ENCODER_FILE, OnnxGraphs};

use xlmc_bundle::contract::{
    Architecture,
    state::bigru::{ENCODED, HIDDEN as H, KEYS},
};
pub use xlmc_bundle::contract::{CONFIG_FILE, WEIGHTS_FILE};
/// `config.json`'s `architecture` for this model (Transformer configs have none).
pub const ARCHITECTURE: Architecture = Architecture::BiGru;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error("{path} does not match its config: {detail}; nothing was loaded")]
    Mismatch { path: PathBuf, detail: String },
}

fn file_error(path: &Path, detail: impl ToString) -> CheckpointError {
    CheckpointError::File { path: path.to_owned(), detail: detail.to_string() }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedConfig {
    architecture: Architecture,
    #[serde(flatten)]
    config: Config,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    pub n_words: i64,
    /// Embedding width (also the output layer's, which is tied to the decoder embeddings).
    pub emb_dim: i64,
    /// Hidden size per encoder direction; the decoder's is twice this.
    pub hidden: i64,
    pub n_langs: i64,
    pub dropout: f64,
    pub pad_index: i64,
    pub eos_index: i64,
}

impl Config {
    /// Sized for tests.
    pub fn tiny(n_words: i64) -> Self {
        Self { n_words, emb_dim: 32, hidden: 32, n_langs: 2, dropout: 0.0, pad_index: 2, eos_index: 1 }
    }

    /// The `small` preset's student.
    pub fn small(n_words: i64) -> Self {
        Self { emb_dim: 256, hidden: 256, dropout: 0.1, ..Self::tiny(n_words) }
    }
}

/// One GRU direction's weights (PyTorch layout: rows r, z, n stacked).
#[derive(Debug)]
struct GruWeights {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
}

impl GruWeights {
    fn new(path: &nn::Path, suffix: &str, input: i64, hidden: i64) -> Self {
        // PyTorch's GRU init: U(±1/√hidden) for every weight and bias.
        let bound = 1.0 / (hidden as f64).sqrt();
        let init = nn::Init::Uniform { lo: -bound, up: bound };
        Self {
            w_ih: path.var(&format!("weight_ih_l0{suffix}"), &[3 * hidden, input], init),
            w_hh: path.var(&format!("weight_hh_l0{suffix}"), &[3 * hidden, hidden], init),
            b_ih: path.var(&format!("bias_ih_l0{suffix}"), &[3 * hidden], init),
            b_hh: path.var(&format!("bias_hh_l0{suffix}"), &[3 * hidden], init),
        }
    }

    /// The input projection of every position at once: [bs, len, 3H].
    fn project_inputs(&self, x: &Tensor) -> Tensor {
        x.matmul(&self.w_ih.tr()) + &self.b_ih
    }

    /// One step from a projected input `gi` [rows, 3H] and state `h` [rows, H].
    fn cell(&self, gi: &Tensor, h: &Tensor) -> Tensor {
        let gh = h.matmul(&self.w_hh.tr()) + &self.b_hh;
        let gi = gi.chunk(3, -1);
        let gh = gh.chunk(3, -1);
        let r = (&gi[0] + &gh[0]).sigmoid();
        let z = (&gi[1] + &gh[1]).sigmoid();
        let n = (&gi[2] + r * &gh[2]).tanh();
        (1.0 - &z) * n + z * h
    }
}

fn linear(path: nn::Path, fan_in: i64, fan_out: i64) -> nn::Linear {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let init = nn::Init::Uniform { lo: -bound, up: bound };
    nn::linear(path, fan_in, fan_out, nn::LinearConfig { ws_init: init, bs_init: Some(init), bias: true })
}

/// The whole model, in one `VarStore` (`encoder.*`, `bridge.*`, `decoder.*`).
#[derive(Debug)]
pub struct BiGru {
    pub vs: nn::VarStore,
    pub config: Config,
    enc_embeddings: Tensor,
    enc_langs: Tensor,
    forward_gru: GruWeights,
    backward_gru: GruWeights,
    bridge: nn::Linear,
    dec_embeddings: Tensor,
    dec_langs: Tensor,
    dec_gru: GruWeights,
    attention: Tensor,
    combine: nn::Linear,
    pred_bias: Tensor,
}

/// Per-row decoder state, xlmc-decoding's row state over libtorch tensors: the source mask
/// [rows, src_len], and the hidden state [rows, 2H] with what it attends over, the encoder
/// states and their attention keys `encoded · W_aᵀ` [rows, src_len, 2H] (computed once per
/// source), where `contract::state::bigru` puts them.
pub type State = RowState<Tensor, Tensor>;

impl BiGru {
    pub fn new(config: Config, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (e, h, d) = (config.emb_dim, config.hidden, 2 * config.hidden);
        let emb_init = nn::Init::Randn { mean: 0.0, stdev: (e as f64).powf(-0.5) };
        let enc = &root / "encoder";
        let dec = &root / "decoder";
        let enc_embeddings = (&enc / "embeddings").var("weight", &[config.n_words, e], emb_init);
        let dec_embeddings = (&dec / "embeddings").var("weight", &[config.n_words, e], emb_init);
        tch::no_grad(|| {
            let _ = enc_embeddings.get(config.pad_index).fill_(0.0);
            let _ = dec_embeddings.get(config.pad_index).fill_(0.0);
        });
        let gru = &enc / "gru";
        let dec_gru_path = &dec / "gru";
        let attention_bound = 1.0 / (d as f64).sqrt();
        Self {
            enc_langs: (&enc / "lang_embeddings").var("weight", &[config.n_langs, e], emb_init),
            forward_gru: GruWeights::new(&gru, "", e, h),
            backward_gru: GruWeights::new(&gru, "_reverse", e, h),
            bridge: linear(&root / "bridge", d, d),
            dec_langs: (&dec / "lang_embeddings").var("weight", &[config.n_langs, e], emb_init),
            dec_gru: GruWeights::new(&dec_gru_path, "", e, d),
            attention: (&dec / "attention").var(
                "weight",
                &[d, d],
                nn::Init::Uniform { lo: -attention_bound, up: attention_bound },
            ),
            combine: linear(&dec / "combine", 2 * d, e),
            pred_bias: (&dec / "pred_layer" / "proj").var("bias", &[config.n_words], nn::Init::Const(0.0)),
            enc_embeddings,
            dec_embeddings,
            vs,
            config,
        }
    }

    pub fn parameters(&self) -> i64 {
        self.vs.trainable_variables().iter().map(Tensor::numel).sum::<usize>() as i64
    }

    /// Writes `config.json` (with `"architecture": "bigru"`) and `model.safetensors`, atomically.
    pub fn save(&self, dir: &Path) -> Result<(), CheckpointError> {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
        let saved = SavedConfig { architecture: ARCHITECTURE, config: self.config.clone() };
        let config_path = dir.join(CONFIG_FILE);
        let json = serde_json::to_string_pretty(&saved).expect("config serialises");
        xlmc_atomic_file::write(&config_path, json.as_bytes()).map_err(|e| file_error(&config_path, e))?;
        let mut named: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let (path, tmp) = (dir.join(WEIGHTS_FILE), dir.join(format!(".{WEIGHTS_FILE}.tmp")));
        Tensor::write_safetensors(&named, &tmp).map_err(|e| file_error(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| file_error(&path, e))
    }

    /// Reads a model saved by [`BiGru::save`]; every name and shape is checked before copying.
    pub fn load(dir: &Path, device: Device) -> Result<Self, CheckpointError> {
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(|e| file_error(&config_path, e))?;
        let saved: SavedConfig = serde_json::from_str(&text).map_err(|e| file_error(&config_path, e))?;
        if saved.architecture != ARCHITECTURE {
            return Err(file_error(
                &config_path,
                format!("architecture `{}`, not `{ARCHITECTURE}`", saved.architecture),
            ));
        }
        let mut model = Self::new(saved.config, device);
        model.load_weights(dir)?;
        Ok(model)
    }

    /// Copies the weights saved in `dir` into this model (same config).
    pub fn load_weights(&mut self, dir: &Path) -> Result<(), CheckpointError> {
        let path = dir.join(WEIGHTS_FILE);
        let stored: BTreeMap<String, Tensor> =
            Tensor::read_safetensors(&path).map_err(|e| file_error(&path, e))?.into_iter().collect();
        let mut variables = self.vs.variables();
        let mut problems: Vec<String> = variables
            .iter()
            .filter_map(|(name, var)| match stored.get(name) {
                None => Some(format!("missing {name}")),
                Some(value) if value.size() != var.size() => {
                    Some(format!("{name}: {:?} vs {:?}", value.size(), var.size()))
                }
                Some(_) => None,
            })
            .collect();
        problems.extend(stored.keys().filter(|k| !variables.contains_key(*k)).map(|k| format!("unexpected {k}")));
        if !problems.is_empty() {
            return Err(CheckpointError::Mismatch { path, detail: problems.join(", ") });
        }
        tch::no_grad(|| {
            for (name, value) in &stored {
                let var = variables.get_mut(name).expect("checked above");
                var.copy_(&value.to_kind(var.kind()).to(var.device()));
            }
        });
        Ok(())
    }

    fn embed(&self, table: &Tensor, langs: &Tensor, tokens: &Tensor, lang: i64, train: bool) -> Tensor {
        (Tensor::embedding(table, tokens, self.config.pad_index, false, false) + langs.get(lang))
            .dropout(self.config.dropout, train)
    }

    /// Encodes `tokens` [bs, len] (lengths [bs]): states [bs, len, 2H] (zero at padding), the
    /// mask, and the decoder's first state [bs, 2H].
    pub fn encode_batch(&self, tokens: &Tensor, lengths: &Tensor, lang: i64, train: bool) -> (Tensor, Tensor, Tensor) {
        let (bs, len) = tokens.size2().expect("[bs, len]");
        let device = tokens.device();
        let mask = Tensor::arange(len, (Kind::Int64, device)).unsqueeze(0).lt_tensor(&lengths.unsqueeze(1));
        let x = self.embed(&self.enc_embeddings, &self.enc_langs, tokens, lang, train);
        let mut outputs = Vec::with_capacity(2);
        for (gru, reverse) in [(&self.forward_gru, false), (&self.backward_gru, true)] {
            let gi = gru.project_inputs(&x);
            let mut h = Tensor::zeros([bs, self.config.hidden], (x.kind(), device));
            let mut states: Vec<Tensor> = (0..len).map(|_| Tensor::new()).collect();
            let order: Vec<i64> = if reverse { (0..len).rev().collect() } else { (0..len).collect() };
            for t in order {
                let keep = mask.select(1, t).unsqueeze(1);
                let next = gru.cell(&gi.select(1, t), &h);
                h = next.where_self(&keep, &h);
                states[t as usize] = &h * keep.to_kind(h.kind());
            }
            outputs.push(Tensor::stack(&states, 1));
        }
        let encoded = Tensor::cat(&outputs, 2).dropout(self.config.dropout, train);
        let valid = mask.to_kind(encoded.kind()).unsqueeze(-1);
        let mean = (&encoded * &valid).sum_dim_intlist(1, false, encoded.kind())
            / valid.sum_dim_intlist(1, false, encoded.kind()).clamp_min(1.0);
        let h0 = tch::nn::Module::forward(&self.bridge, &mean).tanh();
        (encoded, mask, h0)
    }

    fn new_state(&self, encoded: Tensor, source_mask: Tensor, h: Tensor) -> State {
        let keys = encoded.matmul(&self.attention.tr());
        let rows = h.size()[0];
        let steps_mask = Tensor::zeros([rows, 0], (Kind::Bool, h.device()));
        let tensors = vec![(Columns::Fixed, h), (Columns::Source(1), encoded), (Columns::Source(1), keys)];
        State::new(source_mask, steps_mask, rows as usize, tensors)
    }

    /// One decoder step for every row: returns the output logits [rows, vocab].
    fn decoder_step(&self, state: &mut State, tokens: &Tensor, lang: i64, train: bool) -> Tensor {
        let x = self.embed(&self.dec_embeddings, &self.dec_langs, tokens, lang, train);
        let h = self.dec_gru.cell(&self.dec_gru.project_inputs(&x), state.tensor(H));
        // Luong general: score(h, e_s) = hᵀ W e_s; `keys` hold (W e_s)ᵀ, computed once per source.
        let scores = state.tensor(KEYS).matmul(&h.unsqueeze(-1)).squeeze_dim(-1);
        let scores = scores.masked_fill(&state.source_mask().logical_not(), f64::NEG_INFINITY);
        let weights = scores.softmax(-1, Kind::Float).to_kind(h.kind());
        let context = weights.unsqueeze(1).matmul(state.tensor(ENCODED)).squeeze_dim(1);
        let combined = tch::nn::Module::forward(&self.combine, &Tensor::cat(&[&h, &context], 1)).tanh();
        *state.tensor_mut(H) = h;
        let combined = combined.dropout(self.config.dropout, train);
        combined.matmul(&self.dec_embeddings.tr()) + &self.pred_bias
    }

    /// Teacher forcing: logits [bs, tgt_len, vocab] for decoder inputs `targets` [bs, tgt_len]
    /// (`</s> y1 … ym`, padded). The same step function as decoding, so the two agree exactly.
    pub fn forward(
        &self,
        sources: &Tensor,
        source_lengths: &Tensor,
        targets: &Tensor,
        (source_lang, target_lang): (i64, i64),
        train: bool,
    ) -> Tensor {
        let (encoded, mask, h0) = self.encode_batch(sources, source_lengths, source_lang, train);
        let mut state = self.new_state(encoded, mask, h0);
        let steps = targets.size()[1];
        let logits: Vec<Tensor> =
            (0..steps).map(|t| self.decoder_step(&mut state, &targets.select(1, t), target_lang, train)).collect();
        Tensor::stack(&logits, 1)
    }

    pub fn translator(&self, source_lang: i64, target_lang: i64) -> Translator<'_> {
        Translator { model: self, source_lang, target_lang }
    }

    /// XLM's input layout, `</s> w1 … wn </s>` padded, and the lengths.
    pub fn batch(&self, sources: &[Vec<u32>]) -> (Tensor, Tensor) {
        let (data, width, lengths) = xlm_source_layout(sources, self.config.eos_index, self.config.pad_index);
        let device = self.enc_embeddings.device();
        (
            Tensor::from_slice(&data).view([sources.len() as i64, width as i64]).to(device),
            Tensor::from_slice(&lengths).to(device),
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("libtorch: {0}")]
pub struct StepError(#[from] tch::TchError);

/// The BiGRU behind xlmc-decoding's [`StepModel`].
#[derive(Debug)]
pub struct Translator<'m> {
    model: &'m BiGru,
    source_lang: i64,
    target_lang: i64,
}

impl StepModel for Translator<'_> {
    type State = State;
    type Error = StepError;

    fn vocab_size(&self) -> usize {
        self.model.config.n_words as usize
    }

    fn encode(&mut self, sources: &[Vec<u32>]) -> Result<State, StepError> {
        let (tokens, lengths) = self.model.batch(sources);
        Ok(tch::no_grad(|| {
            let (encoded, mask, h0) = self.model.encode_batch(&tokens, &lengths, self.source_lang, false);
            self.model.new_state(encoded, mask, h0)
        }))
    }

    fn step(&mut self, state: &mut State, last_tokens: &[u32]) -> Result<Vec<f32>, StepError> {
        let tokens: Vec<i64> = last_tokens.iter().map(|&t| i64::from(t)).collect();
        let tokens = Tensor::from_slice(&tokens).to(state.tensor(H).device());
        tch::no_grad(|| {
            let logits = self.model.decoder_step(state, &tokens, self.target_lang, false);
            Ok(Vec::<f32>::try_from(logits.log_softmax(-1, Kind::Float).flatten(0, -1).to(Device::Cpu))?)
        })
    }

    fn select(&mut self, state: &mut State, rows: &[usize]) -> Result<(), StepError> {
        Ok(state.select(rows)?)
    }

    fn append(&mut self, state: &mut State, other: State) -> Result<(), StepError> {
        Ok(state.append(other)?)
    }
}

#[cfg(test)]
mod tests;
