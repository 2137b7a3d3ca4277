#!/usr/bin/env bash
# Generative RBMs on binarised Fashion-MNIST, side by side (issue 15): CD-1, CD-10, PCD-1, PCD-1 with parallel
# tempering, and the centered variants, each for the same 5,500 updates (10 epochs x 550 batches of 100) under
# the default schedule (lr 0.05, momentum 0.5, weight decay 2e-4; CD switches to momentum 0.9 from epoch 5, PCD
# keeps 0.5), 3 seeds. The *_mom09 methods are the PCD rows under the old default (0.9 from epoch 5 for PCD too). The data
# are binarised once by sampling and split once (data.seed=0); the run's seed sets initialisation and chains.
# Each run is evaluated by dbn-eval: AIS (100 chains x 14,500 betas) and RAISE (first 100 test vectors,
# 5 chains x RAISE_BETAS betas) bracket the test log-likelihood; pseudo-LL and reconstruction error beside them.
# HIDDEN=20 gives the exactly evaluable case (2^20 hidden states enumerated).
# Usage: bash experiments/fashion_rbm_generative/run.sh [OUT_DIR] [SEED ...]
#        HIDDEN=20 bash experiments/fashion_rbm_generative/run.sh runs/fashion_rbm_exact
#        EPOCHS=50 METHODS="pcd1_decay pcd1_centered_decay" bash ... runs/fashion_rbm_50ep 0   (a longer budget)
#        METHODS="cd1 pcd1_centered" bash ...   (a subset; also pcd1_slow, pcd1_centered_slow, cd10_slow: the slow
#        schedule of experiments/fashion_rbm_ais, lr 0.01 decaying linearly to 0.001, momentum 0.5)
set -euo pipefail
out=${1:-runs/fashion_rbm_generative}
shift || true
seeds=("$@")
[ ${#seeds[@]} -eq 0 ] && seeds=(0 1 2)
hidden=${HIDDEN:-500}
raise_betas=${RAISE_BETAS:-3000}
common=(data=fashion_mnist data.binarize=sample data.seed=0 "model.hidden=[$hidden]" finetune=none
        "pretrain.epochs=${EPOCHS:-10}" pretrain.batch_size=100)
slow="pretrain.lr=0.01 pretrain.lr_schedule=linear pretrain.lr_final=0.1 pretrain.momentum=0.5 pretrain.final_momentum=0.5"
declare -A methods=(
  [cd1]="pretrain.k=1"
  [cd10]="pretrain.k=10"
  [pcd1]="pretrain.persistent=true"
  [pcd1_pt]="pretrain.persistent=true pretrain.sampler=pt"
  [cd1_centered]="pretrain.centering=true"
  [pcd1_centered]="pretrain.persistent=true pretrain.centering=true"
  [pcd1_pt_centered]="pretrain.persistent=true pretrain.sampler=pt pretrain.centering=true"
  # schedule B of experiments/fashion_rbm_ais: lr 0.01 decaying linearly to 0.001, momentum 0.5
  [pcd1_slow]="pretrain.persistent=true $slow"
  [pcd1_centered_slow]="pretrain.persistent=true pretrain.centering=true $slow"
  [cd10_slow]="pretrain.k=10 $slow"
  # PCD with the learning rate decaying linearly to a tenth (Tieleman 2008 decays it to zero)
  [pcd1_decay]="pretrain.persistent=true pretrain.lr_schedule=linear"
  [pcd1_centered_decay]="pretrain.persistent=true pretrain.centering=true pretrain.lr_schedule=linear"
  # the same with a larger starting rate (does centering's conditioning pay at rates where plain PCD degrades?)
  [pcd1_decay_lr0.1]="pretrain.persistent=true pretrain.lr_schedule=linear pretrain.lr=0.1"
  [pcd1_centered_decay_lr0.1]="pretrain.persistent=true pretrain.centering=true pretrain.lr_schedule=linear pretrain.lr=0.1"
  [pcd1_decay_lr0.2]="pretrain.persistent=true pretrain.lr_schedule=linear pretrain.lr=0.2"
  [pcd1_centered_decay_lr0.2]="pretrain.persistent=true pretrain.centering=true pretrain.lr_schedule=linear pretrain.lr=0.2"
  # the same two on the flipped images (each binarised image's complement, data.invert=true): Melchior et al.
  # (2016) show a centered RBM invariant to the flip and a plain one much worse on flipped MNIST
  [pcd1_decay_flipped]="pretrain.persistent=true pretrain.lr_schedule=linear data.invert=true"
  [pcd1_centered_decay_flipped]="pretrain.persistent=true pretrain.centering=true pretrain.lr_schedule=linear data.invert=true"
  [cd10_flipped]="pretrain.k=10 data.invert=true"
  [cd10_slow_flipped]="pretrain.k=10 $slow data.invert=true"
  # the old default for PCD: the switch to momentum 0.9 at epoch 5, as for CD
  [pcd1_mom09]="pretrain.persistent=true pretrain.final_momentum=0.9"
  [pcd1_pt_mom09]="pretrain.persistent=true pretrain.sampler=pt pretrain.final_momentum=0.9"
  [pcd1_centered_mom09]="pretrain.persistent=true pretrain.centering=true pretrain.final_momentum=0.9"
  [pcd1_pt_centered_mom09]="pretrain.persistent=true pretrain.sampler=pt pretrain.centering=true pretrain.final_momentum=0.9"
)
order=(${METHODS:-cd1 cd10 pcd1 pcd1_pt cd1_centered pcd1_centered pcd1_pt_centered})
for seed in "${seeds[@]}"; do
  for m in "${order[@]}"; do
    dir="$out/$m/seed$seed"
    if [ ! -f "$dir/eval.json" ]; then
      # shellcheck disable=SC2086
      dbn-train "${common[@]}" ${methods[$m]} seed="$seed" hydra.run.dir="$dir"
      dbn-eval run_dir="$dir" n_chains=100 n_betas=14500 raise_betas="$raise_betas" seed=0
    fi
  done
done
python experiments/fashion_rbm_generative/table.py "$out"
