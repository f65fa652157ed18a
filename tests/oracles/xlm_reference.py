"""Test oracle for `exporter import-xlm`: writes an XLM-layout checkpoint with python torch and the
logits of an independent, XLM-style PyTorch forward on a fixed batch.

Usage: xlm_reference.py OUT_DIR {zip,legacy} {mt,mlm} {plain,module}

Writes OUT_DIR/model.pth, codes, vocab, inputs.json (sources and decoder inputs, raw word ids) and
logits.json ({"shape": [bs, tlen, n_words], "values": [...]}). The network follows
facebookresearch/XLM's TransformerModel: [slen, bs] layout, learned positions, language
embeddings, post-LayerNorm (eps 1e-12), exact GELU, output layer tied to the embeddings. It is
written here from that description, independently of xlmc's Rust implementation.
"""

import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

N_SPECIAL = 14
EPS = 1e-12


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


class Attention(nn.Module):
    def __init__(self, heads, dim):
        super().__init__()
        self.heads, self.dim = heads, dim
        self.q_lin, self.k_lin = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_lin, self.out_lin = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x, keep, kv=None):
        # x: [bs, qlen, dim]; keep: [bs, qlen or 1, klen] bool
        bs, qlen, _ = x.shape
        src = x if kv is None else kv
        klen = src.shape[1]
        hd = self.dim // self.heads

        def heads(t, n):
            return t.view(bs, n, self.heads, hd).transpose(1, 2)

        q = heads(self.q_lin(x), qlen) / math.sqrt(hd)
        k, v = heads(self.k_lin(src), klen), heads(self.v_lin(src), klen)
        scores = torch.matmul(q, k.transpose(2, 3))
        scores = scores.masked_fill(~keep.unsqueeze(1), -float("inf"))
        weights = F.softmax(scores.float(), dim=-1).type_as(scores)
        ctx = torch.matmul(weights, v).transpose(1, 2).contiguous().view(bs, qlen, self.dim)
        return self.out_lin(ctx)


