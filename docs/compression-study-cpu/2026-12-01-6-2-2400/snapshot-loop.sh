#!/bin/bash
# Copies a run's checkpoint weights into RUN/snapshots/uN whenever the checkpoint reaches a
# multiple of EVERY updates (the checkpoint folder is swapped in whole, so a copy is checked
# against the update it was taken at).
RUN=$1; EVERY=${2:-100}
while true; do
  s=$RUN/checkpoint/trainer_state.json
  u=$(python3 -c "import json;print(json.load(open('$s'))['update'])" 2>/dev/null)
  if [ -n "$u" ] && [ $((u % EVERY)) -eq 0 ] && [ ! -d $RUN/snapshots/u$u ]; then
    t=$RUN/snapshots/.u$u; rm -rf $t; mkdir -p $t
    cp $RUN/checkpoint/model.safetensors $RUN/checkpoint/config.json $t/ && cp $RUN/model/tokenizer.json $RUN/model/tokenizer_meta.json $t/
    u2=$(python3 -c "import json;print(json.load(open('$s'))['update'])" 2>/dev/null)
    if [ "$u2" = "$u" ] && cmp -s $t/model.safetensors $RUN/checkpoint/model.safetensors; then mv $t $RUN/snapshots/u$u; echo "$(date +%T) u$u"; fi
  fi
  sleep 15
done
