#!/usr/bin/env bash
# What a report folder of a student pair keeps of its trainings: each student's log and config,
# and the training commands. Usage: copy-records.sh RUN OUT [CUT] (the runs' folder, the report
# folder, the pair's cut: 6-2 unless given).
set -euo pipefail
R=$1
OUT=$2
CUT=${3:-6-2}
for v in kd nokd; do
    cp "$R/student-$CUT-$v/train_log.jsonl" "$OUT/student-$CUT-$v.train_log.jsonl"
    cp "$R/student-$CUT-$v.toml" "$OUT/student-$CUT-$v.toml"
done
cp "$R/commands.txt" "$OUT/commands.txt"
