#!/usr/bin/env python3
"""xlmc against CTranslate2 on the same weights: the peer benchmark of decoding speed.

Converts an xlmc model folder (XLM Transformer: config.json + safetensors + tokenizer.json) to a
CTranslate2 model with its Python spec API, checks that both engines translate the benchmark
sentences alike (greedy, batch 1), then prints tokens/s of both at every batch size, fp32 and
int8, for each thread count, as a markdown table (and JSON with --json).

CTranslate2 is a benchmark-only peer (pip install ctranslate2 tokenizers numpy), never a runtime
dependency. xlmc is timed by its own `exporter bench` on its ONNX bundles (exported here when
--bundles-dir holds none), in a process of its own, on the same sentences in the same order.

  python3 scripts/ct2-bench.py --model models/en-fr-teacher --input data/en-fr/test.en \
      --out docs/ct2-bench-cpu/teacher.md

Mapping (XLM → CTranslate2's TransformerSpec): post-norm layers (layer_norm1 / layer_norm15 /
layer_norm2 after each residual), the embedding layer norm, exact-erf GELU, unscaled embeddings,
learned positions from 0; the language embedding is constant per side, so it is folded into that
side's position table; Q/K/V of self-attention fused, K/V of cross-attention fused; the decoder's
output layer is its embedding matrix plus pred_layer's bias. Sources are `</s> x </s>` and the
decoder starts from `</s>`, as in XLM.
"""

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = DTYPES[info["dtype"]]
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(info["shape"]).astype(np.float32)
    return tensors


def read_model(folder):
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    if config.get("architecture", "transformer") != "transformer":
        sys.exit(f"{folder}: only Transformer models convert to CTranslate2 (this is {config['architecture']})")
    index = os.path.join(folder, "model.safetensors.index.json")
    single = os.path.join(folder, "model.safetensors")
    weights = {}
    if os.path.exists(single):
        weights = read_safetensors(single)
    else:
        with open(index) as f:
            for shard in sorted(set(json.load(f)["weight_map"].values())):
                weights.update(read_safetensors(os.path.join(folder, shard)))
    return config, weights


def convert(folder, out, languages=(0, 1)):
    """Writes a CTranslate2 model of the xlmc model folder into `out`; returns the vocabulary."""
    from ctranslate2.specs import common_spec, transformer_spec

    config, w = read_model(folder)
    n_enc, n_dec, heads = config["n_enc_layers"], config["n_dec_layers"], config["n_heads"]
    spec = transformer_spec.TransformerSpec.from_config(
        (n_enc, n_dec), heads, pre_norm=False, activation=common_spec.Activation.GELU, layernorm_embedding=True
    )

    def linear(target, prefix):
        target.weight = w[f"{prefix}.weight"]
        target.bias = w[f"{prefix}.bias"]

    def fused(target, prefixes):
        target.weight = np.concatenate([w[f"{p}.weight"] for p in prefixes])
        target.bias = np.concatenate([w[f"{p}.bias"] for p in prefixes])

    def norm(target, prefix):
        target.gamma = w[f"{prefix}.weight"]
        target.beta = w[f"{prefix}.bias"]

    for side, lang in (("encoder", languages[0]), ("decoder", languages[1])):
        s = getattr(spec, side)
        s.scale_embeddings = False
        # The encoder may take several source embeddings (factors); the decoder one.
        (s.embeddings[0] if side == "encoder" else s.embeddings).weight = w[f"{side}.embeddings.weight"]
        positions = w[f"{side}.position_embeddings.weight"].copy()
        lang_table = w.get(f"{side}.lang_embeddings.weight")
        if lang_table is not None:
            positions += lang_table[lang]
        s.position_encodings.encodings = positions
        norm(s.layernorm_embedding, f"{side}.layer_norm_emb")
        for i, layer in enumerate(s.layer):
            fused(layer.self_attention.linear[0], [f"{side}.attentions.{i}.{x}_lin" for x in "qkv"])
            linear(layer.self_attention.linear[1], f"{side}.attentions.{i}.out_lin")
            norm(layer.self_attention.layer_norm, f"{side}.layer_norm1.{i}")
            if side == "decoder":
                linear(layer.attention.linear[0], f"decoder.encoder_attn.{i}.q_lin")
                fused(layer.attention.linear[1], [f"decoder.encoder_attn.{i}.{x}_lin" for x in "kv"])
                linear(layer.attention.linear[2], f"decoder.encoder_attn.{i}.out_lin")
                norm(layer.attention.layer_norm, f"decoder.layer_norm15.{i}")
            linear(layer.ffn.linear_0, f"{side}.ffns.{i}.lin1")
            linear(layer.ffn.linear_1, f"{side}.ffns.{i}.lin2")
            norm(layer.ffn.layer_norm, f"{side}.layer_norm2.{i}")
    spec.decoder.projection.weight = w["decoder.embeddings.weight"]
    spec.decoder.projection.bias = w["decoder.pred_layer.proj.bias"]

    vocab = [f"<{i}>" for i in range(config["n_words"])]
    vocab[0], vocab[1], vocab[2], vocab[3] = "<s>", "</s>", "<blank>", "<unk>"
    spec.register_source_vocabulary(vocab)
    spec.register_target_vocabulary(vocab)
    spec.config.decoder_start_token = "</s>"
    spec.config.bos_token, spec.config.eos_token, spec.config.unk_token = "<s>", "</s>", "<unk>"
    spec.config.layer_norm_epsilon = 1e-12
    spec.validate()
    spec.optimize(quantization=None)
    os.makedirs(out, exist_ok=True)
    spec.save(out)
    return vocab


