"""scikit-learn's "Restricted Boltzmann Machine features for digit classification" example, and dbn's estimators.

The example: 8x8 digits nudged by one pixel in four directions (5x the data), min-max scaled,
split 80/20 with random_state=0; BernoulliRBM(n_components=100, learning_rate=0.06, n_iter=10)
features into LogisticRegression(solver="newton-cg", tol=1, C=6000), and logistic regression on
the raw pixels (C=100) for comparison. The same split then serves dbn.sklearn's RBMTransformer
in the same pipeline, and DBNClassifier (defaults) pretrained and from random initialisation.
The logistic regressions run to scikit-learn's default tolerance (see ``logistic``).

Usage: OMP_NUM_THREADS=1 python experiments/sklearn_digits/compare.py [--seeds 0 1 2] [--out results/results.json]
       [--methods NAME ...] [--params '{"hidden_layer_sizes": [256, 256]}']
Prints a Markdown table of test accuracies and fit times; writes every run to --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.base import clone
from scipy.ndimage import convolve
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import BernoulliRBM
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import minmax_scale

from dbn.sklearn import DBNClassifier, RBMTransformer

HERE = Path(__file__).resolve().parent


def nudge_dataset(X, Y):
    """The example's augmentation: each 8x8 image and its shifts by 1 px up, left, right and down."""
    direction_vectors = [
        [[0, 1, 0], [0, 0, 0], [0, 0, 0]],
        [[0, 0, 0], [1, 0, 0], [0, 0, 0]],
        [[0, 0, 0], [0, 0, 1], [0, 0, 0]],
        [[0, 0, 0], [0, 0, 0], [0, 1, 0]],
    ]

    def shift(x, w):
        return convolve(x.reshape((8, 8)), mode="constant", weights=w).ravel()

    X = np.concatenate([X] + [np.apply_along_axis(shift, 1, X, vector) for vector in direction_vectors])
    return X, np.concatenate([Y for _ in range(5)], axis=0)


def example_split():
    """The example's data, scaling and split, unchanged."""
    X, y = load_digits(return_X_y=True)
    X, Y = nudge_dataset(np.asarray(X, "float32"), y)
    X = minmax_scale(X, feature_range=(0, 1))
    return train_test_split(X, Y, test_size=0.2, random_state=0)


def logistic(C: float, tol: float = 1e-4) -> LogisticRegression:
    """The example's classifier. Its ``tol=1`` stops newton-cg before the first iteration on scikit-learn >= 1.9
    (``n_iter_ == 0``, chance accuracy: the first row shows it), so the comparison uses the default tol=1e-4."""
    return LogisticRegression(solver="newton-cg", tol=tol, C=C)


RBM = dict(n_components=100, learning_rate=0.06, n_iter=10)
#: each row's estimator from (seed, DBNClassifier overrides); only the DBNClassifier rows use the overrides
METHODS = {
    "the example verbatim: BernoulliRBM + logistic(tol=1)":
        lambda seed, params: Pipeline([("rbm", BernoulliRBM(random_state=seed, **RBM)),
                                       ("logistic", logistic(6000, tol=1))]),
    "scikit-learn BernoulliRBM + logistic":
        lambda seed, params: Pipeline([("rbm", BernoulliRBM(random_state=seed, **RBM)), ("logistic", logistic(6000))]),
    "dbn RBMTransformer + logistic (same pipeline)":
        lambda seed, params: Pipeline([("rbm", RBMTransformer(random_state=seed, **RBM)),
                                       ("logistic", logistic(6000))]),
    "dbn DBNClassifier(), pretrained + fine-tuned": lambda seed, params: DBNClassifier(random_state=seed, **params),
    "dbn DBNClassifier(pretrain=False), random init":
        lambda seed, params: DBNClassifier(pretrain=False, random_state=seed, **params),
    "logistic regression on raw pixels (C=100)": lambda seed, params: logistic(100.0),
}


def cpu_model() -> str:
    """The CPU's model name (Linux), which decides the BLAS kernels and so the last digits of every fit."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def describe(model) -> dict:
    """The model's settings as strings: a Pipeline's steps, an estimator's parameters."""
    if isinstance(model, Pipeline):
        return {name: repr(step) for name, step in model.steps}
    return {key: repr(value) for key, value in model.get_params().items()}


def run(seeds: list[int], names: list[str], params: dict) -> list[dict]:
    X_train, X_test, y_train, y_test = example_split()
    rows = []
    for name in names:
        make = METHODS[name]
        for seed in seeds:
            model = make(seed, params)
            start = time.perf_counter()
            model.fit(X_train, y_train)
            fit_s = time.perf_counter() - start
            acc = float(model.score(X_test, y_test))
            row = {"method": name, "seed": seed, "test_acc": acc, "fit_s": round(fit_s, 2)}
            if isinstance(model, Pipeline):  # the RBM's own share, fitted once more on its own
                start = time.perf_counter()
                clone(model[0]).fit(X_train)
                row["rbm_fit_s"] = round(time.perf_counter() - start, 2)
            rows.append(row | {"model": describe(model)})
            print(f"{name} seed {seed}: test acc {acc:.4f}, fit {fit_s:.1f} s"
                  + (f" (RBM alone {row['rbm_fit_s']:.1f} s)" if "rbm_fit_s" in row else ""), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| method | test accuracy (mean ± sd) | per seed (%) | fit s (mean) | RBM alone s (mean) |",
             "|---|---|---|---|---|"]
    for name in dict.fromkeys(r["method"] for r in rows):
        accs = [r["test_acc"] for r in rows if r["method"] == name]
        secs = [r["fit_s"] for r in rows if r["method"] == name]
        sd = f" ± {100 * statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
        per_seed = ", ".join(f"{100 * a:.2f}" for a in accs)
        rbm = [r["rbm_fit_s"] for r in rows if r["method"] == name and "rbm_fit_s" in r]
        rbm_s = f"{statistics.mean(rbm):.1f}" if rbm else ""
        mean = f"{100 * statistics.mean(accs):.2f}%{sd}"
        lines.append(f"| {name} | {mean} | {per_seed} | {statistics.mean(secs):.1f} | {rbm_s} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "results.json")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="METHOD",
                        help="a subset of the table's rows, by their names")
    parser.add_argument("--params", type=json.loads, default={},
                        help="DBNClassifier overrides (JSON), e.g. an earlier round's defaults")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = run(args.seeds, args.methods, args.params)
    print()
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    env = {"python": platform.python_version(), "torch": torch.__version__, "sklearn": sklearn.__version__,
           "torch_threads": torch.get_num_threads(), "machine": platform.machine(), "cpu": cpu_model()}
    args.out.write_text(json.dumps({"rows": rows, "table": table(rows), "env": env, "dbn_params": args.params,
                                    "wall_s": round(time.perf_counter() - start, 1)}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
