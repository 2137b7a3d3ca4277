"""``dbn-train`` (also ``python -m dbn.train``): compose the Hydra config and hand off to the pipeline."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from dbn.data.base import DataError
from dbn.errors import ConfigError
from dbn.training.rbm_module import DivergenceError

log = logging.getLogger("dbn")


@hydra.main(version_base="1.3", config_path="pkg://dbn.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Run the configured job; returns the fine-tuned test accuracy (for sweeps), if any."""
    from dbn.training.pipeline import run, summary

    try:
        results = run(cfg)
    except (ConfigError, DataError) as e:
        print(f"dbn-train: error: {e}", file=sys.stderr)
        sys.exit(2)
    except DivergenceError as e:
        print(f"dbn-train: training diverged: {e} (finished layers are in {cfg.run_dir}/dbn_pretrained.pt)", file=sys.stderr)
        sys.exit(3)
    print(summary(results, cfg.run_dir))
    return (results.get("finetune") or {}).get("test_acc")


if __name__ == "__main__":
    main()
