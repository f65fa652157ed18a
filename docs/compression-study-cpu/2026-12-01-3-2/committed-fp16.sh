#!/usr/bin/env bash
# The committed fp16 students (models/students/en-fr-3-2-{kd,nokd}) exported again, fp32 and int8,
# and decoded on the whole test split at batch 32, one thread: BLEU of what a clone gets.
# Outputs: committed-fp16/bench-{kd,nokd}.txt.
set -euo pipefail
E=${EXPORTER:-target/release/exporter}
B=${RUN:-runs/s10}/bundles-committed
OUT=${OUT:-docs/compression-study-cpu/2026-12-01-3-2}/committed-fp16
mkdir -p "$OUT" "$B"
for v in kd nokd; do
    for p in fp32 int8; do
        "$E" export --model "models/students/en-fr-3-2-$v" --out "$B/3-2-$v-$p" --precision $p --force >/dev/null
    done
    "$E" bench --bundle "$B/3-2-$v-fp32" --bundle "$B/3-2-$v-int8" --input data/en-fr/test.en --reference data/en-fr/test.fr \
        --sentences 3262 --batch-sizes 32 --threads 1 > "$OUT/bench-$v.txt" 2>&1
done
