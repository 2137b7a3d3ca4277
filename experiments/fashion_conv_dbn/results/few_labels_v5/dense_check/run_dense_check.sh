# the dense DBN's few-label runs (experiments/fashion_few_labels/run.sh with pretrain.epochs=30, its 71.86% row),
# and the same with the conv few-label change (shifts of 2 pixels, label smoothing 0.1) for a like-for-like check
cd /work/main
set -euo pipefail
out=runs/fashion_few_labels30
common=(experiment=fashion_mnist_dbn data.val_fraction=0 trainer.enable_progress_bar=false pretrain.epochs=30
        "finetune.augment={hflip:true,shift:0}" callbacks.finetune.ema=null)
run() { local dir=$1; shift; [ -f "$dir/results.json" ] || dbn-train "$@" hydra.run.dir="$dir" > "$dir.log" 2>&1; }
for seed in 0 1 2; do
  mkdir -p $out/pretrained
  run "$out/pretrained/$seed" "${common[@]}" seed=$seed finetune=none
done
export OMP_NUM_THREADS=1
for seed in 0 1 2; do
  for n in 100 1000; do
    epochs=$(( n == 100 ? 300 : 100 ))
    args=("${common[@]}" seed=$seed +data.labelled=$n finetune.batch_size=32 finetune.epochs=$epochs
          finetune.scheduler.T_max=$epochs callbacks.finetune.model_checkpoint=null)
    mkdir -p $out/$n/dbn $out/$n/dbn_shift2_ls0.1
    run "$out/$n/dbn/$seed" "${args[@]}" pretrain.init_from="$out/pretrained/$seed" &
    run "$out/$n/dbn_shift2_ls0.1/$seed" "${args[@]}" pretrain.init_from="$out/pretrained/$seed" \
        "finetune.augment={hflip:true,shift:2}" finetune.label_smoothing=0.1
    wait
  done
done
for n in 100 1000; do python experiments/summarize.py "$out/$n"/dbn/* "$out/$n"/dbn_shift2_ls0.1/*; done
