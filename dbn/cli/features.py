"""``dbn-features run_dir=DIR [layer=-1 split=all out=F.npy batch_size=4096 device=cpu]``: a run's features as .npy.

See :func:`dbn.features.export_features`.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from dbn.cli import run_directory
from dbn.features import export_features


@hydra.main(version_base="1.3", config_path="pkg://dbn.conf", config_name="features")
def main(cfg: DictConfig) -> None:
    try:
        written = export_features(run_directory(cfg, "dbn-features"), layer=cfg.layer, split=cfg.split, out=cfg.out,
                                  batch_size=cfg.batch_size, device=cfg.device)
    except (FileNotFoundError, ValueError) as e:
        print(f"dbn-features: error: {e}", file=sys.stderr)
        sys.exit(2)
    labels = f", labels to {written['labels']}" if "labels" in written else ""
    print(f"wrote features {tuple(written['shape'])} to {written['features']}{labels}")


if __name__ == "__main__":
    main()
