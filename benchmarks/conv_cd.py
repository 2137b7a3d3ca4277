"""Convolutional CD-1: milliseconds per update of a ConvRBM on 28x28 Fashion-MNIST batches (issue 16).

Rows: the layer as dbn trains it (the products as matrix products on unfolded patches for one-channel images,
probabilistic pooling in the block-major layout, glibc keeping freed memory), the same with oneDNN's
conv2d / conv_transpose2d / weight gradient in place of the unfolded products, the same without
``retain_freed_memory`` (each setting in its own process: the glibc setting cannot be undone), and the dense
784-500 RBM's update for scale. Median of ``--repeats`` timings of ``--updates`` updates, after warm-up.

    python benchmarks/conv_cd.py [--threads 2] [--batch 100] [--json benchmarks/results/conv_cd.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

SETUPS = {
    "dbn (unfolded products, freed memory kept)": {"unfolded": True, "retain": True},
    "oneDNN conv2d products, freed memory kept": {"unfolded": False, "retain": True},
    "dbn without retain_freed_memory": {"unfolded": True, "retain": False},
    "dense RBM 784-500 (for scale)": {"dense": True, "retain": True},
}


def measure(setup: dict, args) -> dict:
    from dbn import RBM
    from dbn.conv import ConvRBM
    from dbn.training.malloc import retain_freed_memory
    from dbn.update import cd_update

    torch.set_num_threads(args.threads)
    if setup.get("retain"):
        retain_freed_memory()
    gen = torch.Generator().manual_seed(0)
    if setup.get("dense"):
        rbm = RBM(784, 500, generator=gen)
    else:
        rbm = ConvRBM((1, 28, 28), args.filters, args.kernel, pooling=args.pooling, generator=gen)
        if not setup["unfolded"]:
            type(rbm)._unfolded = property(lambda self: False)
    opt = torch.optim.SGD(rbm.parameters(), lr=0.01, momentum=0.5)
    from harness import load_fashion_mnist

    train, _ = load_fashion_mnist(limit=args.batch * args.updates)
    batches = train.split(args.batch)
    for v in batches[:5]:
        cd_update(rbm, v, opt, monitor=False)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for v in batches[:args.updates]:
            cd_update(rbm, v, opt, monitor=False)
        times.append((time.perf_counter() - start) / args.updates * 1e3)
    return {"ms_per_update": statistics.median(times), "times": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--pooling", default="probabilistic")
    parser.add_argument("--json", default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a setup's name: measure it, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(SETUPS[args.one], args)))
        return
    rows = {}
    for name in SETUPS:
        cmd = [sys.executable, __file__, "--one", name, *sys.argv[1:]]
        rows[name] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    print(f"### ConvRBM CD-1 update, 28x28 Fashion-MNIST, {args.filters} filters {args.kernel}x{args.kernel}, "
          f"pooling {args.pooling}, batch {args.batch}, {args.threads} threads; median of {args.repeats} x "
          f"{args.updates} updates\n")
    print("| setup | ms / update | s / epoch of 60,000 | vs dbn |")
    print("|---|---|---|---|")
    ours = rows[next(iter(SETUPS))]["ms_per_update"]
    for name, row in rows.items():
        ms = row["ms_per_update"]
        print(f"| {name} | {ms:.1f} | {ms * 60000 / args.batch / 1e3:.1f} | {ms / ours:.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "torch": torch.__version__}, f, indent=1)


if __name__ == "__main__":
    main()
