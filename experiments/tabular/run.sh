#!/usr/bin/env bash
# Real-valued tabular data: scikit-learn's breast cancer set (569 x 30) through dbn-train with Gaussian visible
# units and standardised features, against logistic regression on the same splits, for seeds 0 1 2.
# Variants: gaussian (σ = 1), gaussian_learned (learned variances), gaussian under a relu first hidden layer
# (pretrain.lr=0.01: Gaussian-ReLU layers diverge at 0.05), and the same net from random init (pretrain=none).
# Usage: bash experiments/tabular/run.sh [OUT_DIR] [extra hydra overrides...]
set -euo pipefail
out=${1:-runs/tabular}
shift || true
python experiments/tabular/write_data.py "$out"
common=(data=arrays "data.features=$out/x.npy" "data.labels=$out/y.npy" data.scale=standard "model.hidden=[64,64]"
        trainer.enable_progress_bar=false)
for seed in 0 1 2; do
  dbn-train "${common[@]}" seed=$seed model.visible=gaussian hydra.run.dir="$out/gaussian/$seed" "$@" > /dev/null 2>&1
  dbn-train "${common[@]}" seed=$seed model.visible=gaussian_learned hydra.run.dir="$out/gaussian_learned/$seed" "$@" > /dev/null 2>&1
  dbn-train "${common[@]}" seed=$seed model.visible=gaussian "model.hidden_units=[relu,bernoulli]" pretrain.lr=0.01 \
    hydra.run.dir="$out/gaussian_relu/$seed" "$@" > /dev/null 2>&1
  dbn-train "${common[@]}" seed=$seed model.visible=gaussian pretrain=none hydra.run.dir="$out/baseline/$seed" "$@" > /dev/null 2>&1
done
for variant in gaussian gaussian_learned gaussian_relu baseline; do
  echo "## $variant"
  python experiments/summarize.py "$out/$variant"/*
done
python experiments/tabular/baseline.py "$out/x.npy" "$out/y.npy" 0 1 2
