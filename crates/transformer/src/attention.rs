//! XLM's `MultiHeadAttention` (`q_lin`, `k_lin`, `v_lin`, `out_lin`), batch-first.

use tch::{Kind, Tensor, nn};

#[derive(Debug)]
pub struct MultiHeadAttention {
    q_lin: Dense,
    k_lin: Dense,
    v_lin: Dense,
    out_lin: Dense,
    n_heads: i64,
    dropout: f64,
}

/// A linear layer whose product can run in a narrower type than its fp32 weights: with
/// `Kind::BFloat16` the input and weights are rounded to bf16, multiplied with fp32
/// accumulation (oneDNN's AVX-512 BF16 kernels, ≈ 5× fp32 on this CPU) and the result comes
/// back as fp32 — mixed-precision training with fp32 master weights. Autograd carries the casts.
#[derive(Debug)]
pub struct Dense {
    linear: nn::Linear,
    /// None: multiply in the weights' own type.
    matmul_kind: Option<Kind>,
}

impl Dense {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let nn::Linear { ws, bs } = &self.linear;
        let Some(k) = self.matmul_kind.filter(|&k| k != ws.kind()) else {
            return x.linear(ws, bs.as_ref());
        };
        x.to_kind(k).linear(&ws.to_kind(k), bs.as_ref().map(|b| b.to_kind(k))).to_kind(x.kind())
    }
}

/// A linear layer initialised like PyTorch's `nn.Linear` (and so XLM): weight and bias uniform in
/// ±1/√fan_in. tch's default (Kaiming with ReLU gain) is √6× wider, which saturates attention
/// softmaxes at 256+ dims and leaves deep post-LN models stuck at a unigram distribution.
pub fn linear(path: nn::Path, fan_in: i64, fan_out: i64) -> nn::Linear {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let init = nn::Init::Uniform { lo: -bound, up: bound };
    nn::linear(path, fan_in, fan_out, nn::LinearConfig { ws_init: init, bs_init: Some(init), bias: true })
}

fn dense(path: nn::Path, fan_in: i64, fan_out: i64) -> Dense {
    Dense { linear: linear(path, fan_in, fan_out), matmul_kind: None }
}

impl MultiHeadAttention {
    pub fn new(path: nn::Path, dim: i64, n_heads: i64, dropout: f64) -> Self {
        let linear = |name: &str| dense(&path / name, dim, dim);
        Self {
            q_lin: linear("q_lin"),
            k_lin: linear("k_lin"),
            v_lin: linear("v_lin"),
            out_lin: linear("out_lin"),
            n_heads,
            dropout,
        }
    }

    /// The type the projections multiply in (see [`Dense`]).
    pub fn set_matmul_kind(&mut self, kind: Kind) {
        for lin in [&mut self.q_lin, &mut self.k_lin, &mut self.v_lin, &mut self.out_lin] {
            lin.matmul_kind = Some(kind);
        }
    }

    /// [bs, len, dim] → [bs, heads, len, head_dim].
    fn split(&self, x: &Tensor) -> Tensor {
        let (bs, len, dim) = x.size3().expect("[bs, len, dim]");
        x.view([bs, len, self.n_heads, dim / self.n_heads]).transpose(1, 2)
    }

    /// Keys and values of `kv` for every head (cached once per source for cross-attention).
    pub fn keys_values(&self, kv: &Tensor) -> (Tensor, Tensor) {
        (self.split(&self.k_lin.forward(kv)), self.split(&self.v_lin.forward(kv)))
    }

    /// Attention of `query` [bs, qlen, dim] over keys/values [bs, heads, klen, head_dim].
    /// `mask` is true where attending is allowed, broadcastable to [bs, heads, qlen, klen].
    pub fn attend(&self, query: &Tensor, keys: &Tensor, values: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let (bs, qlen, dim) = query.size3().expect("[bs, qlen, dim]");
        let head_dim = dim / self.n_heads;
        let q = self.split(&self.q_lin.forward(query)) / (head_dim as f64).sqrt();
        let scores = q.matmul(&keys.transpose(-2, -1)).masked_fill(&mask.logical_not(), f64::NEG_INFINITY);
        let weights = scores.softmax(-1, Kind::Float).to_kind(scores.kind()).dropout(self.dropout, train);
        let context = weights.matmul(values).transpose(1, 2).contiguous().view([bs, qlen, dim]);
        self.out_lin.forward(&context)
    }

    /// Self- or cross-attention over a whole sequence.
    pub fn forward(&self, query: &Tensor, kv: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let (keys, values) = self.keys_values(kv);
        self.attend(query, &keys, &values, mask, train)
    }
}

/// XLM's `TransformerFFN`: `lin2(gelu(lin1(x)))`, hidden 4× wide, GELU in its exact erf form.
#[derive(Debug)]
pub struct FeedForward {
    lin1: Dense,
    lin2: Dense,
    dropout: f64,
}

impl FeedForward {
    pub fn new(path: nn::Path, dim: i64, hidden: i64, dropout: f64) -> Self {
        Self { lin1: dense(&path / "lin1", dim, hidden), lin2: dense(&path / "lin2", hidden, dim), dropout }
    }

    pub fn set_matmul_kind(&mut self, kind: Kind) {
        self.lin1.matmul_kind = Some(kind);
        self.lin2.matmul_kind = Some(kind);
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.lin2.forward(&self.lin1.forward(x).gelu("none")).dropout(self.dropout, train)
    }
}
