#!/usr/bin/env bash
# Fashion-MNIST (stochastically binarised once, seed 0), one RBM of 500 hidden units trained with
# CD-1, CD-10 and PCD-1 for the same number of updates (10 epochs x 550 batches of 100), then
# evaluated with AIS (100 chains, 14,500 betas): test log-likelihood in nats.
# Usage: bash experiments/fashion_rbm_ais/run.sh [OUT_DIR]
set -euo pipefail
out=${1:-runs/fashion_rbm_ais}
common=(data=fashion_mnist data.binarize=sample model.hidden=[500] finetune=none
        pretrain.epochs=10 pretrain.batch_size=100 pretrain.lr=0.05 pretrain.momentum_switch_epoch=5
        trainer.enable_progress_bar=false)
dbn-train "${common[@]}" pretrain.k=1 hydra.run.dir="$out/cd1"
dbn-train "${common[@]}" pretrain.k=10 hydra.run.dir="$out/cd10"
dbn-train "${common[@]}" pretrain.k=1 pretrain.persistent=true pretrain.n_chains=100 hydra.run.dir="$out/pcd1"
for run in cd1 cd10 pcd1; do
  dbn-eval run_dir="$out/$run" n_chains=100 n_betas=14500 seed=0
done
python experiments/fashion_rbm_ais/table.py "$out"/cd1 "$out"/cd10 "$out"/pcd1
