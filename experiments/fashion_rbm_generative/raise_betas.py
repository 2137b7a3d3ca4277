"""RAISE against the exact test log-likelihood of the 784-20 runs, at 3,000 and 30,000 betas (first 100 test vectors).

Usage (from the repository root, after the HIDDEN=20 runs): python experiments/fashion_rbm_generative/raise_betas.py METHOD...
Writes experiments/fashion_rbm_generative/results/hidden20/raise_betas.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from dbn.eval.likelihood import average_log_likelihood
from dbn.eval.partition import exact_log_partition
from dbn.eval.reverse import raise_log_likelihood
from dbn.rundir import RunDir

OUT = Path("experiments/fashion_rbm_generative/results/hidden20/raise_betas.json")


def main(methods: list[str]) -> None:
    torch.set_num_threads(1)
    out = {}
    for method in methods:
        run = RunDir(f"runs/fashion_rbm_exact/{method}/seed0")
        dm, rbm = run.load_data(), run.load_model(pretrained=True).layers[0]
        subset = dm.test_x[:100]
        row = {"exact": average_log_likelihood(rbm, subset, exact_log_partition(rbm))}
        for n_betas in (3000, 30000):
            start = time.perf_counter()
            est = raise_log_likelihood(rbm, subset, n_betas=n_betas, n_chains=5, base_data=dm.train_x, seed=0)
            row[f"raise_{n_betas}"] = est.log_likelihood
            row[f"seconds_{n_betas}"] = round(time.perf_counter() - start, 1)
        out[method] = row
        print(method, {k: round(v, 2) for k, v in row.items()}, flush=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
