#!/usr/bin/env bash
# Few labels: a DBN pretrained without labels on all 60,000 Fashion-MNIST training images (one per seed,
# CD-1, 10 epochs per layer), fine-tuned on only 100 or 1,000 labelled
# training images (10 or 100 a class, drawn with the seed), against the same net from random initialisation
# with the same fine-tuning. No validation split and no model selection: a fixed budget of updates,
# the last epoch is tested on the 10,000 test images.
# Usage: bash experiments/fashion_few_labels/run.sh [OUT_DIR] [extra hydra overrides...]
set -euo pipefail
out=${1:-runs/fashion_few_labels}
shift || true
# the settings these results were measured with, pinned: fashion_mnist_dbn's recipe has since moved on
# (30 pretraining epochs, EMA, no flips); 10 epochs, flips and no EMA here
common=(experiment=fashion_mnist_dbn data.val_fraction=0 trainer.enable_progress_bar=false pretrain.epochs=10
        "finetune.augment={hflip:true,shift:0}" callbacks.finetune.ema=null)
for seed in 0 1 2; do
  dbn-train "${common[@]}" seed=$seed finetune=none hydra.run.dir="$out/pretrained/$seed" "$@"
  for n in 100 1000; do
    epochs=$(( n == 100 ? 300 : 100 ))   # 1,200 and 3,200 updates of batch 32
    args=("${common[@]}" seed=$seed +data.labelled=$n finetune.batch_size=32 finetune.epochs=$epochs
          finetune.scheduler.T_max=$epochs callbacks.finetune.model_checkpoint=null)
    dbn-train "${args[@]}" pretrain.init_from="$out/pretrained/$seed" hydra.run.dir="$out/$n/dbn/$seed" "$@"
    dbn-train "${args[@]}" pretrain=none hydra.run.dir="$out/$n/baseline/$seed" "$@"
  done
done
for n in 100 1000; do
  echo "### $n labelled images"
  python experiments/summarize.py "$out/$n"/dbn/* "$out/$n"/baseline/*
done
