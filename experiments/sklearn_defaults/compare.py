"""DBNClassifier() against MLPClassifier() and MLPClassifier(hidden_layer_sizes=(256, 256)), defaults only.

Data sets: sklearn's digits, breast cancer and wine (80/20 split, stratified, ``random_state=seed``), each
behind ``MinMaxScaler(clip=True)`` in a Pipeline fitted on the train split only; and a Fashion-MNIST
subset (5,000 train images drawn from the train file, 2,000 test images from the t10k file, pixels/255).
Every estimator gets ``random_state=seed``. Fit times are wall-clock seconds, one torch/BLAS thread,
after one untimed warm-up fit of each estimator (imports and lazy initialisation are not fit time).

``--tune`` is the protocol used to choose the defaults: seeds 100-102, and Fashion-MNIST's 2,000
held-out images come from the train file (disjoint from the 5,000), never from t10k.
``--params '{"finetune_epochs": 50}'`` overrides DBNClassifier's defaults (for tuning).

Usage: OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python experiments/sklearn_defaults/compare.py [--seeds 0 1 2 3 4]
Prints a Markdown table, then the seed-by-seed (paired) differences between DBNClassifier() and each MLP with
their standard errors; writes every run to --out (default results/results.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from dbn.data.idx import read_idx
from dbn.sklearn import DBNClassifier

HERE = Path(__file__).resolve().parent
FASHION = Path("/usr/share/datasets/fashion-mnist")


def small(load):
    def split(seed: int, tune: bool):
        X, y = load(return_X_y=True)
        return train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)
    return split


def fashion(seed: int, tune: bool, n_train: int = 5000, n_test: int = 2000):
    """5,000 train images and 2,000 test images (t10k; under --tune, 2,000 more train images), pixels/255."""
    rng = np.random.RandomState(seed)
    X = read_idx(FASHION / "train-images-idx3-ubyte.gz").reshape(60000, -1)
    y = read_idx(FASHION / "train-labels-idx1-ubyte.gz").astype(np.int64)
    rows = rng.permutation(len(X))
    train, held = rows[:n_train], rows[n_train:n_train + n_test]
    if tune:
        X_test, y_test = X[held], y[held]
    else:
        X_t = read_idx(FASHION / "t10k-images-idx3-ubyte.gz").reshape(10000, -1)
        y_t = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
        test = rng.permutation(len(X_t))[:n_test]
        X_test, y_test = X_t[test], y_t[test]
    return X[train] / 255.0, X_test / 255.0, y[train], y_test


DATASETS = {"digits": small(load_digits), "breast_cancer": small(load_breast_cancer), "wine": small(load_wine),
            "fashion_5k": fashion}
SCALED = {"digits", "breast_cancer", "wine"}  # Fashion-MNIST's pixels/255 are already in [0, 1]


def methods(params: dict) -> dict:
    return {"DBNClassifier()": lambda seed: DBNClassifier(random_state=seed, **params),
            "MLP()": lambda seed: MLPClassifier(random_state=seed),
            "MLP(256,256)": lambda seed: MLPClassifier(hidden_layer_sizes=(256, 256), random_state=seed)}


def run(seeds: list[int], tune: bool, params: dict, datasets: list[str], names: list[str]) -> list[dict]:
    rows = []
    for data in datasets:
        for name in names:
            make = methods(params)[name]
            for i, seed in enumerate(seeds):
                X_train, X_test, y_train, y_test = DATASETS[data](seed, tune)
                model = make(seed)
                if data in SCALED:
                    model = make_pipeline(MinMaxScaler(clip=True), model)
                if i == 0:  # warm-up: imports and lazy initialisation are no part of fit time
                    clone(model).fit(X_train, y_train)
                start = time.perf_counter()
                model.fit(X_train, y_train)
                fit_s = time.perf_counter() - start
                acc = float(model.score(X_test, y_test))
                rows.append({"data": data, "method": name, "seed": seed, "test_acc": acc, "fit_s": round(fit_s, 3)})
                print(f"{data} {name} seed {seed}: acc {acc:.4f}, fit {fit_s:.2f} s", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    names = list(dict.fromkeys(r["method"] for r in rows))
    head = " | ".join(f"{n} acc % (mean ± sd)" for n in names) + " | " + " | ".join(f"{n} fit s (median)" for n in names)
    lines = [f"| data set | {head} | DBN / MLP() fit time |", "|---" * (2 * len(names) + 2) + "|"]
    for data in dict.fromkeys(r["data"] for r in rows):
        accs, secs = [], []
        for n in names:
            a = [100 * r["test_acc"] for r in rows if r["data"] == data and r["method"] == n]
            s = [r["fit_s"] for r in rows if r["data"] == data and r["method"] == n]
            sd = statistics.stdev(a) if len(a) > 1 else 0.0
            accs.append(f"{statistics.mean(a):.2f} ± {sd:.2f}" if a else "")
            secs.append(statistics.median(s) if s else None)
        ratio = ""
        if {"DBNClassifier()", "MLP()"} <= set(names):
            dbn, mlp = secs[names.index("DBNClassifier()")], secs[names.index("MLP()")]
            ratio = f"{dbn / mlp:.1f}x" if dbn and mlp else ""
        lines.append(f"| {data} | " + " | ".join(accs) + " | "
                     + " | ".join("" if s is None else f"{s:.2f}" for s in secs) + f" | {ratio} |")
    return "\n".join(lines) + paired(rows)


def paired(rows: list[dict], ours: str = "DBNClassifier()") -> str:
    """Seed-by-seed differences (points) between ``ours`` and each other method on the same split: mean ± its
    standard error, and wins / ties / losses. A split's test rows are shared, so the pairing removes the
    split-to-split spread that dominates the per-method standard deviations of the small sets."""
    acc = {(r["data"], r["method"], r["seed"]): 100 * r["test_acc"] for r in rows}
    others = [n for n in dict.fromkeys(r["method"] for r in rows) if n != ours]
    lines = []
    for data in dict.fromkeys(r["data"] for r in rows):
        cells = []
        for other in others:
            seeds = [s for (d, m, s) in acc if d == data and m == ours and (d, other, s) in acc]
            diffs = [acc[data, ours, s] - acc[data, other, s] for s in seeds]
            if len(diffs) < 2:
                cells.append("")
                continue
            se = statistics.stdev(diffs) / len(diffs) ** 0.5
            wins, ties = sum(d > 0 for d in diffs), sum(d == 0 for d in diffs)
            cells.append(f"{statistics.mean(diffs):+.2f} ± {se:.2f} ({wins}/{ties}/{len(diffs) - wins - ties})")
        if any(cells):
            lines.append(f"| {data} | " + " | ".join(cells) + " |")
    if not lines:
        return ""
    head = " | ".join(f"{ours} − {o}" for o in others)
    return ("\n\nPaired by seed (points; mean ± standard error; wins/ties/losses of " + ours + "):\n\n"
            + f"| data set | {head} |\n" + "|---" * (len(others) + 1) + "|\n" + "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--tune", action="store_true", help="seeds 100-102, Fashion held-out from the train file")
    parser.add_argument("--params", type=json.loads, default={}, help="DBNClassifier overrides (JSON)")
    parser.add_argument("--data", nargs="+", default=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(methods({})))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # MLP() stops at max_iter=200 on small sets
    seeds = args.seeds or ([100, 101, 102] if args.tune else [0, 1, 2, 3, 4])
    out = args.out or HERE / "results" / ("tune.json" if args.tune else "results.json")
    rows = run(seeds, args.tune, args.params, args.data, args.methods)
    print()
    print(table(rows))
    env = {"python": platform.python_version(), "torch": torch.__version__, "sklearn": sklearn.__version__,
           "torch_threads": torch.get_num_threads(), "machine": platform.machine()}
    defaults = {k: repr(v) for k, v in DBNClassifier(**args.params).get_params().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seeds": seeds, "tune": args.tune, "dbn_params": defaults, "rows": rows,
                               "table": table(rows), "env": env}, indent=1) + "\n")


if __name__ == "__main__":
    main()
