#!/usr/bin/env bash
# Trains the default en-fr teacher on a CUDA machine with xlmc's own `exporter train` and writes
# it as fp16 safetensors shards (≤ 15 MiB each) — PHASE=teacher — and then, in a second call on
# the still-warm machine (one device call may run 10 minutes at most), PHASE=students: a 6-2
# student pruned from it and distilled with word-level KD, the same student with --no-kd, and a
# BiGRU student with KD, STUDENT_MINUTES each, for the comparison numbers. PHASE=all does both.
# What must come back is packed into ≤ 15 MiB tar parts in $OUT (the device returns a few files
# of bounded size): `cat $OUT/bundle.tar.part-* | tar x` restores it.
#
# Needs: target/release/exporter (built against torch 2.11.0), data/en-fr (exporter data fetch),
# runs/small/tokenizer (exporter tokenizer train --vocab-size 16000 --out runs/small/tokenizer),
# and a python3 whose torch 2.11.0 brings libtorch's CUDA libraries.
#   OUT=/tmp/teacher scripts/train-teacher-gpu.sh                         # the GPU slot
#   OUT=/tmp/t DEVICE=cpu MINUTES=0.05 STUDENT_MINUTES=0.05 scripts/train-teacher-gpu.sh   # dry run
set -euo pipefail
: "${OUT:?set OUT to the folder that receives the teacher}"
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-6}
STUDENT_MINUTES=${STUDENT_MINUTES:-1.2}
PHASE=${PHASE:-all}
EXPORTER=${EXPORTER:-target/release/exporter}
CONFIG=configs/teacher-small-gpu.toml
RUN=runs/small-gpu
STAGE=$RUN/ship-$PHASE   # what gets packed
mkdir -p "$OUT" "$STAGE"
log() { echo "$*" | tee -a "$STAGE/commands.txt"; }
pack() {
    cp -f "$RUN"/teacher/train_log.jsonl "$STAGE/teacher_train_log.jsonl" 2>/dev/null || true
    tar cf - -C "$STAGE" . | split -b 15M - "$OUT/bundle.tar.part-"
    ls -la "$OUT"
}
trap pack EXIT

if [ "$DEVICE" = cuda ]; then
    torch_lib=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')/lib
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    # ONNX Runtime only matters to doctor's second half; use python's when there is one.
    ort_lib=$(python3 -c 'import onnxruntime, os, glob; print(glob.glob(os.path.dirname(onnxruntime.__file__) + "/capi/libonnxruntime.so*")[0])' 2>/dev/null || true)
    [ -n "$ort_lib" ] && export ORT_DYLIB_PATH="$ort_lib"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$STAGE/gpu.txt"
fi
# Informative only: `train` itself fails clearly when the device is unusable.
"$EXPORTER" doctor --device "$DEVICE" 2>&1 | tee "$STAGE/doctor.txt" || echo "doctor reported a problem (above)"

if [ "$PHASE" != students ]; then
log "$EXPORTER train --config $CONFIG --device $DEVICE --max-minutes $MINUTES"
"$EXPORTER" train --config "$CONFIG" --device "$DEVICE" --max-minutes "$MINUTES" 2>&1 | tee "$STAGE/teacher_train.txt"
log "$EXPORTER convert --model $RUN/teacher/model --out $STAGE/teacher --half --shard-mib 15"
"$EXPORTER" convert --model "$RUN/teacher/model" --out "$STAGE/teacher" --half --shard-mib 15 | tee -a "$STAGE/teacher_train.txt"
cp "$RUN/teacher/curves.svg" "$CONFIG" "$STAGE/"
log "$EXPORTER translate --model $STAGE/teacher --device $DEVICE --input data/en-fr/dev.en --output $STAGE/teacher.dev.fr --batch-size 64"
timeout 60 "$EXPORTER" translate --model "$STAGE/teacher" --device "$DEVICE" --input data/en-fr/dev.en \
    --output "$STAGE/teacher.dev.fr" --batch-size 64 || echo "translating dev did not finish"
fi

if [ "$PHASE" != teacher ]; then
    log "$EXPORTER prune --teacher $RUN/teacher/model --keep 6-2 --out $RUN/student-6-2"
    "$EXPORTER" prune --teacher "$RUN/teacher/model" --keep 6-2 --out "$RUN/student-6-2" --force | tee "$STAGE/prune.txt"
    for variant in kd nokd bigru; do
        out=$RUN/student-6-2-$variant
        [ $variant = bigru ] && out=$RUN/student-bigru
        config=$RUN/distill-$variant.toml
        sed "s|runs/small-gpu/student-6-2-kd|$out|" configs/distill-small-gpu.toml > "$config"
        case $variant in
            kd) flags=(--student "$RUN/student-6-2") ;;
            nokd) flags=(--student "$RUN/student-6-2" --no-kd) ;;
            bigru) flags=(--arch bigru) ;;
        esac
        log "$EXPORTER distill --teacher $RUN/teacher/model ${flags[*]} --config $config --device $DEVICE --max-minutes $STUDENT_MINUTES"
        "$EXPORTER" distill --teacher "$RUN/teacher/model" "${flags[@]}" --config "$config" \
            --device "$DEVICE" --max-minutes "$STUDENT_MINUTES" 2>&1 | tee "$STAGE/student_$variant.txt" \
            || echo "distill $variant failed"
        cp -f "$out/train_log.jsonl" "$STAGE/student_${variant}_train_log.jsonl" 2>/dev/null || true
        timeout 40 "$EXPORTER" translate --model "$out/model" --device "$DEVICE" \
            --input data/en-fr/dev.en --output "$STAGE/student_$variant.dev.fr" --batch-size 64 || echo "translating dev did not finish"
    done
fi
