"""``dbn-sample run_dir=DIR [n=64 steps=1000 out=samples.png seed=0 layer=null]``: draw samples of a saved DBN as an image grid."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from dbn.cli import run_directory
from dbn.rundir import RunDir


def save_grid(x: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Write rows of square images (n, s*s) with values in [0, 1] as one PNG grid."""
    from torchvision.utils import save_image

    side = math.isqrt(x.shape[1])
    if side * side != x.shape[1]:
        raise ValueError(f"{x.shape[1]} visible units are not a square image; save the tensor instead")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(x.reshape(-1, 1, side, side).clamp(0, 1), path, nrow=nrow or math.ceil(math.sqrt(len(x))), padding=1)
    return path


@hydra.main(version_base="1.3", config_path="pkg://dbn.conf", config_name="sample")
def main(cfg: DictConfig) -> None:
    try:
        run_dir = RunDir(run_directory(cfg, "dbn-sample"))
        model = run_dir.load_model(pretrained=True)
        g = torch.Generator().manual_seed(int(cfg.seed))
        if cfg.layer is None:  # the DBN: Gibbs in the top RBM, then one top-down pass
            x = model.generate(int(cfg.n), steps=int(cfg.steps), generator=g)
        else:
            x = model.layers[int(cfg.layer)].sample(int(cfg.n), steps=int(cfg.steps), generator=g)
        out = save_grid(x, cfg.out if cfg.out else run_dir.samples)
    except (FileNotFoundError, ValueError, IndexError) as e:
        print(f"dbn-sample: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {len(x)} samples to {out}")


if __name__ == "__main__":
    main()
