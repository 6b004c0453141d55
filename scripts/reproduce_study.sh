#!/usr/bin/env bash
# Reproduce the study's seven presets with MobileNet (ImageNet) on the real photos, 3 seeds each,
# on one saved split, plus a no-transfer baseline. Every step is the product's own CLI.
# Usage: FLOWER_DATA=../shared/data/flowers FLOWER_WEIGHTS_DIR=../shared/weights \
#        bash scripts/reproduce_study.sh [RUNS_DIR]
set -euo pipefail
RUNS="${1:-runs/study}"
DATA="${FLOWER_DATA:?set FLOWER_DATA to the photos}"
LOG="$RUNS/timings.tsv"
mkdir -p "$RUNS"
train() {  # train LABEL ARGS... : one run, its wall time appended to timings.tsv
  local label="$1"; shift
  local start end line
  start=$(date +%s)
  line=$(python -m flower_core train --data "$DATA" --runs "$RUNS" --json "$@" | tail -n 1)
  end=$(date +%s)
  printf '%s\t%s\t%s\n' "$label" "$((end - start))" "$line" >> "$LOG"
  echo "$label $((end - start))s $line"
}
SPLIT="$RUNS/split.json"
if [ ! -f "$SPLIT" ]; then
  first=$(train "base seed 0" --preset base --backbone mobilenet --weights imagenet --seed 0)
  run_dir=$(echo "$first" | sed 's/.*"run_dir": "\([^"]*\)".*/\1/')
  cp "$run_dir/split.json" "$SPLIT"
  done_first=1
fi
for preset in base dropout50 dropout20 batch64 plateau center batchnorm; do
  for seed in 0 1 2; do
    if [ "$preset" = base ] && [ "$seed" = 0 ] && [ "${done_first:-0}" = 1 ]; then continue; fi
    train "$preset seed $seed" --preset "$preset" --backbone mobilenet --weights imagenet \
      --seed "$seed" --split "$SPLIT"
  done
done
for seed in 0 1 2; do
  train "no-transfer seed $seed" --preset base --backbone mobilenet --weights none \
    --image-size "${BASELINE_SIZE:-96}" --epochs "${BASELINE_EPOCHS:-15}" --seed "$seed" --split "$SPLIT"
done
