"""Fine-tuning step of the 784-500-500-2000-10 net (batch 100): where the time goes, per Adam implementation.

Usage: python benchmarks/finetune_step.py [--steps 100] [--repeats 5] [--threads N]

One process, one net; each row is the median over ``repeats`` timings of ``steps`` steps, after a warm-up.
"forward + backward" is the step without the optimizer; the other rows are whole steps (forward, backward,
optimizer update) with torch's Adam as configured: the default on CPU (a loop over the parameter tensors),
``foreach=True`` (grouped tensor ops) and ``fused=True`` (one kernel: ``conf/finetune/optimizer/adam.yaml``).
A last check trains 50 steps with each and reports the largest weight difference from the default.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from dbn import DBN

SIZES = [784, 500, 500, 2000]
BATCH = 100


def timed(fn, steps: int, repeats: int) -> float:
    """Median seconds per step."""
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        out.append((time.perf_counter() - start) / steps)
    return statistics.median(out)


def main() -> tuple[list, dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(BATCH, SIZES[0], generator=g), torch.randint(0, 10, (BATCH,), generator=g)

    def fresh() -> DBN:
        torch.manual_seed(0)
        return DBN(SIZES, n_classes=10).train()

    net = fresh()

    def backward_only() -> None:
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x, dropout=0.2), y).backward()

    rows = [("forward + backward (no update)", timed(backward_only, args.steps, args.repeats))]
    finals = {}
    for name, kwargs in (("Adam (torch default on CPU)", {}), ("Adam foreach=True", {"foreach": True}),
                         ("Adam fused=True (dbn default)", {"fused": True})):
        net = fresh()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, **kwargs)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x, dropout=0.2), y).backward()
            opt.step()

        rows.append((name, timed(step, args.steps, args.repeats)))
        net = fresh()  # the same 50 steps from the same start with each implementation
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, **kwargs)
        for _ in range(50):
            step()
        finals[name] = [p.detach().clone() for p in net.parameters()]

    base = rows[1][1]
    print(f"fine-tuning step, {'-'.join(map(str, SIZES))}-10, batch {BATCH}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    print()
    print("| step | ms per step | vs default Adam step |")
    print("|---|---|---|")
    for name, sec in rows:
        print(f"| {name} | {1000 * sec:.2f} | {base / sec:.2f}x |")
    ref = finals["Adam (torch default on CPU)"]
    print()
    for name, params in finals.items():
        diff = max((a - b).abs().max().item() for a, b in zip(params, ref))
        print(f"after 50 steps, {name}: largest weight difference from the default {diff:.2e}")
    return rows, finals


if __name__ == "__main__":
    main()
