#!/usr/bin/env python3
"""Cost per row of one Transformer decoder step at 8, 32 and 64 rows (one ONNX Runtime thread).

The state is synthetic (random caches): 20 cached steps in a cache with room for 64, a 30-token
source, every row at the same position. It tells whether a step's cost per row grows with the
number of rows, apart from how a batch's rows finish.

  PYTHONPATH=.deps:.deps/oracles python3 docs/ct2-bench-cpu/2026-12-01-epyc-avx2/step-rows.py BUNDLE
"""
import sys
import time

import numpy as np
import onnxruntime as ort

bundle = sys.argv[1]
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(f"{bundle}/decoder.onnx", options, providers=["CPUExecutionProvider"])
inputs = {i.name: i for i in session.get_inputs()}
layers = sum(1 for name in inputs if name.startswith("past_k."))
heads, head_dim = inputs["past_k.0"].shape[1], inputs["past_k.0"].shape[3]
cached, source, room = 20, 30, 64
rng = np.random.default_rng(0)
for rows in (8, 32, 64):
    feed = {
        "tokens": np.full(rows, 5, np.int64),
        "positions": np.full(rows, cached, np.int64),
        "lang": np.array([1], np.int64),
        "source_mask": np.ones((rows, source), bool),
    }
    for layer in range(layers):
        for name, width in (("cross_k", source), ("cross_v", source), ("past_k", room), ("past_v", room)):
            feed[f"{name}.{layer}"] = rng.random((rows, heads, width, head_dim), np.float32)
    feed = {k: v for k, v in feed.items() if k in inputs}
    for _ in range(5):
        session.run(["log_probs"], feed)
    runs = 40
    start = time.perf_counter()
    for _ in range(runs):
        session.run(["log_probs"], feed)
    step = (time.perf_counter() - start) / runs
    print(f"rows {rows:3d}: {step * 1e3:7.2f} ms per step, {step / rows * 1e6:6.1f} µs per row")
