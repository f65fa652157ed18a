#!/usr/bin/env bash
# Trains the default en-fr teacher on a CUDA machine with xlmc's own `exporter train`, then
# writes it as fp16 safetensors shards (≤ 15 MiB each) with its log and curves into $OUT.
#
# Needs: target/release/exporter (built against torch 2.11.0), data/en-fr (exporter data fetch),
# runs/small/tokenizer (exporter tokenizer train --vocab-size 16000 --out runs/small/tokenizer),
# and a python3 whose torch 2.11.0 brings libtorch's CUDA libraries.
#   OUT=/tmp/teacher scripts/train-teacher-gpu.sh            # the GPU slot (7 minutes of training)
#   OUT=/tmp/t DEVICE=cpu MINUTES=0.2 scripts/train-teacher-gpu.sh   # a dry run of the same steps
set -euo pipefail
: "${OUT:?set OUT to the folder that receives the teacher}"
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-7}
EXPORTER=${EXPORTER:-target/release/exporter}
CONFIG=configs/teacher-small-gpu.toml
RUN=runs/small-gpu/teacher
trap 'cp -f "$RUN/train_log.jsonl" "$OUT/" 2>/dev/null || true' EXIT

mkdir -p "$OUT"
if [ "$DEVICE" = cuda ]; then
    torch_lib=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')/lib
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    # ONNX Runtime only matters to doctor's second half; use python's when there is one.
    ort_lib=$(python3 -c 'import onnxruntime, os, glob; print(glob.glob(os.path.dirname(onnxruntime.__file__) + "/capi/libonnxruntime.so*")[0])' 2>/dev/null || true)
    [ -n "$ort_lib" ] && export ORT_DYLIB_PATH="$ort_lib"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
fi
# Informative only: `train` itself fails clearly when the device is unusable.
"$EXPORTER" doctor --device "$DEVICE" 2>&1 | tee "$OUT/doctor.txt" || echo "doctor reported a problem (above)"
command=("$EXPORTER" train --config "$CONFIG" --device "$DEVICE" --max-minutes "$MINUTES")
echo "${command[*]}" > "$OUT/command.txt"
"${command[@]}" 2>&1 | tee "$OUT/train.txt"
"$EXPORTER" convert --model "$RUN/model" --out "$OUT/teacher" --half --shard-mib 15 | tee -a "$OUT/train.txt"
cp "$RUN/train_log.jsonl" "$RUN/curves.svg" "$CONFIG" "$OUT/"
# Full dev and test translations (scored afterwards with `exporter score`); capped in time.
for split in dev test; do
    timeout "${TRANSLATE_SECONDS:-45}" "$EXPORTER" translate --model "$OUT/teacher" --device "$DEVICE" \
        --input "data/en-fr/$split.en" --output "$OUT/$split.greedy.fr" --batch-size 64 \
        || echo "translating $split did not finish"
done
du -sh "$OUT"/*
