#!/usr/bin/env bash
# Copy every evaluated run (eval.json + results.json) of run.sh's output directories into results/ and
# rebuild the tables: 500 hidden units for 10 epochs (5,500 updates), 20 hidden units (exact), and the longer
# budgets of the centered-against-plain probe (EPOCHS=50 and EPOCHS=100 in run.sh), the larger learning rates, and
# the flipped images (data.invert=true).
# Usage: bash experiments/fashion_rbm_generative/collect.sh [RUNS_500] [RUNS_20] [RUNS_50EP] [RUNS_100EP] [RUNS_LR]
#        [RUNS_FLIPPED] (defaults: runs/fashion_rbm_generative, runs/fashion_rbm_exact, runs/fashion_rbm_50ep,
#        runs/fashion_rbm_100ep, runs/fashion_rbm_lr, runs/fashion_rbm_flipped)
set -euo pipefail
here=experiments/fashion_rbm_generative
for pair in "${1:-runs/fashion_rbm_generative} hidden500" "${2:-runs/fashion_rbm_exact} hidden20" \
            "${3:-runs/fashion_rbm_50ep} hidden500_50ep" "${4:-runs/fashion_rbm_100ep} hidden500_100ep" \
            "${5:-runs/fashion_rbm_lr} lr_probe" "${6:-runs/fashion_rbm_flipped} flipped"; do
  set -- $pair
  for d in "$1"/*/seed*; do
    [ -f "$d/eval.json" ] && [ -f "$d/results.json" ] || continue
    dst=$here/results/$2/$(basename "$(dirname "$d")")/$(basename "$d")
    mkdir -p "$dst" && cp "$d/eval.json" "$d/results.json" "$dst/"
  done
  [ -d "$here/results/$2" ] || continue
  python $here/table.py $here/results/$2 --json $here/results/$2/table.json > $here/results/$2/table.md
done
