"""Tune the conv DBN's fine-tuning with 100 (or 1,000) labels on validation images only, never on the test set.

Each setting fine-tunes one pretrained stack (``--stack``, loaded with ``pretrain.init_from``) on the labelled
images of the tuning seeds (10 a class, drawn with the seed; seeds other than the reported 0-2), with
``--val-fraction`` of the training images held out as validation data (the labelled images are drawn from the
rest), a fixed budget and no model selection, as run.sh's few-label runs. The score is the validation accuracy
after the last epoch (validation runs once, at the end); the test accuracy that dbn-train also prints is stored
but not shown, so that the choice cannot lean on it.

  python experiments/fashion_conv_dbn/tune_few_labels.py --stack runs/conv_ft30/dbn/0 --out runs/tune_few \\
      --setting recipe= --setting dropout0.2=finetune.dropout=0.2 [--seeds 10 11 12 13 14] [--jobs 2]

A setting is NAME=OVERRIDE[,OVERRIDE...] (dbn-train overrides; a comma inside braces stays with its override);
runs whose results.json exists are not run again. Prints mean ± std of the validation accuracy per setting and
writes every number to OUT/tuning.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/: learning_curves.py
from learning_curves import curve


def few_label_args(labels: int) -> list[str]:
    """The few-label runs as run.sh had them before this tuning (batch 32, 300 / 100 epochs, flips only, no
    checkpoint selection): the base that every setting adds its overrides to."""
    epochs = 300 if labels == 100 else 100
    return ["experiment=fashion_mnist_conv", f"data.labelled={labels}", "finetune.batch_size=32",
            f"finetune.epochs={epochs}", f"finetune.scheduler.T_max={epochs}",
            "callbacks.finetune.model_checkpoint=null", "finetune.augment={hflip:true,shift:0}"]


def split_overrides(text: str) -> list[str]:
    """'a=1,b={x:1,y:2}' -> ['a=1', 'b={x:1,y:2}']: commas inside braces or brackets stay."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p for p in [*parts, cur] if p]


def last_val_acc(run_dir: Path) -> float:
    """finetune/val/acc after the run's last validation (read by learning_curves.py's reader)."""
    return float(curve(run_dir)[-1])


def run_one(name: str, overrides: list[str], seed: int, args) -> dict:
    run_dir = Path(args.out) / name / str(seed)
    if not (run_dir / "results.json").exists():
        cmd = ["dbn-train", *few_label_args(args.labels), f"data.val_fraction={args.val_fraction}",
               f"seed={seed}", *overrides, f"hydra.run.dir={run_dir}"]
        epochs = [o.split("=", 1)[1] for o in cmd if o.startswith("finetune.epochs=")][-1]
        cmd.append(f"+trainer.check_val_every_n_epoch={epochs}")  # validation once, after the last epoch
        if not any(o.startswith("pretrain=") for o in overrides):
            cmd.append(f"pretrain.init_from={args.stack}")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    results = json.loads((run_dir / "results.json").read_text())
    return {"setting": name, "seed": seed, "overrides": overrides, "val_acc": last_val_acc(run_dir),
            "test_acc": results["finetune"]["test_acc"], "seconds": results["finetune"]["seconds"]}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stack", required=True, help="a pretrained conv DBN run directory (pretrain.init_from)")
    ap.add_argument("--out", required=True, help="directory of the tuning runs")
    ap.add_argument("--setting", action="append", required=True, help="NAME=OVERRIDE[,OVERRIDE...]")
    ap.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12, 13, 14])
    ap.add_argument("--labels", type=int, default=100, choices=[100, 1000])
    ap.add_argument("--val-fraction", type=float, default=0.0333333, help="held-out validation share (2,000 images)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    args = ap.parse_args(argv)
    settings = {}
    for spec in args.setting:
        name, _, text = spec.partition("=")
        if not re.fullmatch(r"[\w.+-]+", name):
            raise SystemExit(f"setting name {name!r}: use letters, digits, . + - _")
        settings[name] = split_overrides(text)
    jobs = [(name, ov, seed) for name, ov in settings.items() for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda j: run_one(*j, args), jobs))
    seeds = " ".join(map(str, args.seeds))
    print(f"| setting ({args.labels} labels, seeds {seeds}) | validation accuracy, mean ± std | per seed |")
    print("|---|---|---|")
    for name in settings:
        accs = [100 * r["val_acc"] for r in rows if r["setting"] == name]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"| {name} | {statistics.mean(accs):.2f} ± {sd:.2f} | {' / '.join(f'{a:.2f}' for a in accs)} |")
    out = Path(args.out) / "tuning.json"
    old = json.loads(out.read_text()) if out.exists() else []
    keep = [r for r in old if (r["setting"], r["seed"]) not in {(x["setting"], x["seed"]) for x in rows}]
    out.write_text(json.dumps(keep + rows, indent=1))
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
