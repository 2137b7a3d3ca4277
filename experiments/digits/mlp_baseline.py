"""scikit-learn MLP on exactly the digits split dbn-train uses (same seed), for the results table.

Usage: python experiments/digits/mlp_baseline.py SEED [SEED ...]
Prints one line per seed: test accuracy of MLPClassifier(hidden_layer_sizes=(256, 256)).
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.neural_network import MLPClassifier

from dbn.data import DigitsDataModule


def main(seeds: list[int]) -> None:
    for seed in seeds:
        dm = DigitsDataModule(seed=seed)
        dm.setup()
        x = np.concatenate([dm.train_x.numpy(), dm.val_x.numpy()])
        y = np.concatenate([dm.train_y.numpy(), dm.val_y.numpy()])
        clf = MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=1000, random_state=seed).fit(x, y)
        print(f"seed {seed}: sklearn MLP (256,256) test acc {clf.score(dm.test_x.numpy(), dm.test_y.numpy()):.4f}")


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [0])
