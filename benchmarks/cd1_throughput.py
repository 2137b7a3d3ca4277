"""CD-1 throughput on Fashion-MNIST: Lightning vs a plain PyTorch loop vs scikit-learn vs the matmul ceiling.

Usage: python benchmarks/cd1_throughput.py [--repeats 3] [--hidden 500] [--batch 100] [--limit N]
Prints a Markdown table of samples/s (median of --repeats one-epoch runs) and the ratios.
scikit-learn runs in a subprocess with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset for it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

SKLEARN = r"""
import json, sys, time, numpy as np
from threadpoolctl import threadpool_info
from sklearn.neural_network import BernoulliRBM
x = np.load(sys.argv[1]); hidden, batch, repeats = map(int, sys.argv[2:5])
times = []
for r in range(repeats):
    rbm = BernoulliRBM(n_components=hidden, batch_size=batch, n_iter=1, learning_rate=0.05, random_state=r)
    t = time.perf_counter(); rbm.fit(x); times.append(time.perf_counter() - t)
info = [(i.get("internal_api"), i.get("architecture")) for i in threadpool_info()]
print(json.dumps({"times": times, "blas": info}))
"""


def load(limit: int | None) -> torch.Tensor:
    from dbn.data import IdxDataModule

    dm = IdxDataModule(name="fashion_mnist", val_fraction=0.0, limit=limit)
    dm.setup()
    return dm.train_x


def lightning_epoch(x, hidden, batch, seed):
    import lightning as L

    from dbn.data import PretrainDataModule
    from dbn.rbm import RBM
    from dbn.training.rbm_module import RBMModule

    torch.manual_seed(seed)
    module = RBMModule(RBM(x.shape[1], hidden), epochs=1, weight_decay=0.0, log_prefix="bench")
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, accelerator="cpu")
    t = time.perf_counter()
    trainer.fit(module, datamodule=PretrainDataModule(x, None, batch))
    return time.perf_counter() - t


def plain_epoch(x, hidden, batch, seed):
    from dbn.rbm import RBM
    from dbn.sampling import cd_loss, contrastive_divergence

    torch.manual_seed(seed)
    rbm = RBM(x.shape[1], hidden)
    opt = torch.optim.SGD(rbm.parameters(), lr=0.05, momentum=0.5)
    t = time.perf_counter()
    for v in x[torch.randperm(len(x))].split(batch):
        loss = cd_loss(rbm, contrastive_divergence(rbm, v))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def ceiling(n_visible, hidden, batch, reps=200):
    """Samples/s if one CD-1 sample cost only its 5 products (2·n_visible·hidden FLOPs each) at the measured rate."""
    a, w, h = torch.rand(batch, n_visible), torch.rand(hidden, n_visible), torch.rand(batch, hidden)
    for _ in range(10):
        a @ w.T
    t = time.perf_counter()
    for _ in range(reps):
        a @ w.T, h @ w, h.T @ a
    flops = reps * 3 * 2 * batch * n_visible * hidden / (time.perf_counter() - t)
    return flops / (5 * 2 * n_visible * hidden), flops


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=500)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    x = load(args.limit)
    n = len(x)
    rows = {}
    rows["(a) dbn RBMModule + Lightning Trainer"] = statistics.median(lightning_epoch(x, args.hidden, args.batch, r) for r in range(args.repeats))
    rows["(b) dbn maths, plain PyTorch loop"] = statistics.median(plain_epoch(x, args.hidden, args.batch, r) for r in range(args.repeats))
    path = "/tmp/_dbn_bench_x.npy"
    import numpy as np

    np.save(path, x.numpy())  # float32: scikit-learn keeps the dtype
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    out = subprocess.run([sys.executable, "-c", SKLEARN, path, str(args.hidden), str(args.batch), str(args.repeats)],
                         capture_output=True, text=True, env=env, check=True)
    sk = json.loads(out.stdout)
    rows["(c) scikit-learn BernoulliRBM (float32)"] = statistics.median(sk["times"])
    ceil_rate, flops = ceiling(x.shape[1], args.hidden, args.batch)
    print(f"Fashion-MNIST {n} x {x.shape[1]}, {args.hidden} hidden, batch {args.batch}, CD-1, fp32, torch threads {torch.get_num_threads()}; "
          f"median of {args.repeats} epochs; sklearn BLAS {sk['blas']}; matmul rate {flops / 1e9:.1f} GFLOP/s")
    print("| setup | samples/s | vs (b) | vs (c) |")
    print("|---|---|---|---|")
    base_b, base_c = n / rows["(b) dbn maths, plain PyTorch loop"], n / rows["(c) scikit-learn BernoulliRBM (float32)"]
    for name, seconds in rows.items():
        rate = n / seconds
        print(f"| {name} | {rate:,.0f} | {rate / base_b:.2f} | {rate / base_c:.2f} |")
    print(f"| (d) ceiling: measured matmul rate / FLOPs of 5 products | {ceil_rate:,.0f} | {ceil_rate / base_b:.2f} | {ceil_rate / base_c:.2f} |")


if __name__ == "__main__":
    main()
