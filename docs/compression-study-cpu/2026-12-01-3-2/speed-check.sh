#!/usr/bin/env bash
# Session 11: the batch-32 speed-ups of the report checked on more sentences: the teacher, the
# 6-2 KD int8 student and the 3-2 KD int8 student timed side by side in one process, 1,024 test
# sentences, one thread, three rounds (as 2026-12-01-6-2-2400/speed-check.sh). Outputs:
# speed-check/round-N.txt.
set -euo pipefail
E=${EXPORTER:-target/release/exporter}
B62=${BUNDLES_6_2:-runs/s8/bundles-2400}
B=${RUN:-runs/s10}/bundles-2400
OUT=${OUT:-docs/compression-study-cpu/2026-12-01-3-2}/speed-check
mkdir -p "$OUT"
for round in 1 2 3; do
    "$E" bench --bundle "$B62/teacher" --bundle "$B62/student-6-2-kd-avg4-int8" --bundle "$B/student-3-2-kd-avg4-int8" \
        --bundle "$B/student-3-2-kd-avg4" --input data/en-fr/test.en --sentences 1024 --batch-sizes 32 --threads 1 \
        > "$OUT/round-$round.txt" 2>&1
done
