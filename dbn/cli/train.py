"""``dbn-train`` (also ``python -m dbn.train``): compose the Hydra config and hand off to the pipeline."""

from __future__ import annotations

import logging
import sys
import warnings

import hydra
from omegaconf import DictConfig

from dbn.cli import lean_gc
from dbn.errors import CollectiveError, ConfigError, DataError, DivergenceError
from dbn.rundir import RunDir

log = logging.getLogger("dbn")
# Lightning 2.6 on torch >= 2.10 warns once per fit about a torch-internal deprecation users cannot act on
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


@hydra.main(version_base="1.3", config_path="pkg://dbn.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Run the configured job; returns the fine-tuned test accuracy (for sweeps), if any.

    Exit codes: 2 a config or data error, 3 training diverged, 4 a collective across
    processes failed or timed out, 143 stopped by SIGTERM (resumable).
    """
    with lean_gc():
        from lightning.pytorch.utilities import rank_zero_only
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        from dbn.training.console import quiet_lightning
        from dbn.training.pipeline import run, summary

    quiet_lightning()
    rank = rank_zero_only.rank
    run_dir = RunDir(cfg.run_dir)
    # every rank reports its own error (another rank's may be the cause); the rest is said once, by rank 0
    tag = f"dbn-train[rank {rank}]" if rank else "dbn-train"
    try:
        results = run(cfg)
    except (ConfigError, DataError) as e:
        print(f"{tag}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except DivergenceError as e:
        print(f"{tag}: training diverged: {e} (finished layers are in {run_dir.pretrained}, "
              f"the last good epoch in {run_dir.resume_dir})", file=sys.stderr)
        sys.exit(3)
    except CollectiveError as e:
        print(f"{tag}: error: {e}; continue with: dbn-train resume={cfg.run_dir}", file=sys.stderr)
        sys.exit(4)
    except SIGTERMException:
        if rank == 0:
            print(f"dbn-train: stopped by SIGTERM; the current epoch is checkpointed in {run_dir.resume_dir}; "
                  f"continue with: dbn-train resume={cfg.run_dir}", file=sys.stderr)
        sys.exit(143)  # 128 + SIGTERM, what a scheduler expects from a terminated job
    if rank == 0:
        print(summary(results, cfg.run_dir))
    return (results.get("finetune") or {}).get("test_acc")


if __name__ == "__main__":
    main()
