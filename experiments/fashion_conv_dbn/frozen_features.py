"""Frozen pretrained features + logistic regression: how good are the features themselves, before fine-tuning?

For each dbn-train run directory given (its pretrained stack, ``dbn_pretrained.pt``), the features E[h | x] of
every layer (the pooled maps for conv layers) of the 55,000 training images of the run's own split are
standardised and fed to scikit-learn's multinomial LogisticRegression (lbfgs, C=1, 300 iterations); the table
gives the test accuracy on the 10,000 test images. No fine-tuning, no labels seen by the features.

``--labels 100 1000``: the same with only that many labelled training images, the ones the few-label fine-tuning
runs of run.sh see (``data.val_fraction=0 data.labelled=N`` at the run's seed: N/10 a class), standardised on
those N rows; the features were still pretrained on every training image, without labels.

Usage: python experiments/fashion_conv_dbn/frozen_features.py NAME=RUN_DIR [NAME=RUN_DIR ...] [--json OUT]
       [--labels N ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from dbn import DBN


def layer_scores(run_dir: Path, max_iter: int, labelled: int | None = None) -> list[dict]:
    model = DBN.load(run_dir / "dbn_pretrained.pt")
    data_cfg = OmegaConf.load(run_dir / "config.yaml").data  # the run's own data, split and scaling
    if labelled is not None:  # the labelled images of run.sh's few-label runs at this seed
        data_cfg = OmegaConf.merge(data_cfg, {"val_fraction": 0, "labelled": labelled})
    dm = instantiate(data_cfg)
    dm.setup()
    x, y = dm.train_x, dm.train_y
    if labelled is not None:
        x, y = x[dm.labelled_idx], y[dm.labelled_idx]
    rows = []
    for n in range(1, len(model.layers) + 1):
        start = time.perf_counter()
        train = model.transform(x, n_layers=n).numpy()
        test = model.transform(dm.test_x, n_layers=n).numpy()
        scaler = StandardScaler().fit(train)
        clf = LogisticRegression(C=1.0, max_iter=max_iter).fit(scaler.transform(train), y.numpy())
        acc = float((clf.predict(scaler.transform(test)) == dm.test_y.numpy()).mean())
        rows.append({"layer": n, "features": train.shape[1], "labelled": len(y), "test_acc": acc,
                     "seconds": time.perf_counter() - start})
        print(f"  {run_dir}: {len(y)} labels, layer {n} ({train.shape[1]} features) {100 * acc:.2f}%", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="NAME=RUN_DIR")
    ap.add_argument("--max-iter", type=int, default=300)
    ap.add_argument("--json", default=None)
    ap.add_argument("--labels", type=int, nargs="+", default=None,
                    help="numbers of labelled training images (default: all of the run's training split)")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    results = {}
    for item in args.runs:
        name, run_dir = item.split("=", 1)
        for labelled in args.labels or [None]:
            key = name if labelled is None else f"{name}, {labelled} labels"
            results[key] = {"run": run_dir, "labelled": labelled,
                            "layers": layer_scores(Path(run_dir), args.max_iter, labelled)}
    print("\n| stack | layer | features | labelled images | logistic regression test acc |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        for row in r["layers"]:
            print(f"| {name} | {row['layer']} | {row['features']:,} | {row['labelled']:,} "
                  f"| {100 * row['test_acc']:.2f}% |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
