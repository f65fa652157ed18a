#!/usr/bin/env bash
# Session 9 (2 CPU cores, AVX2): the session-8 students continued to 1,600 updates each (word-level KD
# with the teacher online, and the --no-kd twin), side by side, one thread each (training
# commands: commands.txt). The bundles and the report on the whole test split are made as in
# session 8, into this folder; the fp16 copies a later session continues from are `exporter
# convert`'s (see the students' cards under models/students/).
set -euo pipefail
OUT=docs/compression-study-cpu/2026-12-01-6-2-1600 exec bash docs/compression-study-cpu/2026-12-01-6-2/report-commands.sh
