#!/usr/bin/env bash
# What scripts/train-teacher-gpu.sh needs on a device machine that only receives the repository's
# tracked files and a few ignored paths: the release binaries (exporter, server with libtorch,
# loadgen) and the corpus, as one compressed file to carry (runs/gpu-carry/carry.tar.xz).
#   cargo build --release --workspace --bins --features xlmc-server/torch && scripts/gpu-carry.sh
set -euo pipefail
mkdir -p runs/gpu-carry
tar cf - target/release/exporter target/release/server target/release/loadgen data/en-fr |
    xz -T0 -6 >runs/gpu-carry/carry.tar.xz.tmp
mv runs/gpu-carry/carry.tar.xz.tmp runs/gpu-carry/carry.tar.xz
ls -la runs/gpu-carry/carry.tar.xz
