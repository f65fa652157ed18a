//! XLM's `TransformerModel`: one struct for the encoder and the decoder, with XLM's parameter
//! names (`embeddings`, `position_embeddings`, `lang_embeddings`, `layer_norm_emb`,
//! `attentions.{i}`, `layer_norm1.{i}`, `encoder_attn.{i}`, `layer_norm15.{i}`, `ffns.{i}`,
//! `layer_norm2.{i}`, `pred_layer.proj`). Post-LayerNorm, eps 1e-12; the output projection is
//! tied to the embeddings and has its own bias. Tensors are batch-first.

use tch::{Device, Kind, Tensor, nn, nn::Module};

use crate::{
    Config,
    attention::{FeedForward, MultiHeadAttention},
};

const LAYER_NORM_EPS: f64 = 1e-12;

#[derive(Debug)]
struct Layer {
    attention: MultiHeadAttention,
    layer_norm1: nn::LayerNorm,
    encoder_attn: Option<(MultiHeadAttention, nn::LayerNorm)>,
    ffn: FeedForward,
    layer_norm2: nn::LayerNorm,
}

/// One side of the translation model.
#[derive(Debug)]
pub struct Transformer {
    config: Config,
    embeddings: Tensor,
    position_embeddings: Tensor,
    lang_embeddings: Option<Tensor>,
    layer_norm_emb: nn::LayerNorm,
    layers: Vec<Layer>,
    /// Decoder only: `pred_layer.proj.bias` (its weight is `embeddings.weight`).
    pred_bias: Option<Tensor>,
    /// The type the projections and the output layer multiply in; None: the weights' own
    /// (see [`crate::attention::Dense`]).
    matmul_kind: Option<Kind>,
}

fn layer_norm(path: nn::Path, dim: i64) -> nn::LayerNorm {
    nn::layer_norm(path, vec![dim], nn::LayerNormConfig { eps: LAYER_NORM_EPS, ..Default::default() })
}

/// XLM's fixed sinusoidal position table.
fn sinusoidal(positions: i64, dim: i64) -> Tensor {
    let mut table = vec![0f32; (positions * dim) as usize];
    for pos in 0..positions {
        for j in 0..dim {
            let angle = pos as f64 / 10000f64.powf(2.0 * (j / 2) as f64 / dim as f64);
            table[(pos * dim + j) as usize] = if j % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
        }
    }
    Tensor::from_slice(&table).view([positions, dim])
}

impl Transformer {
    /// Builds the variables under `path` (e.g. `root / "encoder"`).
    pub fn new(path: nn::Path, config: &Config, is_decoder: bool) -> Self {
        let dim = config.emb_dim;
        let std = (dim as f64).powf(-0.5);
        let embeddings =
            (&path / "embeddings").var("weight", &[config.n_words, dim], nn::Init::Randn { mean: 0.0, stdev: std });
        tch::no_grad(|| {
            let _ = embeddings.get(config.pad_index).fill_(0.0);
        });
        let position_embeddings = if config.sinusoidal_embeddings {
            (&path / "position_embeddings")
                .var_copy("weight", &sinusoidal(config.max_positions, dim))
                .set_requires_grad(false)
        } else {
            (&path / "position_embeddings").var(
                "weight",
                &[config.max_positions, dim],
                nn::Init::Randn { mean: 0.0, stdev: std },
            )
        };
        let lang_embeddings = (config.n_langs > 1).then(|| {
            (&path / "lang_embeddings").var("weight", &[config.n_langs, dim], nn::Init::Randn { mean: 0.0, stdev: std })
        });
        let n_layers = if is_decoder { config.n_dec_layers } else { config.n_enc_layers };
        let layers = (0..n_layers)
            .map(|i| Layer {
                attention: MultiHeadAttention::new(
                    &path / "attentions" / i,
                    dim,
                    config.n_heads,
                    config.attention_dropout,
                ),
                layer_norm1: layer_norm(&path / "layer_norm1" / i, dim),
                encoder_attn: is_decoder.then(|| {
                    (
                        MultiHeadAttention::new(
                            &path / "encoder_attn" / i,
                            dim,
                            config.n_heads,
                            config.attention_dropout,
                        ),
                        layer_norm(&path / "layer_norm15" / i, dim),
                    )
                }),
                ffn: FeedForward::new(&path / "ffns" / i, dim, 4 * dim, config.dropout),
                layer_norm2: layer_norm(&path / "layer_norm2" / i, dim),
            })
            .collect();
        let pred_bias =
            is_decoder.then(|| (&path / "pred_layer" / "proj").var("bias", &[config.n_words], nn::Init::Const(0.0)));
        Self {
            config: config.clone(),
            embeddings,
            position_embeddings,
            lang_embeddings,
            layer_norm_emb: layer_norm(&path / "layer_norm_emb", dim),
            layers,
            pred_bias,
            matmul_kind: None,
        }
    }

    /// Makes every projection and the output layer multiply in `kind` (`Kind::BFloat16` for
    /// mixed-precision training); weights, layer norms, softmaxes and residuals stay fp32.
    pub fn set_matmul_kind(&mut self, kind: Kind) {
        self.matmul_kind = Some(kind);
        for layer in &mut self.layers {
            layer.attention.set_matmul_kind(kind);
            if let Some((cross, _)) = &mut layer.encoder_attn {
                cross.set_matmul_kind(kind);
            }
            layer.ffn.set_matmul_kind(kind);
        }
    }

    pub fn device(&self) -> Device {
        self.embeddings.device()
    }

