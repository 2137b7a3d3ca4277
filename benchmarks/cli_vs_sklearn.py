"""Whole process, command line against command line: 10 CD-1 epochs of a 784 x 500 RBM on Fashion-MNIST.

ours:          dbn-train data=fashion_mnist model.hidden=[500] pretrain.epochs=10 pretrain.batch_size=100 finetune=none
               (as a user types it: its defaults, logger, callbacks, checkpoints and console included; it trains
               on the 55,000 images its validation split leaves and monitors the other 5,000)
scikit-learn:  BernoulliRBM(n_components=500, batch_size=100, n_iter=10, random_state=0).fit(X) on the 60,000
               training images, in its own process, reading the same idx files with numpy; OPENBLAS_CORETYPE and
               OPENBLAS_L2_SIZE are unset for that process only, and threadpoolctl reports its BLAS kernel.

Each is a fresh ``python`` process timed from start to exit (imports and data loading included); the runs of the
two alternate, and the table gives the median of ``--repeats``. Goal (issue 14): ours at least 1.5x faster.

  python benchmarks/cli_vs_sklearn.py [--repeats 3] [--json PATH] [--extra OVERRIDE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OURS = ["data=fashion_mnist", "model.hidden=[500]", "pretrain.epochs=10", "pretrain.batch_size=100", "finetune=none"]
ROOT = "/usr/share/datasets/fashion-mnist"
GOAL = 1.5

SKLEARN = r"""
import gzip, json, sys, time
import numpy as np
from threadpoolctl import threadpool_info
from sklearn.neural_network import BernoulliRBM
with gzip.open(sys.argv[1] + "/train-images-idx3-ubyte.gz") as f:
    X = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255.0
t = time.perf_counter()
BernoulliRBM(n_components=500, batch_size=100, n_iter=10, random_state=0).fit(X)
fit_s = time.perf_counter() - t
info = [{k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")} for i in threadpool_info()]
print(json.dumps({"n": len(X), "fit_s": fit_s, "blas": info}))
"""


def run_ours(extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        out = subprocess.run(["dbn-train", *OURS, *extra, f"hydra.run.dir={tmp}/run"], capture_output=True, text=True)
        wall = time.perf_counter() - t
        if out.returncode != 0:
            raise RuntimeError(f"dbn-train failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        results = json.loads((Path(tmp) / "run" / "results.json").read_text())
    layer = results["pretrain"][0] if isinstance(results.get("pretrain"), list) else {}
    return {"wall_s": wall, "fit_s": layer.get("seconds"), "recon": layer.get("val/recon_error")}


def run_sklearn() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", SKLEARN, ROOT], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"scikit-learn failed:\n{out.stderr[-2000:]}")
    return {"wall_s": wall, **json.loads(out.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each, alternating (default 3)")
    ap.add_argument("--extra", nargs="*", default=[], help="more dbn-train overrides, e.g. trainer.precision=bf16-mixed")
    ap.add_argument("--json", metavar="PATH", help="also write every number as JSON to PATH")
    args = ap.parse_args(argv)
    ours, theirs = [], []
    for r in range(args.repeats):
        print(f"[{time.strftime('%H:%M:%S')}] run {r + 1}/{args.repeats}", file=sys.stderr, flush=True)
        ours.append(run_ours(args.extra))
        theirs.append(run_sklearn())
    med = {name: statistics.median(x["wall_s"] for x in runs) for name, runs in (("ours", ours), ("sklearn", theirs))}
    blas = "; ".join(dict.fromkeys(f"{i['internal_api']} {i.get('version')} {i.get('architecture') or ''} "
                                   f"x{i['num_threads']}".replace("  ", " ") for i in theirs[0]["blas"]))
    ratio = med["sklearn"] / med["ours"]
    command = "dbn-train " + " ".join(OURS + args.extra)
    print(f"### Whole process, 10 CD-1 epochs of 784 x 500 on Fashion-MNIST, batch 100: median of {args.repeats} "
          f"alternating runs, wall time from process start to exit\n")
    print("| process | wall s (median) | runs, s | fit s (median) | note |")
    print("|---|---|---|---|---|")
    runs = {name: ", ".join(f"{x['wall_s']:.1f}" for x in r) for name, r in (("ours", ours), ("sklearn", theirs))}
    print(f"| `{command}` | {med['ours']:.1f} | {runs['ours']} | "
          f"{statistics.median(x['fit_s'] for x in ours):.1f} | 55,000 training images, val monitors, TensorBoard, "
          f"checkpoints, end-of-layer AIS |")
    print(f"| scikit-learn `BernoulliRBM(n_components=500, batch_size=100, n_iter=10)` | {med['sklearn']:.1f} | "
          f"{runs['sklearn']} | {statistics.median(x['fit_s'] for x in theirs):.1f} | "
          f"60,000 training images; BLAS: {blas} |")
    print(f"\nscikit-learn / ours = {ratio:.2f}x (goal >= {GOAL}x: {'met' if ratio >= GOAL else 'MISSED'})")
    report = {"command": command, "ours": ours, "sklearn": theirs, "median_wall_s": med, "ratio": ratio}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