def ct2_translate(translator, sources, vocab, batch):
    """Greedy translations (token id lists, </s> excluded) and the seconds they took."""
    ids = {token: i for i, token in enumerate(vocab)}
    tokens = [[vocab[1]] + [vocab[i] for i in s] + [vocab[1]] for s in sources]
    started = time.perf_counter()
    outputs = []
    for start in range(0, len(tokens), batch):
        chunk = tokens[start : start + batch]
        longest = max(len(t) - 2 for t in chunk)
        results = translator.translate_batch(
            chunk,
            beam_size=1,
            max_batch_size=batch,
            max_decoding_length=int(1.5 * longest + 10),
            return_scores=False,
        )
        outputs.extend([ids[t] for t in r.hypotheses[0]] for r in results)
    return outputs, time.perf_counter() - started


def xlmc_bench(exporter, bundles, input_path, sentences, batch_sizes, threads):
    """tokens/s per (precision, batch) from `exporter bench`'s table."""
    command = [exporter, "bench", "--input", input_path, "--sentences", str(sentences), "--threads", str(threads)]
    command += ["--batch-sizes", ",".join(map(str, batch_sizes))]
    for bundle in bundles:
        command += ["--bundle", bundle]
    text = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    speeds = {}
    for line in text.splitlines():
        m = re.match(r"\| onnxruntime (\w+) \| [\d.—]+ \| (\d+) \| (\d+) \| [\d.]+ \| ([\d.]+) \|", line)
        if m:
            speeds[(m.group(1), int(m.group(2)))] = float(m.group(4))
    return speeds, " ".join(command)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="xlmc model folder (Transformer)")
    parser.add_argument("--input", required=True, help="source sentences, one per line")
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--batch-sizes", default="1,8,32,64")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--exporter", default="target/release/exporter")
    parser.add_argument("--bundles-dir", help="xlmc bundles NAME-fp32 and NAME-int8 (exported when missing)")
    parser.add_argument("--out", help="write the markdown table here too")
    parser.add_argument("--json", help="write every number as JSON here")
    args = parser.parse_args()

    import ctranslate2
    from tokenizers import Tokenizer

    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]
    precisions = args.precisions.split(",")
    work = tempfile.mkdtemp(prefix="ct2-bench-")
    bundles_dir = args.bundles_dir or work
    name = os.path.basename(os.path.normpath(args.model))

    # The first N non-empty lines, sorted by length (both engines see this exact file).
    tokenizer = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    with open(args.input, encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f if l.strip()][: args.sentences]
    encoded = [tokenizer.encode(l, add_special_tokens=False).ids for l in lines]
    order = sorted(range(len(lines)), key=lambda i: len(encoded[i]))
    lines, sources = [lines[i] for i in order], [encoded[i] for i in order]
    sorted_input = os.path.join(work, "input.txt")
    with open(sorted_input, "w", encoding="utf-8") as f:
        f.write("".join(l + "\n" for l in lines))

    ct2_dir = os.path.join(work, "ct2")
    vocab = convert(args.model, ct2_dir)
    bundles = []
    for precision in precisions:
        bundle = os.path.join(bundles_dir, f"{name}-{precision}")
        if not os.path.exists(os.path.join(bundle, "manifest.json")):
            subprocess.run(
                [args.exporter, "export", "--model", args.model, "--out", bundle, "--precision", precision, "--force"],
                check=True,
                capture_output=True,
            )
        bundles.append(bundle)

    # Agreement: libtorch (xlmc's reference backend) and CTranslate2 fp32, greedy, batch 1.
    xlmc_out = os.path.join(work, "xlmc.txt")
    subprocess.run(
        [args.exporter, "translate", "--model", args.model, "--input", sorted_input, "--output", xlmc_out, "--batch-size", "1"],
        check=True,
        capture_output=True,
    )
    with open(xlmc_out, encoding="utf-8") as f:
        xlmc_text = [l.rstrip("\n") for l in f]
    translator = ctranslate2.Translator(ct2_dir, device="cpu", compute_type="float32", intra_threads=1)
    ct2_ids, _ = ct2_translate(translator, sources, vocab, 1)
    ct2_text = [tokenizer.decode(ids, skip_special_tokens=True) for ids in ct2_ids]
    same = sum(a == b for a, b in zip(xlmc_text, ct2_text))
    print(f"outputs equal at batch 1 (xlmc libtorch vs CTranslate2 fp32): {same}/{len(lines)}")

    rows = []
    commands = []
    for threads in thread_counts:
        xlmc, command = xlmc_bench(args.exporter, bundles, sorted_input, len(lines), batch_sizes, threads)
        commands.append(command)
        for precision in precisions:
            compute = {"fp32": "float32", "int8": "int8_float32"}[precision]
            translator = ctranslate2.Translator(ct2_dir, device="cpu", compute_type=compute, intra_threads=threads)
            ct2_translate(translator, sources[:8], vocab, 8)  # warm-up
            for batch in batch_sizes:
                outputs, seconds = ct2_translate(translator, sources, vocab, batch)
                ct2_speed = sum(len(o) + 1 for o in outputs) / seconds  # each with its </s>, as xlmc counts
                ours = xlmc.get((precision, batch), float("nan"))
                rows.append(
                    {"precision": precision, "batch": batch, "threads": threads, "xlmc": ours, "ct2": ct2_speed}
                )
                print(f"{precision} batch {batch} threads {threads}: xlmc {ours:.0f} CT2 {ct2_speed:.0f} tokens/s", file=sys.stderr)

    table = [
        f"`{name}`: {len(lines)} sentences of {args.input} sorted by length, greedy; CTranslate2 "
        f"{ctranslate2.__version__}; outputs equal at batch 1: {same}/{len(lines)}.",
        "",
        "| precision | batch | threads | xlmc tokens/s | CTranslate2 tokens/s | xlmc / CT2 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        table.append(
            f"| {r['precision']} | {r['batch']} | {r['threads']} | {r['xlmc']:,.0f} | {r['ct2']:,.0f} | {r['xlmc'] / r['ct2']:.2f} |"
        )
    table += ["", "xlmc side: " + "; ".join(f"`{c}`" for c in commands)]
    text = "\n".join(table) + "\n"
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"model": args.model, "agreement": [same, len(lines)], "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
