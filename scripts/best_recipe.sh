#!/usr/bin/env bash
# The `best` preset on the study's saved split, 3 seeds frozen, then one run that also fine-tunes
# the last 2 MobileNet blocks. Usage as scripts/reproduce_study.sh (run that first for the split).
set -euo pipefail
RUNS="${1:-runs/study}"
DATA="${FLOWER_DATA:?set FLOWER_DATA to the photos}"
for seed in 0 1 2; do
  start=$(date +%s)
  line=$(python -m flower_core train --data "$DATA" --runs "$RUNS" --json --preset best \
    --backbone mobilenet --weights imagenet --seed "$seed" --split "$RUNS/split.json" | tail -n 1)
  printf 'best seed %s\t%s\t%s\n' "$seed" "$(($(date +%s) - start))" "$line" | tee -a "$RUNS/timings.tsv"
done
start=$(date +%s)
line=$(python -m flower_core train --data "$DATA" --runs "$RUNS/fine-tune" --json --preset best \
  --backbone mobilenet --weights imagenet --seed 0 --split "$RUNS/split.json" \
  --fine-tune-blocks "${FINE_TUNE_BLOCKS:-2}" --fine-tune-epochs "${FINE_TUNE_EPOCHS:-3}" | tail -n 1)
printf 'best + fine-tune seed 0\t%s\t%s\n' "$(($(date +%s) - start))" "$line" | tee -a "$RUNS/timings.tsv"
