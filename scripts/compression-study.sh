#!/usr/bin/env bash
# The compression study on the committed en-fr teacher (models/en-fr-teacher), rerunnable on any
# device. For each cut shape (default 6-2 and 6-1) the pruned student is trained four ways, every
# one for the same number of updates:
#   kd     word-level KD, the teacher online           cache  word-level KD from its top-k cache
#   seqkd  on the teacher's translations (--no-kd)     nokd   gold targets only (--no-kd)
# then a BiGRU student with word-level KD; the best student (dev BLEU) again with its vocabulary
# trimmed to the training corpus and as an int8 bundle; ONNX bundles of everything; and
# `exporter report` on the full test split with one ONNX Runtime thread at batch 1 and 32.
#
# Every command run is appended to $RUN/commands.txt. Every stage is resumable: a finished
# stage is skipped, a killed training resumes from its checkpoint, seq-KD from its last chunk, the
# top-k cache from its last shard — so a run split across sessions just reruns this script.
#
# With JOBS=2 THREADS=1 the shapes train side by side in two lanes and the BiGRU in a third (three
# one-thread trainings on two cores); the teacher's passes (seq-KD data, top-k cache) and the
# report run alone, with every core.
#
#   JOBS=2 THREADS=1 UPDATES=500 BIGRU_UPDATES=600 scripts/compression-study.sh  # 2 CPU cores: ≈ 3 hours
#   UPDATES=20 BIGRU_UPDATES=20 SEQKD_LIMIT=200 SENTENCES=50 RUN=/tmp/s scripts/compression-study.sh  # dry run
#
# On a GPU (PARALLEL=1, as scripts/train-teacher-gpu.sh runs it) every student is a process of its
# own: the online-KD and --no-kd students and the BiGRU start at once, beside the teacher's passes,
# and the cache and seq-KD students as soon as those are written. TRAIN_ONLY=1 stops after the
# training (the bundles and the report are made where the models are measured).
set -euo pipefail
TEACHER=${TEACHER:-models/en-fr-teacher}
CORPUS=${CORPUS:-data/en-fr}
RUN=${RUN:-runs/study}
OUT=${OUT:-docs/compression-study-cpu}
DEVICE=${DEVICE:-cpu}
DISTILL_CONFIG=${DISTILL_CONFIG:-configs/distill-small.toml}
SHAPES=${SHAPES:-6-2 6-1}
# Updates per student (equal for every variant of a shape, so KD vs --no-kd is at equal updates).
UPDATES=${UPDATES:-1000}
BIGRU_UPDATES=${BIGRU_UPDATES:-$UPDATES}
# The BiGRU has no --no-kd twin, so it may also stop on time (minutes; 0 = on updates only).
BIGRU_MINUTES=${BIGRU_MINUTES:-0}
# Trainings run at once, and the intra-op threads each uses (empty = libtorch's default).
JOBS=${JOBS:-1}
PARALLEL=${PARALLEL:-0}
TRAIN_ONLY=${TRAIN_ONLY:-0}
# A time cap on every student (minutes, 0 = none): a safety net, the update count is the plan.
MINUTES=${MINUTES:-0}
THREADS=${THREADS:-}
# Training pairs the teacher translates for seq-KD, spread over the split (0 = all); greedy.
SEQKD_LIMIT=${SEQKD_LIMIT:-30000}
SEQKD_BEAM=${SEQKD_BEAM:-1}
SEQKD_BATCH=${SEQKD_BATCH:-64}
# Test sentences scored by the report (0 = the whole split).
SENTENCES=${SENTENCES:-0}
EXPORTER=${EXPORTER:-target/release/exporter}
mkdir -p "$RUN" "$OUT"
run() {
    echo "$*" >>"$RUN/commands.txt"
    echo "+ $*" >&2
    "$@"
}
# A copy of the distill config with `out`, `corpus`, the update cap and the KD mode set.
derive() { # target out corpus updates mode
    sed -e "s|^out = .*|out = \"$2\"|" -e "s|^corpus = .*|corpus = \"$3\"|" -e "s|^max_updates = .*|max_updates = $4|" \
        -e "s|^eval_every = .*|eval_every = $(($4 / 4 > 0 ? $4 / 4 : 1))|" -e "s|^mode = .*|mode = \"$5\"|" \
        "$DISTILL_CONFIG" >"$1"
    # The teacher's top-k over the training split is built once and shared by every shape.
    [ "$5" = online ] || sed -i "/^mode = /a cache = \"$RUN/teacher-cache\"" "$1"
}
done_already() { [ -f "$1/model/config.json" ] && echo "$1: done already" >&2; }
dev_bleu() { # the last dev BLEU a training log recorded
    tail -n 50 "$1/train_log.jsonl" | grep -o '"dev_bleu":[0-9.]*' | tail -1 | cut -d: -f2
}

