"""Plot fine-tuning validation accuracy per epoch for groups of dbn-train runs (read from their TensorBoard logs).

Usage: python experiments/learning_curves.py --out curves.png LABEL=GLOB [LABEL=GLOB ...]
   e.g. pretrained='runs/fashion_mnist_dbn/dbn/*' 'random init'='runs/fashion_mnist_dbn/baseline/*'
Each group is drawn as its mean over runs, with every run as a thin line; a CSV of the curves
(one row per group, run and epoch) goes next to the PNG.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TAG = "finetune/val/acc"


def curve(run_dir: Path) -> np.ndarray:
    """Validation accuracy after each fine-tuning epoch, in order."""
    values = []
    for events in sorted((run_dir / "tensorboard").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0}).Reload()
        if TAG in acc.Tags()["scalars"]:
            values += [e.value for e in sorted(acc.Scalars(TAG), key=lambda e: e.step)]
    if not values:
        raise SystemExit(f"{run_dir}: no {TAG} in its TensorBoard logs")
    return np.array(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--ymin", type=float, default=None,
                    help="lower end of the accuracy axis, in percent (the first epochs of a random init can sit far below)")
    ap.add_argument("groups", nargs="+", help="LABEL=GLOB of run directories")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    rows = []
    for group, color in zip(args.groups, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        label, pattern = group.split("=", 1)
        dirs = sorted(glob.glob(pattern))
        if not dirs:
            raise SystemExit(f"{label}: no run directory matches {pattern}")
        curves = [curve(Path(d)) for d in dirs]
        n = min(len(c) for c in curves)
        stack = np.stack([c[:n] for c in curves]) * 100
        epochs = np.arange(1, n + 1)
        for c in stack:
            ax.plot(epochs, c, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(epochs, stack.mean(0), color=color, linewidth=2, label=f"{label} (mean of {len(stack)})")
        rows += [(label, d, e, f"{acc:.2f}") for d, c in zip(dirs, stack) for e, acc in zip(epochs, c)]
    ax.set_xlabel("fine-tuning epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    if args.ymin is not None:
        ax.set_ylim(bottom=args.ymin)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    with open(Path(args.out).with_suffix(".csv"), "w") as f:
        f.write("group,run,epoch,val_acc_percent\n")
        f.writelines(",".join(map(str, r)) + "\n" for r in rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
