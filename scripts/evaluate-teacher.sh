#!/usr/bin/env bash
# Scores a model folder on the full dev and test splits of a corpus, greedy, the way its model
# card reports it: translations, xlmc's BLEU/chrF with sacreBLEU signatures, the same numbers from
# python sacreBLEU when it is installed (./xlmc oracles), and ten test samples beside their
# references.
#
#   scripts/evaluate-teacher.sh models/en-fr-teacher            # → models/en-fr-teacher/eval/
#   MODEL=… CORPUS=data/en-fr OUT=… THREADS=2 scripts/evaluate-teacher.sh
set -euo pipefail
MODEL=${1:-${MODEL:-models/en-fr-teacher}}
CORPUS=${CORPUS:-data/en-fr}
OUT=${OUT:-$MODEL/eval}
EXPORTER=${EXPORTER:-target/release/exporter}
SAMPLES=${SAMPLES:-10}
SRC=${SRC:-en}
TGT=${TGT:-fr}
[ -x "$EXPORTER" ] || { echo "evaluate-teacher: $EXPORTER is missing: run ./xlmc build" >&2; exit 1; }
[ -f "$CORPUS/test.$SRC" ] || { echo "evaluate-teacher: $CORPUS/test.$SRC is missing: run exporter data fetch" >&2; exit 1; }
mkdir -p "$OUT"
ORACLES="$(dirname "$0")/../.deps/oracles"

for split in dev test; do
    start=$(date +%s.%N)
    "$EXPORTER" translate --model "$MODEL" --input "$CORPUS/$split.$SRC" --output "$OUT/$split.hyp.$TGT" \
        --batch-size 64 --beam 1
    end=$(date +%s.%N)
    echo "$split: $(wc -l < "$CORPUS/$split.$SRC") sentences translated in $(echo "$end - $start" | bc) s" \
        | tee "$OUT/$split.time.txt"
    "$EXPORTER" score --ref "$CORPUS/$split.$TGT" --hyp "$OUT/$split.hyp.$TGT" | tee "$OUT/$split.scores.txt"
    "$EXPORTER" score --ref "$CORPUS/$split.$TGT" --hyp "$OUT/$split.hyp.$TGT" --format json > "$OUT/$split.scores.json"
    if [ -d "$ORACLES" ]; then
        PYTHONPATH="$ORACLES" python3 -m sacrebleu "$CORPUS/$split.$TGT" -i "$OUT/$split.hyp.$TGT" -m bleu chrf \
            -f text | tee "$OUT/$split.sacrebleu.txt"
    fi
done

# Ten test samples spread over the split (its documents are in order: help files, then Bibles).
total=$(wc -l < "$CORPUS/test.$SRC")
{
    echo "| # | source | xlmc | reference |"
    echo "| ---: | --- | --- | --- |"
    for i in $(seq 0 $((SAMPLES - 1))); do
        line=$(( i * total / SAMPLES + 1 ))
        cell() { sed -n "${line}p" "$1" | sed 's/|/\\|/g'; }
        echo "| $line | $(cell "$CORPUS/test.$SRC") | $(cell "$OUT/test.hyp.$TGT") | $(cell "$CORPUS/test.$TGT") |"
    done
} > "$OUT/samples.md"
cat "$OUT/samples.md"
