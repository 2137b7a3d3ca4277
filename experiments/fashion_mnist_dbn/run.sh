#!/usr/bin/env bash
# Fashion-MNIST 784-500-500-2000 DBN: pretrained vs the same net from random init.
# Usage: bash experiments/fashion_mnist_dbn/run.sh [OUT_DIR] [extra hydra overrides...]
# Needs the idx files in /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist)
# or data.root=FOLDER. Prints a table and leaves results.json / dbn.pt / tensorboard/ in OUT_DIR/{dbn,baseline}.
set -euo pipefail
out=${1:-runs/fashion_mnist_dbn}
shift || true
dbn-train experiment=fashion_mnist_dbn hydra.run.dir="$out/dbn" trainer.enable_progress_bar=false "$@"
dbn-train experiment=fashion_mnist_dbn pretrain=none hydra.run.dir="$out/baseline" trainer.enable_progress_bar=false "$@"
python experiments/summarize.py "$out/dbn" "$out/baseline"
