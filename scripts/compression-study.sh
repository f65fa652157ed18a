#!/usr/bin/env bash
# The compression comparison on the real en-fr corpus, rerunnable on any device: a `small`
# teacher, then four students from it, each with the same training time —
#   6-2 pruned, gold only (--no-kd)       6-2 pruned, word-level KD (online)
#   6-2 pruned, sequence-level KD          BiGRU, word-level KD
# — and every model's greedy dev BLEU (sacreBLEU 13a) and parameter count in $RUN/summary.tsv.
# Every command run is appended to $RUN/commands.txt; every stage is resumable (train/distill
# resume from their checkpoints, seqkd from its last chunk), so rerunning after a kill goes on.
#
# Needs target/release/exporter, data/en-fr (exporter data fetch) and runs/small/tokenizer
# (exporter tokenizer train --vocab-size 16000 --out runs/small/tokenizer).
#   scripts/compression-study.sh                                   # 2 CPU cores: ≈ 75 min
#   DEVICE=cuda TEACHER_MINUTES=6 STUDENT_MINUTES=1.5 SEQKD_LIMIT=0 scripts/compression-study.sh
set -euo pipefail
RUN=${RUN:-runs/study-cpu}
DEVICE=${DEVICE:-cpu}
TEACHER_CONFIG=${TEACHER_CONFIG:-configs/teacher-small.toml}
DISTILL_CONFIG=${DISTILL_CONFIG:-configs/distill-small.toml}
TEACHER_MINUTES=${TEACHER_MINUTES:-40}
STUDENT_MINUTES=${STUDENT_MINUTES:-6}
# Training pairs the teacher translates for seq-KD (0 = all); greedy unless SEQKD_BEAM says otherwise.
SEQKD_LIMIT=${SEQKD_LIMIT:-8000}
SEQKD_BEAM=${SEQKD_BEAM:-1}
# Dev sentences scored at the end (0 = all 2,020).
DEV_LINES=${DEV_LINES:-0}
EXPORTER=${EXPORTER:-target/release/exporter}
mkdir -p "$RUN"
run() {
    echo "$*" >>"$RUN/commands.txt"
    echo "+ $*" >&2
    "$@"
}
# A copy of a config with `out` (and optionally `corpus`) pointing into $RUN, and no update cap:
# the time budget decides.
derive() { # source target out [corpus]
    sed -e "s|^out = .*|out = \"$3\"|" -e "s|^max_updates = .*|max_updates = 1000000|" \
        ${4:+-e "s|^corpus = .*|corpus = \"$4\"|"} "$1" >"$2"
}

# A stage whose model is written is done (a rerun trains no further); a killed one resumes from
# its checkpoint with a fresh time budget.
done_already() { [ -f "$1/model/config.json" ] && echo "$1: done already" >&2; }

derive "$TEACHER_CONFIG" "$RUN/teacher.toml" "$RUN/teacher"
done_already "$RUN/teacher" || run "$EXPORTER" train --config "$RUN/teacher.toml" --device "$DEVICE" --max-minutes "$TEACHER_MINUTES" \
    2>&1 | tee "$RUN/teacher.log"
TEACHER=$RUN/teacher/model

[ -f "$RUN/pruned-6-2/config.json" ] || run "$EXPORTER" prune --teacher "$TEACHER" --keep 6-2 --out "$RUN/pruned-6-2" --force | tee "$RUN/prune.log"

limit=()
[ "$SEQKD_LIMIT" != 0 ] && limit=(--limit "$SEQKD_LIMIT")
run "$EXPORTER" distill seqkd --teacher "$TEACHER" --corpus data/en-fr --out "$RUN/seqkd-corpus" \
    --beam "$SEQKD_BEAM" --device "$DEVICE" "${limit[@]}" 2>&1 | tee "$RUN/seqkd.log"

for variant in nokd kd seqkd bigru; do
    corpus=
    flags=(--student "$RUN/pruned-6-2")
    case $variant in
        nokd) flags+=(--no-kd) ;;
        seqkd) flags+=(--no-kd) corpus=$RUN/seqkd-corpus ;;
        bigru) flags=(--arch bigru) ;;
    esac
    derive "$DISTILL_CONFIG" "$RUN/distill-$variant.toml" "$RUN/student-$variant" $corpus
    done_already "$RUN/student-$variant" || run "$EXPORTER" distill --teacher "$TEACHER" "${flags[@]}" --config "$RUN/distill-$variant.toml" \
        --device "$DEVICE" --max-minutes "$STUDENT_MINUTES" 2>&1 | tee "$RUN/student-$variant.log"
done

dev_en=data/en-fr/dev.en dev_fr=data/en-fr/dev.fr
if [ "$DEV_LINES" != 0 ]; then
    head -n "$DEV_LINES" data/en-fr/dev.en >"$RUN/dev.en" && head -n "$DEV_LINES" data/en-fr/dev.fr >"$RUN/dev.fr"
    dev_en=$RUN/dev.en dev_fr=$RUN/dev.fr
fi
printf 'model\tparameters\tdev BLEU\tdev chrF\n' >"$RUN/summary.tsv"
for model in teacher student-nokd student-kd student-seqkd student-bigru; do
    dir=$RUN/$model/model
    run "$EXPORTER" translate --model "$dir" --input "$dev_en" --output "$RUN/$model.dev.fr" \
        --batch-size 64 --device "$DEVICE"
    score=$("$EXPORTER" score --ref "$dev_fr" --hyp "$RUN/$model.dev.fr" --format json)
    # The parameter count as the training run printed it.
    params=$(grep -ohE 'model: [0-9]+ parameters|student [0-9]+;' "$RUN/$model.log" | grep -oE '[0-9]+' | tail -1)
    python3 - "$model" "$params" "$score" >>"$RUN/summary.tsv" <<'EOF'
import json, sys
model, params, score = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(f"{model}\t{params}\t{score['bleu']['score']:.2f}\t{score['chrf']['score']:.2f}")
EOF
done
column -t -s $'\t' "$RUN/summary.tsv"
