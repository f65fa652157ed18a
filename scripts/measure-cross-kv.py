#!/usr/bin/env python3
"""Cross-attention K/V inside encoder.onnx (xlmc's layout) vs a separate cross_kv.onnx graph.

Splits a Transformer bundle's encoder.onnx at the encoder states into "encoder" and "cross_kv"
graphs (onnx.utils.extract_model) and times, with ONNX Runtime on the CPU, one run of the joined
graph against the two runs a separate graph needs (states passed through host memory, as a
second session would get them). Prints a Markdown table. Needs onnx + onnxruntime + numpy
(`./xlmc oracles`; PYTHONPATH=.deps:.deps/oracles).

    python3 scripts/measure-cross-kv.py BUNDLE [--threads 1] [--repeats 30]
"""
import argparse, json, os, statistics, tempfile, time

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort


def states_name(model):
    """The tensor the first cross-attention key projection reads: the encoder's last states."""
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] == "decoder.encoder_attn.0.k_lin.weight_t":
            return node.input[0]
    raise SystemExit("no decoder.encoder_attn.0.k_lin MatMul: not an fp32 xlmc Transformer encoder")


def timed(run, repeats):
    run()  # warm-up: allocations, kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    manifest = json.load(open(os.path.join(args.bundle, "manifest.json")))
    config = manifest["config"]
    path = os.path.join(args.bundle, "encoder.onnx")
    model = onnx.load(path)
    states = states_name(model)
    cross = [o.name for o in model.graph.output if o.name.startswith("cross_")]
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        first, second = os.path.join(tmp, "encoder.onnx"), os.path.join(tmp, "cross_kv.onnx")
        onnx.utils.extract_model(path, first, ["tokens", "lengths", "lang"], ["source_mask", states])
        onnx.utils.extract_model(path, second, [states], cross)
        joined = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        encoder = ort.InferenceSession(first, options, providers=["CPUExecutionProvider"])
        cross_kv = ort.InferenceSession(second, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    print(f"{args.bundle}: {config['n_enc_layers']} encoder, {config['n_dec_layers']} decoder layers, "
          f"dim {config['emb_dim']}; ONNX Runtime {ort.__version__}, {args.threads} thread(s), "
          f"median of {args.repeats}\n")
    print("| batch × length | joined encoder.onnx ms | encoder + cross_kv.onnx ms | separate / joined |")
    print("| --- | ---: | ---: | ---: |")
    for batch, length in [(1, 27), (8, 27), (32, 27), (32, 60)]:
        feed = {
            "tokens": rng.integers(4, config["n_words"], size=(batch, length), dtype=np.int64),
            "lengths": np.full(batch, length, dtype=np.int64),
            "lang": np.zeros(1, dtype=np.int64),
        }
        one = timed(lambda: joined.run(None, feed), args.repeats)

        def two():
            _, hidden = encoder.run(None, feed)
            cross_kv.run(None, {states: hidden})

        separate = timed(two, args.repeats)
        print(f"| {batch} × {length} | {one:.2f} | {separate:.2f} | {separate / one:.3f} |")


if __name__ == "__main__":
    main()
