"""``dbn-train`` (also ``python -m dbn.train``): compose the Hydra config and hand off to the pipeline."""

from __future__ import annotations

import logging
import sys
import warnings

import hydra
from omegaconf import DictConfig

from dbn.data.base import DataError
from dbn.errors import ConfigError
from dbn.training.rbm_module import DivergenceError

log = logging.getLogger("dbn")
# Lightning 2.6 on torch >= 2.10 warns once per fit about a torch-internal deprecation users cannot act on
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


@hydra.main(version_base="1.3", config_path="pkg://dbn.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Run the configured job; returns the fine-tuned test accuracy (for sweeps), if any."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from dbn.training.pipeline import run, summary

    try:
        results = run(cfg)
    except (ConfigError, DataError) as e:
        print(f"dbn-train: error: {e}", file=sys.stderr)
        sys.exit(2)
    except DivergenceError as e:
        print(f"dbn-train: training diverged: {e} (finished layers are in {cfg.run_dir}/dbn_pretrained.pt, "
              f"the last good epoch in {cfg.run_dir}/resume)", file=sys.stderr)
        sys.exit(3)
    except SIGTERMException:
        print(f"dbn-train: stopped by SIGTERM; the current epoch is checkpointed in {cfg.run_dir}/resume; "
              f"continue with: dbn-train resume={cfg.run_dir}", file=sys.stderr)
        sys.exit(143)  # 128 + SIGTERM, what a scheduler expects from a terminated job
    print(summary(results, cfg.run_dir))
    return (results.get("finetune") or {}).get("test_acc")


if __name__ == "__main__":
    main()
