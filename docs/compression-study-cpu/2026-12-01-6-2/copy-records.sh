#!/usr/bin/env bash
# What a report folder of the 6-2 pair keeps of its trainings: each student's log and config, and
# the training commands. Usage: copy-records.sh RUN OUT (the runs' folder, the report folder).
set -euo pipefail
R=$1
OUT=$2
for v in kd nokd; do
    cp "$R/student-6-2-$v/train_log.jsonl" "$OUT/student-6-2-$v.train_log.jsonl"
    cp "$R/student-6-2-$v.toml" "$OUT/student-6-2-$v.toml"
done
cp "$R/commands.txt" "$OUT/commands.txt"
