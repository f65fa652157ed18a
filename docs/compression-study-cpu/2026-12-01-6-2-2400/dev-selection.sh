#!/usr/bin/env bash
# Session 10: how many snapshots to average, chosen on the dev split (2,020 sentences, greedy,
# libtorch fp32, one thread) before the test split was decoded: the final weights (update 2,400)
# and the means of the newest 4 and 8 snapshots of each student. Rule fixed beforehand: the K with
# the higher mean dev BLEU over the two students. Outputs: dev-selection/*.txt.
set -euo pipefail
E=${EXPORTER:-target/release/exporter}
R=${RUN:-runs/s8}
OUT=${OUT:-docs/compression-study-cpu/2026-12-01-6-2-2400}/dev-selection
mkdir -p "$OUT"
for v in kd nokd; do
    for k in 4 8; do "$E" average --run "$R/student-6-2-$v" --last $k --out "$R/student-6-2-$v-avg$k"; done
    for m in "student-6-2-$v/model" "student-6-2-$v-avg4" "student-6-2-$v-avg8"; do
        "$E" bench --model "$R/$m" --input data/en-fr/dev.en --reference data/en-fr/dev.fr --sentences 2020 \
            --batch-sizes 32 --threads 1 > "$OUT/$(echo "$m" | tr / -).txt" 2>&1
    done
done