class FFN(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.lin2(gelu(self.lin1(x)))


class XlmSide(nn.Module):
    def __init__(self, p, is_decoder, n_layers):
        super().__init__()
        dim = p["emb_dim"]
        self.is_decoder = is_decoder
        self.position_embeddings = nn.Embedding(512, dim)
        self.lang_embeddings = nn.Embedding(p["n_langs"], dim)
        self.embeddings = nn.Embedding(p["n_words"], dim, padding_idx=p["pad_index"])
        self.layer_norm_emb = nn.LayerNorm(dim, eps=EPS)
        self.attentions = nn.ModuleList(Attention(p["n_heads"], dim) for _ in range(n_layers))
        self.layer_norm1 = nn.ModuleList(nn.LayerNorm(dim, eps=EPS) for _ in range(n_layers))
        self.ffns = nn.ModuleList(FFN(dim) for _ in range(n_layers))
        self.layer_norm2 = nn.ModuleList(nn.LayerNorm(dim, eps=EPS) for _ in range(n_layers))
        if is_decoder:
            self.encoder_attn = nn.ModuleList(Attention(p["n_heads"], dim) for _ in range(n_layers))
            self.layer_norm15 = nn.ModuleList(nn.LayerNorm(dim, eps=EPS) for _ in range(n_layers))
        # Both sides keep an output layer (XLM's with_output=True), tied to the embeddings.
        self.pred_layer = nn.Module()
        self.pred_layer.proj = nn.Linear(dim, p["n_words"])
        self.pred_layer.proj.weight = self.embeddings.weight

    def forward(self, tokens, lengths, lang, src=None, src_lengths=None):
        # XLM's layout is [slen, bs]; go batch-first inside.
        x = tokens.t()
        bs, slen = x.shape
        pos = torch.arange(slen).unsqueeze(0).expand(bs, slen)
        mask = pos < lengths.unsqueeze(1)
        h = self.embeddings(x) + self.position_embeddings(pos) + self.lang_embeddings(torch.full_like(x, lang))
        h = self.layer_norm_emb(h) * mask.unsqueeze(-1).to(h.dtype)
        if self.is_decoder:
            self_keep = (torch.arange(slen)[None, :] <= torch.arange(slen)[:, None]).unsqueeze(0) & mask[:, None, :]
        else:
            self_keep = mask[:, None, :].expand(bs, slen, slen)
        if src is not None:
            src_mask = torch.arange(src.shape[1]).unsqueeze(0) < src_lengths.unsqueeze(1)
            cross_keep = src_mask[:, None, :].expand(bs, slen, src.shape[1])
        for i in range(len(self.attentions)):
            h = self.layer_norm1[i](h + self.attentions[i](h, self_keep))
            if self.is_decoder and src is not None:
                h = self.layer_norm15[i](h + self.encoder_attn[i](h, cross_keep, kv=src))
            h = self.layer_norm2[i](h + self.ffns[i](h))
            h = h * mask.unsqueeze(-1).to(h.dtype)
        return h


def fastbpe_files(out_dir):
    """A small fastBPE model: two merges and a vocabulary of letters, merges and whole words."""
    letters = "abcdefghijklmnop"
    vocab = [f"{c}@@" for c in letters] + list(letters) + ["ab@@", "ab", "abc"]
    with open(os.path.join(out_dir, "codes"), "w") as f:
        f.write("a b 50\nab c</w> 40\n")
    with open(os.path.join(out_dir, "vocab"), "w") as f:
        for i, word in enumerate(vocab):
            f.write(f"{word} {1000 - i}\n")
    return vocab


def main():
    out_dir, fmt, kind, prefix = sys.argv[1:5]
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(1234)
    vocab = fastbpe_files(out_dir)
    id2word = {i: w for i, w in enumerate(["<s>", "</s>", "<pad>", "<unk>"] + [f"<special{j}>" for j in range(10)])}
    id2word.update({N_SPECIAL + i: w for i, w in enumerate(vocab)})
    params = {
        "emb_dim": 32, "n_heads": 4, "n_words": len(id2word), "n_langs": 2,
        "dropout": 0.1, "attention_dropout": 0.1, "gelu_activation": True, "share_inout_emb": True,
        "sinusoidal_embeddings": False, "use_lang_emb": True, "pad_index": 2, "eos_index": 1,
        "id2lang": {0: "en", 1: "fr"}, "lang2id": {"en": 0, "fr": 1},
        # Unrelated training options, as real checkpoints carry them.
        "exp_name": "oracle", "mt_steps": [("en", "fr")], "lambda_mt": "1", "optimizer": "adam_inverse_sqrt,lr=0.0001",
    }
    if kind == "mt":
        params.update({"n_enc_layers": 2, "n_dec_layers": 3, "encoder_only": False})
        encoder, decoder = XlmSide(params, False, 2), XlmSide(params, True, 3)
    else:
        params.update({"n_layers": 2, "encoder_only": True})
        encoder = decoder = XlmSide(params, False, 2)
    # Random, non-trivial values everywhere (LayerNorms and biases included).
    with torch.no_grad():
        for side in (encoder, decoder):
            for name, t in side.named_parameters():
                t.normal_(0.0, 0.3 if "layer_norm" not in name else 0.2)
                if "layer_norm" in name and name.endswith("weight"):
                    t.add_(1.0)
            side.embeddings.weight[params["pad_index"]].zero_()

    def state(side):
        sd = side.state_dict()
        return {(("module." + k) if prefix == "module" else k): v for k, v in sd.items()}

    data = {"params": params, "dico_id2word": id2word, "dico_word2id": {w: i for i, w in id2word.items()}}
    if kind == "mt":
        data.update({"encoder": state(encoder), "decoder": state(decoder)})
    else:
        data["model"] = state(encoder)
    torch.save(data, os.path.join(out_dir, "model.pth"), _use_new_zipfile_serialization=(fmt == "zip"))

    sources = [[14, 15, 30, 31, 46], [20, 47], [16, 17, 18, 19, 21, 22, 23, 33]]
    targets = [[25, 26, 27], [28, 29, 30, 31, 32, 33], [34]]
    eos, pad = params["eos_index"], params["pad_index"]

    def batch(rows, close):
        seqs = [[eos] + r + ([eos] if close else []) for r in rows]
        width = max(len(s) for s in seqs)
        x = torch.full((width, len(seqs)), pad, dtype=torch.long)
        for j, s in enumerate(seqs):
            x[: len(s), j] = torch.tensor(s)
        return x, torch.tensor([len(s) for s in seqs])

    # A pretrained (mlm) checkpoint is checked through its encoder and output layer: the decoder
    # xlmc builds from it gets fresh cross-attention the oracle cannot know.
    encoder.eval()
    decoder.eval()
    with torch.no_grad():
        x1, len1 = batch(sources, True)
        x2, len2 = batch(targets, False)
        if kind == "mt":
            enc = encoder(x1, len1, 0)
            hidden = decoder(x2, len2, 1, src=enc, src_lengths=len1)
            logits = decoder.pred_layer.proj(hidden)
        else:
            hidden = encoder(x1, len1, 0)
            logits = encoder.pred_layer.proj(hidden)
    with open(os.path.join(out_dir, "inputs.json"), "w") as f:
        json.dump({"sources": sources, "targets": targets}, f)
    with open(os.path.join(out_dir, "logits.json"), "w") as f:
        json.dump({"shape": list(logits.shape), "values": logits.flatten().tolist()}, f)


if __name__ == "__main__":
    main()
