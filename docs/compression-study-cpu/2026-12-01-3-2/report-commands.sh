#!/usr/bin/env bash
# Session 11 (2 CPU cores, AVX2): the 3-2 pair (encoder layers 0, 3, 5; decoder 0, 5), started in
# session 10, trained on to 2,400 updates each (KD with the teacher online, and the --no-kd twin;
# training commands: commands.txt). Each student's newest K = 4 snapshots (updates 2,100–2,400)
# are averaged — the 6-2 pair's K, fixed before these runs finished; no test decoding chose it.
# The report has the teacher, the 6-2 KD student of 2026-12-01-6-2-2400 (the best so far, fp32
# and int8) and the 3-2 pair averaged (fp32, int8) and final, timed in three interleaved rounds.
set -euo pipefail
E=${EXPORTER:-target/release/exporter}
R=${RUN:-runs/s10}
B=$R/bundles-2400
B62=${BUNDLES_6_2:-runs/s8/bundles-2400}
OUT=${OUT:-docs/compression-study-cpu/2026-12-01-3-2}
K=4
mkdir -p "$B" "$OUT"
ex() { echo "+ $E export --model $1 --out $2 --precision $3 --force" >&2; "$E" export --model "$1" --out "$2" --precision "$3" --force >/dev/null; }
[ -d "$B62/teacher" ] || ex models/en-fr-teacher "$B62/teacher" fp32
[ -d "$B62/student-6-2-kd-avg4-int8" ] || {
    ex models/students/en-fr-6-2-kd "$B62/student-6-2-kd-avg4" fp32
    ex models/students/en-fr-6-2-kd "$B62/student-6-2-kd-avg4-int8" int8
}
bash docs/compression-study-cpu/2026-12-01-6-2/average-and-export.sh "$R" 3-2 "$K" "$B"
models=$B62/teacher,$B62/student-6-2-kd-avg4,$B62/student-6-2-kd-avg4-int8
for m in kd-avg$K kd-avg$K-int8 nokd-avg$K nokd-avg$K-int8 kd-final nokd-final; do models+=,$B/student-3-2-$m; done
"$E" report --models "$models" --test data/en-fr/test --out "$OUT" --threads 1 --batch-sizes 1,32 \
    --speed-rounds 3 --device cpu
bash docs/compression-study-cpu/2026-12-01-6-2/copy-records.sh "$R" "$OUT" 3-2