limit=()
[ "$SEQKD_LIMIT" != 0 ] && limit=(--limit "$SEQKD_LIMIT")
teacher_passes() {
    run "$EXPORTER" distill seqkd --teacher "$TEACHER" --corpus "$CORPUS" --out "$RUN/seqkd-corpus" \
        --beam "$SEQKD_BEAM" --batch-size "$SEQKD_BATCH" --device "$DEVICE" "${limit[@]}" >"$RUN/seqkd.log" 2>&1
    # The teacher's top-k over the training split is built once, before any training needs it.
    derive "$RUN/teacher-cache.toml" "$RUN/teacher-cache-config" "$CORPUS" 1 offline
    # (Always run: `cache.json` exists from the first shard on, and a complete cache is only checked.)
    run "$EXPORTER" distill cache --teacher "$TEACHER" --config "$RUN/teacher-cache.toml" --device "$DEVICE" \
        >"$RUN/teacher-cache.log" 2>&1
}
cap=()
[ "$MINUTES" != 0 ] && cap=(--max-minutes "$MINUTES")

train() { # student name, then the `exporter distill` arguments
    local name=$1
    shift
    done_already "$RUN/$name" && return
    run env ${THREADS:+OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS} "$EXPORTER" distill "$@" \
        >"$RUN/$name.log" 2>&1
}
prune_shape() {
    local pruned=$RUN/pruned-$1
    [ -f "$pruned/config.json" ] || run "$EXPORTER" prune --teacher "$TEACHER" --keep "$1" --out "$pruned" --force
}
variant() { # shape variant: one student of a pruned shape
    local shape=$1 name=student-$1-$2 corpus=$CORPUS mode=online flags=(--student "$RUN/pruned-$1")
    case $2 in
        cache) mode=offline ;;
        seqkd) flags+=(--no-kd) corpus=$RUN/seqkd-corpus ;;
        nokd) flags+=(--no-kd) ;;
    esac
    derive "$RUN/$name.toml" "$RUN/$name" "$corpus" "$UPDATES" "$mode"
    train "$name" --teacher "$TEACHER" "${flags[@]}" --config "$RUN/$name.toml" --device "$DEVICE" "${cap[@]}"
}
train_shape() { # 6-2: the pruned student, then its four variants one after another
    local v
    prune_shape "$1"
    for v in kd cache seqkd nokd; do variant "$1" "$v"; done
}
train_bigru() {
    local minutes=("${cap[@]}")
    [ "$BIGRU_MINUTES" != 0 ] && minutes=(--max-minutes "$BIGRU_MINUTES")
    derive "$RUN/student-bigru-kd.toml" "$RUN/student-bigru-kd" "$CORPUS" "$BIGRU_UPDATES" online
    sed -i '/^matmul_precision/d' "$RUN/student-bigru-kd.toml" # the GRUs compute in fp32 only
    train student-bigru-kd --teacher "$TEACHER" --arch bigru --config "$RUN/student-bigru-kd.toml" \
        --device "$DEVICE" "${minutes[@]}"
}
lane() { # tasks (shapes, or `bigru`) one after another
    local task
    for task in "$@"; do
        if [ "$task" = bigru ]; then train_bigru; else train_shape "$task"; fi
    done
}

