#!/usr/bin/env bash
# Session 8 (2 CPU cores, AVX2): the 6-2 cut of the committed teacher trained with word-level KD
# (teacher online) and its --no-kd twin for 700 updates each, side by side, one thread each
# (training commands: commands.txt). This script makes the bundles and the report on the whole
# test split (into OUT, this folder by default; session 9's report-commands.sh runs it for
# 2026-12-01-6-2-1600). The fp16 copies a later session continues from are `exporter convert`'s
# (see the students' cards under models/students/).
set -euo pipefail
E=${EXPORTER:-target/release/exporter}
R=${RUN:-runs/s8}
B=$R/bundles
OUT=${OUT:-docs/compression-study-cpu/2026-12-01-6-2}
mkdir -p "$B" "$OUT"
ex() { echo "+ $E export --model $1 --out $B/$2 --precision $3 --force" >&2; "$E" export --model "$1" --out "$B/$2" --precision "$3" --force >/dev/null; }
ex models/en-fr-teacher teacher fp32
for v in kd nokd; do
    ex "$R/student-6-2-$v/model" "student-6-2-$v" fp32
    ex "$R/student-6-2-$v/model" "student-6-2-$v-int8" int8
done
"$E" report --models teacher,student-6-2-kd,student-6-2-kd-int8,student-6-2-nokd,student-6-2-nokd-int8 \
    --models-dir "$B" --test data/en-fr/test --out "$OUT" --threads 1 --batch-sizes 1,32 --device cpu
bash docs/compression-study-cpu/2026-12-01-6-2/copy-records.sh "$R" "$OUT"
