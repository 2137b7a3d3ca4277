#!/usr/bin/env bash
# Fashion-MNIST convolutional DBN (issue 16), per seed (default 0 1 2):
#   1. experiment=fashion_mnist_conv pretrained (30 fine-tuning epochs with flips and 1-pixel shifts since the
#      twelfth session), and the same CNN and fine-tuning budget from random init (its batch
#      normalisation starting standard, finetune.batch_norm=standard: the identity start keeps a pretrained
#      stack's function, which a random one does not have);
#   2. 100 and 1,000 labelled images (10 or 100 a class, drawn with the seed): fine-tuned from a pretrained stack
#      (pretrain.init_from) and from random init, 300 / 100 epochs of batch 32 (1,200 / 3,200 updates, as
#      experiments/fashion_few_labels), flips and shifts of up to 2 pixels, label smoothing 0.1 (chosen on
#      validation images with tune_few_labels.py, README), no validation split, the last epoch tested; 1,000 labels
#      from the stack of 1, 100 labels from a stack pretrained 30 CD-1 epochs a layer instead of 3 (chosen on the
#      validation images of 20 draws each time, README: 10 epochs +0.95 ± 0.29 points over 3, 30 epochs +0.40 ± 0.17
#      over 10);
#   3. frozen features: the dense 784-500-500-2000 stack pretrained with the same 3 epochs a layer, and logistic
#      regression on every layer's features of both stacks (frozen_features.py), with all labels and with the
#      100 and 1,000 labelled images of step 2.
# Then the tables and the learning curves. Runs with a results.json are skipped.
# Needs the idx files in /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist), and
# matplotlib for the figure (pip install -e ".[experiments]").
# Usage: bash experiments/fashion_conv_dbn/run.sh [OUT_DIR] [SEED ...]
set -euo pipefail
out=${1:-runs/fashion_conv_dbn_v8}
shift || true
seeds=("$@")
[ ${#seeds[@]} -eq 0 ] && seeds=(0 1 2)
here=experiments/fashion_conv_dbn
train() { local dir=$1; shift; [ -f "$dir/results.json" ] || dbn-train "$@" hydra.run.dir="$dir"; }
few=(experiment=fashion_mnist_conv data.val_fraction=0 finetune.batch_size=32 callbacks.finetune.model_checkpoint=null
     "finetune.augment={hflip:true,shift:2}" finetune.label_smoothing=0.1)
for seed in "${seeds[@]}"; do
  train "$out/dbn/$seed" experiment=fashion_mnist_conv seed="$seed"
  train "$out/baseline/$seed" experiment=fashion_mnist_conv pretrain=none finetune.batch_norm=standard seed="$seed"
  train "$out/stack_ep30/$seed" experiment=fashion_mnist_conv pretrain.epochs=30 finetune=none seed="$seed"
  for n in 100 1000; do
    epochs=$(( n == 100 ? 300 : 100 ))
    stack=$([ "$n" = 100 ] && echo "$out/stack_ep30/$seed" || echo "$out/dbn/$seed")
    labels=("${few[@]}" data.labelled=$n finetune.epochs=$epochs finetune.scheduler.T_max=$epochs seed="$seed")
    train "$out/labels$n/dbn/$seed" "${labels[@]}" pretrain.init_from="$stack"
    train "$out/labels$n/baseline/$seed" "${labels[@]}" pretrain=none finetune.batch_norm=standard
  done
  train "$out/dense_pretrain3/$seed" experiment=fashion_mnist_dbn pretrain.epochs=3 finetune=none seed="$seed"
  python $here/frozen_features.py conv="$out/dbn/$seed" dense="$out/dense_pretrain3/$seed" \
    --json "$out/frozen_features_seed$seed.json"
  python $here/frozen_features.py conv="$out/dbn/$seed" dense="$out/dense_pretrain3/$seed" --labels 100 1000 \
    --json "$out/frozen_features_few_labels_seed$seed.json"
done
python experiments/summarize.py "$out"/dbn/* "$out"/baseline/*
for n in 100 1000; do python experiments/summarize.py "$out"/labels$n/dbn/* "$out"/labels$n/baseline/*; done
python experiments/learning_curves.py --ymin 60 --out $here/results/learning_curves.png \
  pretrained="$out/dbn/*" "random init"="$out/baseline/*"
