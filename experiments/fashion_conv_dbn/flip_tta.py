"""Test-time flips: the test accuracy of fine-tuned runs on the images, on their mirror images, and with the two
predictions averaged (the mean of the two softmax outputs), on Fashion-MNIST's 10,000 test images.

The nets were fine-tuned with random left-right flips (``finetune.augment={hflip: true}``), so the mirror image is
an input of the kind they were trained on.

Usage: python experiments/fashion_conv_dbn/flip_tta.py RUN_DIR [RUN_DIR ...]   (each with the dbn.pt of dbn-train)
       python experiments/fashion_conv_dbn/flip_tta.py --split val RUN_DIR ...   (each run's own validation images,
           the split its config.yaml's data section draws: for choosing without the test set)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from omegaconf import OmegaConf

from dbn.data import IdxDataModule
from dbn.dbn import DBN


def images(run: Path | None, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images, or ``run``'s validation images (its data section's seed and validation share)."""
    if split == "test":
        data = IdxDataModule(name="fashion_mnist", val_fraction=0.0)
        data.setup()
        return data.test_x, data.test_y
    cfg = OmegaConf.load(run / "config.yaml").data
    data = IdxDataModule(name=cfg.name, root=cfg.root, val_fraction=cfg.val_fraction, seed=cfg.seed)
    data.setup()
    return data.val_x, data.val_y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--split", choices=["test", "val"], default="test")
    args = parser.parse_args()
    test = images(None, "test") if args.split == "test" else None
    print(f"| run | {args.split} acc | mirror images | both, softmax averaged |\n|---|---|---|---|")
    for run in args.runs:
        x, y = test or images(run, args.split)
        mirrored = x.view(-1, 28, 28).flip(-1).reshape(-1, 784)
        model = DBN.load(run / "dbn.pt").eval()
        with torch.no_grad():
            plain = torch.cat([model.predict_proba(b) for b in x.split(1000)])
            flipped = torch.cat([model.predict_proba(b) for b in mirrored.split(1000)])
        acc = [100 * (p.argmax(1) == y).double().mean().item() for p in (plain, flipped, plain + flipped)]
        print(f"| {run} | " + " | ".join(f"{a:.2f}%" for a in acc) + " |")

if __name__ == "__main__":
    main()
