#!/usr/bin/env bash
# Session 10: the report times each model once on 256 sentences, one after another, and this
# machine's speed drifts between such runs (its teacher ran at 813 tokens/s at batch 32 in session
# 9's report, 1,037 in this one, same bundle and code). So the batch-32 speed-ups are checked again
# here: the teacher and the KD student (fp32, int8) timed side by side in one process, 1,024 test
# sentences, one thread, three rounds. Outputs: speed-check/round-N.txt.
set -euo pipefail
E=${EXPORTER:-target/release/exporter}
B=${RUN:-runs/s8}/bundles-2400
OUT=${OUT:-docs/compression-study-cpu/2026-12-01-6-2-2400}/speed-check
mkdir -p "$OUT"
for round in 1 2 3; do
    "$E" bench --bundle "$B/teacher" --bundle "$B/student-6-2-kd-avg4" --bundle "$B/student-6-2-kd-avg4-int8" \
        --input data/en-fr/test.en --sentences 1024 --batch-sizes 32 --threads 1 > "$OUT/round-$round.txt" 2>&1
done
