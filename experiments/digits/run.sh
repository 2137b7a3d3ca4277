#!/usr/bin/env bash
# Digits (the default job): pretrained DBN vs the same net from random init vs scikit-learn's MLP,
# on the same split, for seeds 0 1 2. Usage: bash experiments/digits/run.sh [OUT_DIR] [extra overrides...]
set -euo pipefail
out=${1:-runs/digits}
shift || true
for seed in 0 1 2; do
  dbn-train seed=$seed hydra.run.dir="$out/dbn/$seed" trainer.enable_progress_bar=false "$@" > /dev/null 2>&1
  dbn-train seed=$seed pretrain=none hydra.run.dir="$out/baseline/$seed" trainer.enable_progress_bar=false "$@" > /dev/null 2>&1
done
python experiments/summarize.py "$out"/dbn/* "$out"/baseline/*
python experiments/digits/mlp_baseline.py 0 1 2
