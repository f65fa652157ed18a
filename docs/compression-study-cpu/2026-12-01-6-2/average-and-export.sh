#!/usr/bin/env bash
# A student pair's bundles for a report: each twin's newest K snapshots averaged, exported fp32 and
# int8, and its final weights exported fp32. Usage: average-and-export.sh RUN CUT K BUNDLES
# (the runs' folder, the pair's cut such as 6-2, K, the bundles' folder); EXPORTER overrides the
# binary. Writes RUN/student-CUT-{kd,nokd}-avgK and BUNDLES/student-CUT-{kd,nokd}-{avgK,avgK-int8,final}.
set -euo pipefail
E=${EXPORTER:-target/release/exporter}
R=$1
CUT=$2
K=$3
B=$4
mkdir -p "$B"
ex() { echo "+ $E export --model $1 --out $B/$2 --precision $3 --force" >&2; "$E" export --model "$1" --out "$B/$2" --precision "$3" --force >/dev/null; }
for v in kd nokd; do
    echo "+ $E average --run $R/student-$CUT-$v --last $K --out $R/student-$CUT-$v-avg$K" >&2
    "$E" average --run "$R/student-$CUT-$v" --last "$K" --out "$R/student-$CUT-$v-avg$K"
    ex "$R/student-$CUT-$v-avg$K" "student-$CUT-$v-avg$K" fp32
    ex "$R/student-$CUT-$v-avg$K" "student-$CUT-$v-avg$K-int8" int8
    ex "$R/student-$CUT-$v/model" "student-$CUT-$v-final" fp32
done
