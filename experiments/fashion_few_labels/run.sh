#!/usr/bin/env bash
# Few labels: the DBNs pretrained without labels by experiments/fashion_mnist_dbn/run.sh (on the 55,000
# training images; the 5,000 validation images are held out), fine-tuned on only 100 or 1,000 labelled
# images (10 or 100 a class, drawn with the seed), against the same net from random initialisation.
# No model selection on the validation labels: a fixed budget of updates, the last epoch is tested.
# Usage: bash experiments/fashion_few_labels/run.sh [PRETRAINED_RUNS] [OUT_DIR]
set -euo pipefail
pre=${1:-runs/fashion_mnist_dbn/dbn}
out=${2:-runs/fashion_few_labels}
common=(experiment=fashion_mnist_dbn trainer.enable_progress_bar=false callbacks.finetune.model_checkpoint=null
        finetune.batch_size=32 +trainer.check_val_every_n_epoch=10)
for seed in 0 1 2; do
  for n in 100 1000; do
    epochs=$(( n == 100 ? 300 : 100 ))   # 1,200 and 3,200 updates
    args=("${common[@]}" seed=$seed +data.labelled=$n finetune.epochs=$epochs finetune.scheduler.T_max=$epochs)
    dbn-train "${args[@]}" pretrain.init_from="$pre/$seed" hydra.run.dir="$out/$n/dbn/$seed"
    dbn-train "${args[@]}" pretrain=none hydra.run.dir="$out/$n/baseline/$seed"
  done
done
for n in 100 1000; do
  echo "### $n labelled images"
  python experiments/summarize.py "$out/$n"/dbn/* "$out/$n"/baseline/*
done
