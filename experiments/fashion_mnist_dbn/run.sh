#!/usr/bin/env bash
# Fashion-MNIST 784-500-500-2000 DBN: pretrained vs the same net (and fine-tuning budget) from random init,
# seeds 0 1 2, then the table and the learning curves.
# Usage: bash experiments/fashion_mnist_dbn/run.sh [OUT_DIR] [extra hydra overrides...]
# Needs the idx files in /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist)
# or data.root=FOLDER, and matplotlib for the plot (pip install -e ".[experiments]").
set -euo pipefail
out=${1:-runs/fashion_mnist_dbn}
shift || true
for seed in 0 1 2; do
  dbn-train experiment=fashion_mnist_dbn seed=$seed hydra.run.dir="$out/dbn/$seed" trainer.enable_progress_bar=false "$@"
  dbn-train experiment=fashion_mnist_dbn pretrain=none seed=$seed hydra.run.dir="$out/baseline/$seed" trainer.enable_progress_bar=false "$@"
done
python experiments/summarize.py "$out"/dbn/* "$out"/baseline/*
python experiments/learning_curves.py --ymin 85 --out experiments/fashion_mnist_dbn/results/learning_curves.png pretrained="$out/dbn/*" "random init"="$out/baseline/*"