# Shapes dealt round-robin to JOBS lanes; the BiGRU has a lane of its own when JOBS > 1.
read -ra shapes <<<"$SHAPES"
lanes=()
for i in "${!shapes[@]}"; do lanes[i % JOBS]+="${shapes[i]} "; done
if [ "$JOBS" -gt 1 ]; then lanes+=("bigru"); else lanes[0]+="bigru"; fi
# CPU seconds of every training, sampled every 15 s: the study reports CPU minutes, not wall time
# (three trainings share two cores).
sample_cpu() {
    local tick pid config f
    tick=$(getconf CLK_TCK)
    while sleep 15; do
        for pid in $(pgrep -f "exporter distill --teacher"); do
            config=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -o -- '--config [^ ]*' | cut -d' ' -f2) || continue
            read -ra f <"/proc/$pid/stat" 2>/dev/null || continue
            printf '%s\t%s\t%s\t%s\n' "$(date +%s)" "$pid" "$config" $(((f[13] + f[14]) / tick)) >>"$RUN/cpu-seconds.tsv"
        done
    done
}
sample_cpu &
sampler=$!
pids=()
if [ "$PARALLEL" = 1 ]; then
    for shape in "${shapes[@]}"; do prune_shape "$shape"; done
    teacher_passes &
    passes=$!
    for shape in "${shapes[@]}"; do
        variant "$shape" kd &
        pids+=($!)
        variant "$shape" nokd &
        pids+=($!)
    done
    train_bigru &
    pids+=($!)
    wait "$passes" || { echo "the teacher's passes failed: see $RUN/seqkd.log, $RUN/teacher-cache.log" >&2; exit 1; }
    for shape in "${shapes[@]}"; do
        variant "$shape" cache &
        pids+=($!)
        variant "$shape" seqkd &
        pids+=($!)
    done
else
    teacher_passes
    for i in "${!lanes[@]}"; do
        # shellcheck disable=SC2086 # a lane is a list of words
        lane ${lanes[i]} &
        pids+=($!)
    done
fi
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
kill "$sampler"
[ "$failed" = 0 ] || { echo "a training failed: see $RUN/student-*.log" >&2; exit 1; }

students=()
for shape in "${shapes[@]}"; do
    for variant in kd cache seqkd nokd; do students+=("student-$shape-$variant"); done
done
students+=(student-bigru-kd)

# The best Transformer student by dev BLEU, trimmed to the training corpus's tokens.
best= best_bleu=-1
for name in "${students[@]}"; do
    [ "$name" = student-bigru-kd ] && continue
    bleu=$(dev_bleu "$RUN/$name")
    if python3 -c "import sys; sys.exit(0 if float('$bleu') > float('$best_bleu') else 1)"; then
        best=$name best_bleu=$bleu
    fi
done
echo "best student by dev BLEU: $best ($best_bleu)" | tee "$RUN/best.txt"
[ "$TRAIN_ONLY" = 1 ] && exit 0
[ -f "$RUN/$best-trimmed/config.json" ] || run "$EXPORTER" prune --teacher "$RUN/$best/model" \
    --trim-vocab "$CORPUS" --out "$RUN/$best-trimmed" --force

bundles=$RUN/bundles
export_one() { # model name precision
    [ -f "$bundles/$2/manifest.json" ] || run "$EXPORTER" export --model "$1" --out "$bundles/$2" --precision "$3" --force
}
export_one "$TEACHER" teacher fp32
for name in "${students[@]}"; do export_one "$RUN/$name/model" "$name" fp32; done
export_one "$RUN/$best-trimmed" "$best-trimmed" fp32
export_one "$RUN/$best/model" "$best-int8" int8
export_one "$RUN/$best-trimmed" "$best-trimmed-int8" int8

models=teacher
for name in "${students[@]}" "$best-trimmed" "$best-int8" "$best-trimmed-int8"; do models+=",$name"; done
sentences=()
[ "$SENTENCES" != 0 ] && sentences=(--sentences "$SENTENCES")
run "$EXPORTER" report --models "$models" --models-dir "$bundles" --test "$CORPUS/test" --out "$OUT" \
    --threads 1 --batch-sizes 1,32 "${sentences[@]}" --device "$DEVICE" 2>&1 | tee "$RUN/report.log"
cp "$RUN/commands.txt" "$OUT/commands.txt"
python3 scripts/study-summary.py --run "$RUN" --out "$OUT"
