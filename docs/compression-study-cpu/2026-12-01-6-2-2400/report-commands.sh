#!/usr/bin/env bash
# Session 10 (2 CPU cores, AVX2): the session-8 students continued from 1,600 to 2,400 updates each
# (word-level KD with the teacher online, and the --no-kd twin), side by side, one thread each,
# their weights snapshotted every 100 updates (training commands: commands.txt). Each student's
# newest K snapshots are averaged (K = 4, updates 2,100–2,400: chosen on the dev split before the
# test split was decoded, see README.md); the report on the whole test split has the averaged
# students (fp32 and int8) and, for what averaging gives, the final weights.
set -euo pipefail
E=${EXPORTER:-target/release/exporter}
R=${RUN:-runs/s8}
B=$R/bundles-2400
OUT=${OUT:-docs/compression-study-cpu/2026-12-01-6-2-2400}
K=${K:-4}
mkdir -p "$B" "$OUT"
echo "+ $E export --model models/en-fr-teacher --out $B/teacher --precision fp32 --force" >&2
"$E" export --model models/en-fr-teacher --out "$B/teacher" --precision fp32 --force >/dev/null
bash docs/compression-study-cpu/2026-12-01-6-2/average-and-export.sh "$R" 6-2 "$K" "$B"
"$E" report --models teacher,student-6-2-kd-avg$K,student-6-2-kd-avg$K-int8,student-6-2-nokd-avg$K,student-6-2-nokd-avg$K-int8,student-6-2-kd-final,student-6-2-nokd-final \
    --models-dir "$B" --test data/en-fr/test --out "$OUT" --threads 1 --batch-sizes 1,32 --device cpu
bash docs/compression-study-cpu/2026-12-01-6-2/copy-records.sh "$R" "$OUT"
