"""Logistic regression on exactly the split and scaling dbn-train uses for the same arrays and seed.

The data module is built from the real Hydra config (``data=arrays data.scale=standard``), so the
test split, the validation split and the training-split statistics are the DBN's. The regression
trains on the DBN's training plus validation rows (it needs no early stopping).

Usage: python experiments/tabular/baseline.py FEATURES LABELS SEED [SEED ...]
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from sklearn.linear_model import LogisticRegression


def split(features: str, labels: str, seed: int):
    with initialize_config_module("dbn.conf", version_base="1.3"):
        cfg = compose("train", overrides=["data=arrays", f"data.features={features}", f"data.labels={labels}",
                                          "data.scale=standard", f"seed={seed}", "run_dir=."])
    dm = instantiate(cfg.data)
    dm.setup()
    x = torch.cat([dm.train_x, dm.val_x]).numpy()
    y = torch.cat([dm.train_y, dm.val_y]).numpy()
    return x, y, dm.test_x.numpy(), dm.test_y.numpy()


def main(features: str, labels: str, seeds: list[int]) -> None:
    accs = []
    for seed in seeds:
        x, y, x_test, y_test = split(features, labels, seed)
        acc = LogisticRegression(max_iter=5000).fit(x, y).score(x_test, y_test)
        accs.append(100 * acc)
        print(f"seed {seed}: logistic regression test acc {acc:.4f} ({len(y_test)} test rows)")
    if len(accs) > 1:
        print(f"mean of {len(accs)}: {np.mean(accs):.2f}% ± {np.std(accs, ddof=1):.2f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3:]] or [0])
