"""``dbn-eval run_dir=DIR [n_chains=100 n_betas=14500 seed=0]``: evaluate a saved run, write eval.json, print a table."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from dbn.cli import lean_gc, run_directory


@hydra.main(version_base="1.3", config_path="pkg://dbn.conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with lean_gc():
        from dbn.eval.report import evaluate_run, format_report

    try:
        result = evaluate_run(run_directory(cfg, "dbn-eval"), n_chains=cfg.n_chains, n_betas=cfg.n_betas,
                              seed=cfg.seed, device=cfg.device, bound_samples=cfg.bound_samples,
                              raise_args={"vectors": cfg.raise_vectors, "chains": cfg.raise_chains, "betas": cfg.raise_betas})
    except (FileNotFoundError, ValueError) as e:
        print(f"dbn-eval: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(format_report(result))


if __name__ == "__main__":
    main()