    /// Token + position (+ language) embeddings, normalised; `positions` and `tokens` alike.
    fn embed(&self, tokens: &Tensor, positions: &Tensor, lang: i64, train: bool) -> Tensor {
        let mut x = Tensor::embedding(&self.embeddings, tokens, self.config.pad_index, false, false)
            + Tensor::embedding(&self.position_embeddings, positions, -1, false, false);
        if let Some(lang_embeddings) = &self.lang_embeddings {
            x += lang_embeddings.get(lang).view([1, 1, -1]);
        }
        self.layer_norm_emb.forward(&x).dropout(self.config.dropout, train)
    }

    /// A whole sequence: `tokens` [bs, len] padded with `pad_index`, `lengths` [bs]. For the
    /// decoder, `source` is (encoder output, source mask) and attention is causal. Returns the
    /// hidden states [bs, len, dim] (zero at padding) and the mask [bs, len].
    pub fn forward(
        &self,
        tokens: &Tensor,
        lengths: &Tensor,
        lang: i64,
        source: Option<(&Tensor, &Tensor)>,
        train: bool,
    ) -> (Tensor, Tensor) {
        let (bs, len) = tokens.size2().expect("[bs, len]");
        let device = tokens.device();
        let positions = Tensor::arange(len, (Kind::Int64, device)).unsqueeze(0).expand([bs, len], false);
        let mask = positions.lt_tensor(&lengths.unsqueeze(1)); // [bs, len]
        let attention_mask = if source.is_some() {
            let causal = Tensor::ones([len, len], (Kind::Bool, device)).tril(0);
            causal.unsqueeze(0).logical_and(&mask.unsqueeze(1)).unsqueeze(1) // [bs, 1, len, len]
        } else {
            mask.view([bs, 1, 1, len])
        };
        let keep = mask.unsqueeze(-1).to_kind(self.embeddings.kind());
        let mut x = self.embed(tokens, &positions, lang, train) * &keep;
        for layer in &self.layers {
            let attended = layer.attention.forward(&x, &x, &attention_mask, train).dropout(self.config.dropout, train);
            x = layer.layer_norm1.forward(&(x + attended));
            if let (Some((cross, norm)), Some((encoded, source_mask))) = (&layer.encoder_attn, source) {
                let (s_bs, s_len) = source_mask.size2().expect("[bs, src_len]");
                let attended = cross.forward(&x, encoded, &source_mask.view([s_bs, 1, 1, s_len]), train);
                x = norm.forward(&(x + attended.dropout(self.config.dropout, train)));
            }
            x = layer.layer_norm2.forward(&(&x + layer.ffn.forward(&x, train))) * &keep;
        }
        (x, mask)
    }

    /// Logits over the vocabulary from hidden states (tied projection + bias).
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        let bias = self.pred_bias.as_ref().expect("only the decoder has an output layer");
        let Some(k) = self.matmul_kind.filter(|&k| k != self.embeddings.kind()) else {
            return hidden.matmul(&self.embeddings.tr()) + bias;
        };
        hidden.to_kind(k).matmul(&self.embeddings.to_kind(k).tr()).to_kind(hidden.kind()) + bias
    }

    pub(crate) fn cross_keys_values(&self, encoded: &Tensor) -> Vec<(Tensor, Tensor)> {
        self.layers.iter().map(|l| l.encoder_attn.as_ref().expect("decoder layer").0.keys_values(encoded)).collect()
    }

    pub(crate) fn head_shape(&self) -> (i64, i64) {
        (self.config.n_heads, self.config.head_dim())
    }

    /// One incremental decoder step over rows: `tokens` [rows] at the rows' own positions; the
    /// caches get this step's keys/values appended. Returns hidden states [rows, dim].
    pub(crate) fn step(&self, tokens: &Tensor, lang: i64, cache: &mut crate::step::DecoderCache) -> Tensor {
        use xlmc_bundle::contract::state::transformer::{CROSS_K, CROSS_V, PAST_K, PAST_V, at};
        let rows = tokens.size()[0];
        let positions = Tensor::from_slice(cache.positions()).to(tokens.device());
        let mut x = self.embed(&tokens.unsqueeze(1), &positions.unsqueeze(1), lang, false);
        let steps_mask = Tensor::cat(&[cache.steps_mask(), &Tensor::ones([rows, 1], (Kind::Bool, x.device()))], 1);
        let t = steps_mask.size()[1];
        let self_mask = steps_mask.view([rows, 1, 1, t]);
        let s = cache.source_mask().size()[1];
        let source_mask = cache.source_mask().view([rows, 1, 1, s]);
        for (i, layer) in self.layers.iter().enumerate() {
            let slot = |s: usize| at(i, s);
            let (k, v) = layer.attention.keys_values(&x);
            let keys = Tensor::cat(&[cache.tensor(slot(PAST_K)), &k], 2);
            let values = Tensor::cat(&[cache.tensor(slot(PAST_V)), &v], 2);
            let attended = layer.attention.attend(&x, &keys, &values, &self_mask, false);
            *cache.tensor_mut(slot(PAST_K)) = keys;
            *cache.tensor_mut(slot(PAST_V)) = values;
            x = layer.layer_norm1.forward(&(x + attended));
            let (cross, norm) = layer.encoder_attn.as_ref().expect("decoder layer");
            let (cross_k, cross_v) = (cache.tensor(slot(CROSS_K)), cache.tensor(slot(CROSS_V)));
            x = norm.forward(&(&x + cross.attend(&x, cross_k, cross_v, &source_mask, false)));
            x = layer.layer_norm2.forward(&(&x + layer.ffn.forward(&x, false)));
        }
        cache.advance(steps_mask);
        x.squeeze_dim(1)
    }
}
