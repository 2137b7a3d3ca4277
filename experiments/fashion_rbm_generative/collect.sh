#!/usr/bin/env bash
# Copy every evaluated run (eval.json + results.json) of run.sh's output directories into results/ and
# rebuild the two tables.
# Usage: bash experiments/fashion_rbm_generative/collect.sh [RUNS_500] [RUNS_20]
#        (defaults: runs/fashion_rbm_generative, runs/fashion_rbm_exact)
set -euo pipefail
here=experiments/fashion_rbm_generative
for pair in "${1:-runs/fashion_rbm_generative} hidden500" "${2:-runs/fashion_rbm_exact} hidden20"; do
  set -- $pair
  for d in "$1"/*/seed*; do
    [ -f "$d/eval.json" ] && [ -f "$d/results.json" ] || continue
    dst=$here/results/$2/$(basename "$(dirname "$d")")/$(basename "$d")
    mkdir -p "$dst" && cp "$d/eval.json" "$d/results.json" "$dst/"
  done
  python $here/table.py $here/results/$2 --json $here/results/$2/table.json > $here/results/$2/table.md
done
