#!/usr/bin/env bash
# ONNX export benchmark: one model exported fp32, fp16 and int8, decoded by libtorch and by ONNX
# Runtime (each bundle) on the same dev sentences at batch 1 and 32, with BLEU/chrF per backend.
#   MODEL=runs/study-cpu/student-nokd/model OUT=docs/onnx-bench-cpu scripts/onnx-bench.sh
# Knobs: SENTENCES (64), BATCHES (1,32), THREADS (1), DEVICE (cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:?MODEL=model directory}
OUT=${OUT:?OUT=folder for the table}
SENTENCES=${SENTENCES:-64} BATCHES=${BATCHES:-1,32} THREADS=${THREADS:-1} DEVICE=${DEVICE:-cpu}
EXPORTER=${EXPORTER:-target/release/exporter}
eval "$(./xlmc env)"
mkdir -p "$OUT" "$OUT/bundles"
head -n "$SENTENCES" data/en-fr/dev.en >"$OUT/bundles/dev.en"
head -n "$SENTENCES" data/en-fr/dev.fr >"$OUT/bundles/dev.fr"
bundles=()
for precision in fp32 fp16 int8; do
  "$EXPORTER" export --model "$MODEL" --out "$OUT/bundles/$precision" --precision "$precision" --force
  bundles+=(--bundle "$OUT/bundles/$precision")
done
command=("$EXPORTER" bench --model "$MODEL" "${bundles[@]}" --input "$OUT/bundles/dev.en"
  --reference "$OUT/bundles/dev.fr" --sentences "$SENTENCES" --batch-sizes "$BATCHES" --threads "$THREADS"
  --device "$DEVICE")
{
  echo "# ONNX export benchmark: $MODEL"
  echo
  echo "\`${command[*]}\` on $(nproc) cores ($(uname -m)), $(date -u +%Y-%m-%d)"
  echo
  "${command[@]}"
} | tee "$OUT/README.md.partial"
mv "$OUT/README.md.partial" "$OUT/README.md"
rm -rf "$OUT/bundles"
