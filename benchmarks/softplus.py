"""torch's softplus against dbn.special.softplus on this CPU: µs a call and the largest error against float64.

The free energy of binary hidden units is a sum of softplus over (batch, hidden) pre-activations; every CD update's
monitor, AIS and the parallel-tempering swaps evaluate it. torch's CPU softplus (like log1p and logsigmoid) runs
unvectorised in float32 and bfloat16; ``dbn.special.softplus`` computes max(x, 0) - log sigmoid(|x|) outside autograd.

Each row: the median over --repeats windows of the mean time of a call (torch threads as set, 2 by default here),
and the largest absolute error of each result against float64 softplus of the same (rounded) inputs.

  python benchmarks/softplus.py [--repeats 5] [--json PATH]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import harness
from dbn.special import softplus

SHAPES = ((100, 500), (1000, 500), (100, 2000))
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}


def per_call_us(fn, x: torch.Tensor, repeats: int, seconds: float = 0.2) -> float:
    """µs a call of ``fn(x)``: the inverse of harness.median_rate's median calls per second."""
    return 1e6 / harness.median_rate(lambda _: fn(x), 1.0, "cpu", seconds, repeats)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="timing windows per row; the median is reported")
    ap.add_argument("--seconds", type=float, default=0.2, help="length of one timing window (default 0.2 s)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    gen = torch.Generator().manual_seed(0)
    rows, out = [], []
    for shape in SHAPES:
        x64 = torch.randn(shape, generator=gen, dtype=torch.float64) * 4  # pre-activations of a trained layer's range
        for name, dtype in DTYPES.items():
            x = x64.to(dtype)
            ref = F.softplus(x.double())
            t_torch = per_call_us(F.softplus, x, args.repeats, args.seconds)
            t_ours = per_call_us(softplus, x, args.repeats, args.seconds)
            err_torch = float((F.softplus(x).double() - ref).abs().max())
            err_ours = float((softplus(x).double() - ref).abs().max())
            out.append({"shape": list(shape), "dtype": name, "torch_us": t_torch, "ours_us": t_ours,
                        "torch_max_abs_err": err_torch, "ours_max_abs_err": err_ours})
            rows.append([f"{shape[0]} x {shape[1]}", name, f"{t_torch:,.1f}", f"{t_ours:,.1f}",
                         f"{t_torch / t_ours:.2f}", f"{err_torch:.2g}", f"{err_ours:.2g}"])
    print(f"### softplus on this CPU: torch {torch.__version__}, {torch.get_num_threads()} threads; median of "
          f"{args.repeats} windows\n")
    print(harness.markdown(["shape", "dtype", "F.softplus µs", "dbn.special.softplus µs", "speed-up",
                            "F.softplus max abs error", "ours max abs error"], rows))
    result = {"machine": harness.machine(), "rows": out}
    harness.write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
