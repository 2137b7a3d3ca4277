"""Conv DBN against dense DBN with few labels, paired by label draw: one pretrained stack of each, many draws.

The reported comparison (run.sh, docs/results.md) has three seeds, each with its own pretrained stacks, and its
100-label means sit half a point apart with seed-to-seed spreads of one to four points. This script asks the
narrower question that many draws can answer: on one pretrained stack of each kind, over ``--seeds`` draws of the
labelled images (each draw the same images for both, fine-tuning seeded alike), how far apart are the two
fine-tuned nets on the 10,000 test images? Each net is fine-tuned exactly as its own few-label recipe does:

  conv:  run.sh's few-label command (experiment=fashion_mnist_conv, shifts of 2 pixels, label smoothing 0.1,
         300 / 100 epochs of batch 32, no validation split, the last epoch tested);
  dense: experiments/fashion_few_labels/run.sh's (experiment=fashion_mnist_dbn, flips, dropout 0.2, the same budget),
         on a stack pretrained as the recorded 71.86% row's (results/few_labels_v5/dense_check/run_dense_check.sh).

No setting is chosen from these numbers. The default draws (20-39) avoid the reported seeds (0-2) and the draws
the few-label settings were tuned on (10-14, validation images only).

  python experiments/fashion_conv_dbn/paired_few_labels.py --conv-stack runs/stack/0 \\
      --dense-stack runs/study100/dense_stack0 --out runs/study100 [--labels 100] [--seeds 20 21 ...] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def recipe(kind: str, labels: int) -> list[str]:
    """The few-label fine-tuning command of each recipe, without seed, stack and run directory."""
    epochs = 300 if labels == 100 else 100
    budget = [f"data.labelled={labels}", "data.val_fraction=0", "finetune.batch_size=32", f"finetune.epochs={epochs}",
              f"finetune.scheduler.T_max={epochs}", "callbacks.finetune.model_checkpoint=null"]
    if kind == "conv":
        return ["experiment=fashion_mnist_conv", *budget, "finetune.augment={hflip:true,shift:2}",
                "finetune.label_smoothing=0.1"]
    return ["experiment=fashion_mnist_dbn", *budget, "pretrain.epochs=30", "finetune.augment={hflip:true,shift:0}",
            "callbacks.finetune.ema=null"]


def run_one(kind: str, seed: int, args) -> float:
    """Fine-tune (unless its results.json exists) and return the test accuracy in percent."""
    run_dir = Path(args.out) / f"labels{args.labels}" / kind / str(seed)
    if not (run_dir / "results.json").exists():
        stack = args.conv_stack if kind == "conv" else args.dense_stack
        cmd = ["dbn-train", *recipe(kind, args.labels), f"seed={seed}", f"pretrain.init_from={stack}",
               f"hydra.run.dir={run_dir}"]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return 100 * json.loads((run_dir / "results.json").read_text())["finetune"]["test_acc"]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conv-stack", required=True, help="a pretrained conv DBN run (experiment=fashion_mnist_conv)")
    ap.add_argument("--dense-stack", required=True, help="a pretrained dense DBN run (pretrain.epochs=30)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--labels", type=int, default=100, choices=[100, 1000])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(20, 40)))
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    args = ap.parse_args(argv)
    jobs = [(kind, seed) for seed in args.seeds for kind in ("conv", "dense")]
    with ThreadPoolExecutor(args.jobs) as pool:
        accs = dict(zip(jobs, pool.map(lambda j: run_one(*j, args), jobs), strict=True))
    conv = [accs["conv", s] for s in args.seeds]
    dense = [accs["dense", s] for s in args.seeds]
    diff = [c - d for c, d in zip(conv, dense, strict=True)]
    n = len(diff)
    se = statistics.stdev(diff) / math.sqrt(n) if n > 1 else float("nan")
    wins, losses = sum(d > 0 for d in diff), sum(d < 0 for d in diff)
    print(f"### {args.labels} labels, {n} draws (seeds {args.seeds[0]}-{args.seeds[-1]}), one stack of each kind\n")
    print("| net | test accuracy, mean ± std over draws |\n|---|---|")
    for name, xs in (("conv DBN", conv), ("dense DBN", dense)):
        print(f"| {name} | {statistics.mean(xs):.2f}% ± {statistics.stdev(xs) if n > 1 else 0:.2f} |")
    print(f"\nconv − dense, paired by draw: {statistics.mean(diff):+.2f} ± {se:.2f} points (mean ± standard error; "
          f"conv ahead on {wins}, behind on {losses}, level on {n - wins - losses} of {n} draws)")
    report = {"labels": args.labels, "seeds": args.seeds, "conv_stack": args.conv_stack,
              "dense_stack": args.dense_stack, "conv": conv, "dense": dense, "diff_mean": statistics.mean(diff),
              "diff_se": se, "wins": wins, "losses": losses,
              "commands": {kind: ["dbn-train", *recipe(kind, args.labels)] for kind in ("conv", "dense")}}
    (Path(args.out) / f"paired_labels{args.labels}.json").write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
