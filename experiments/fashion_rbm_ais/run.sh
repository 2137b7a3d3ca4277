#!/usr/bin/env bash
# Fashion-MNIST (stochastically binarised once, seed 0), one RBM of 500 hidden units trained with
# CD-1, CD-10 and PCD-1 for the same number of updates (10 epochs x 550 batches of 100 = 5,500), under two
# schedules: A = the defaults (lr 0.05 constant, momentum 0.5 then 0.9 from epoch 5) and
# B = "slow" (lr 0.01 decaying linearly to 0.001, momentum 0.5). Each is evaluated with AIS
# (500 chains, 14,500 betas): average test log-likelihood in nats.
# Usage: bash experiments/fashion_rbm_ais/run.sh [OUT_DIR]      (about 40 min on 2 cores)
set -euo pipefail
out=${1:-runs/fashion_rbm_ais}
common=(data=fashion_mnist data.binarize=sample model.hidden=[500] finetune=none
        pretrain.epochs=10 pretrain.batch_size=100 callbacks.pretrain.rbm_tensorboard.every_n_epochs=5
        trainer.enable_progress_bar=false)
slow=(pretrain.lr=0.01 pretrain.lr_schedule=linear pretrain.lr_final=0.1 pretrain.momentum=0.5 pretrain.final_momentum=0.5)
pcd=(pretrain.persistent=true pretrain.n_chains=100)
dbn-train "${common[@]}" pretrain.k=1 hydra.run.dir="$out/cd1"
dbn-train "${common[@]}" pretrain.k=10 hydra.run.dir="$out/cd10"
dbn-train "${common[@]}" pretrain.k=1 "${pcd[@]}" hydra.run.dir="$out/pcd1"
dbn-train "${common[@]}" "${slow[@]}" pretrain.k=1 hydra.run.dir="$out/cd1_slow"
dbn-train "${common[@]}" "${slow[@]}" pretrain.k=10 hydra.run.dir="$out/cd10_slow"
dbn-train "${common[@]}" "${slow[@]}" pretrain.k=1 "${pcd[@]}" hydra.run.dir="$out/pcd1_slow"
for run in cd1 cd10 pcd1 cd1_slow cd10_slow pcd1_slow; do
  dbn-eval run_dir="$out/$run" n_chains=500 n_betas=14500 seed=0
done
python experiments/fashion_rbm_ais/table.py "$out"/{cd1,cd10,pcd1,cd1_slow,cd10_slow,pcd1_slow}
