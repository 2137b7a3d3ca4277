"""Seconds per epoch of CD-1 through Lightning as the hidden layer and the data grow: is the cost linear?

Usage: python benchmarks/scaling.py [--base 15000] [--hidden-sizes 250 500 1000 2000] [--data-factors 1 2 4]
       [--hidden 500] [--batch 100] [--repeats 3] [--warmup 1] [--json PATH]
Hidden sizes are swept on the first ``--base`` Fashion-MNIST training images; data sizes are the base
set repeated (concatenated with itself) 1x/2x/4x at ``--hidden`` units. Each row is the median of
``--repeats`` epoch periods after ``--warmup`` epochs of one fit. ``vs linear`` is the time over the
first row's time scaled by samples x hidden units: 1.00 means exactly linear.
"""

from __future__ import annotations

import argparse

import torch

import harness


def run_scaling(x, base: int = 15000, hidden_sizes=(250, 500, 1000, 2000), data_factors=(1, 2, 4),
                hidden: int = 500, batch: int = 100, warmup: int = 1, repeats: int = 3, seed: int = 0) -> dict:
    """Median seconds per epoch of each hidden size (at ``base`` samples) and data factor (at ``hidden`` units)."""
    base_x = x[:base]
    seconds: dict[tuple[int, int], float] = {}

    def epoch_s(n_hidden: int, factor: int) -> float:
        if (n_hidden, factor) not in seconds:
            data = base_x.repeat(factor, 1) if factor > 1 else base_x
            harness.progress(f"scaling: {n_hidden} hidden, {len(data):,} samples")
            run = harness.lightning_run(data, n_hidden, batch, warmup + repeats, seed)
            seconds[(n_hidden, factor)] = len(data) / harness.steady_rate(len(data), run["periods"], warmup)  # median
        return seconds[(n_hidden, factor)]

    rows = [{"sweep": "hidden", "hidden": h, "factor": 1, "samples": len(base_x), "s_per_epoch": epoch_s(h, 1)}
            for h in hidden_sizes]
    rows += [{"sweep": "data", "hidden": hidden, "factor": f, "samples": f * len(base_x),
              "s_per_epoch": epoch_s(hidden, f)} for f in data_factors]
    ref = rows[0]
    for r in rows:
        r["s_per_epoch_per_1000_samples"] = r["s_per_epoch"] / (r["samples"] / 1000)
        r["s_per_epoch_per_1000_samples_100_hidden"] = r["s_per_epoch_per_1000_samples"] / (r["hidden"] / 100)
        work = r["samples"] * r["hidden"] / (ref["samples"] * ref["hidden"])
        r["vs_linear"] = (r["s_per_epoch"] / ref["s_per_epoch"]) / work
    return {"base": len(base_x), "batch": batch, "warmup": warmup, "repeats": repeats, "rows": rows}


def table(result: dict) -> str:
    head = (f"### Scaling: Lightning RBMModule, CD-1, batch {result['batch']}, fp32, "
            f"torch threads {torch.get_num_threads()}; base {result['base']:,} Fashion-MNIST images "
            f"(2x/4x: the base set concatenated with itself); "
            f"median of {result['repeats']} epochs after {result['warmup']} warm-up\n\n")
    rows = [[r["sweep"], r["hidden"], f"{r['factor']}x", f"{r['samples']:,}", f"{r['s_per_epoch']:.2f}",
             f"{r['s_per_epoch_per_1000_samples']:.3f}", f"{r['s_per_epoch_per_1000_samples_100_hidden']:.4f}",
             f"{r['vs_linear']:.2f}"] for r in result["rows"]]
    header = ["sweep", "hidden", "data", "samples / epoch", "s / epoch", "s / (epoch * 1000 samples)",
              "s / (epoch * 1000 samples * 100 hidden)", "vs linear"]
    return head + harness.markdown(header, rows)


def add_arguments(ap: argparse.ArgumentParser, prefix: str = "") -> None:
    ap.add_argument(f"--{prefix}base", type=int, default=15000, help="training images of the 1x set (default 15000)")
    ap.add_argument(f"--{prefix}hidden-sizes", type=int, nargs="+", default=[250, 500, 1000, 2000],
                    help="hidden sizes swept at 1x data (default 250 500 1000 2000)")
    ap.add_argument(f"--{prefix}data-factors", type=int, nargs="+", default=[1, 2, 4],
                    help="data sizes swept at --hidden units, as multiples of the base set (default 1 2 4)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    ap.add_argument("--hidden", type=int, default=500, help="hidden units of the data sweep (default 500)")
    ap.add_argument("--batch", type=int, default=100, help="batch size (default 100)")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per row; the median is reported (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed epochs before them (default 1)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = ap.parse_args()
    harness.quiet()
    x, _ = harness.load_fashion_mnist(args.base)
    result = run_scaling(x, args.base, args.hidden_sizes, args.data_factors, args.hidden, args.batch, args.warmup,
                         args.repeats)
    print(table(result), flush=True)
    harness.write_json(args.json, {"machine": harness.machine(), "scaling": result})


if __name__ == "__main__":
    main()
