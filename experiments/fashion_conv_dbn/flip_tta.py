"""Test-time flips: the test accuracy of fine-tuned runs on the images, on their mirror images, and with the two
predictions averaged (the mean of the two softmax outputs), on Fashion-MNIST's 10,000 test images.

The nets were fine-tuned with random left-right flips (``finetune.augment={hflip: true}``), so the mirror image is
an input of the kind they were trained on.

Usage: python experiments/fashion_conv_dbn/flip_tta.py RUN_DIR [RUN_DIR ...]   (each with the dbn.pt of dbn-train)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dbn.data import IdxDataModule
from dbn.dbn import DBN


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    data = IdxDataModule(name="fashion_mnist", val_fraction=0.0)
    data.setup()
    x, y = data.test_x, data.test_y
    mirrored = x.view(-1, 28, 28).flip(-1).reshape(-1, 784)
    print("| run | test acc | mirror images | both, softmax averaged |\n|---|---|---|---|")
    for run in args.runs:
        model = DBN.load(run / "dbn.pt").eval()
        with torch.no_grad():
            plain = torch.cat([model.predict_proba(b) for b in x.split(1000)])
            flipped = torch.cat([model.predict_proba(b) for b in mirrored.split(1000)])
        acc = [100 * (p.argmax(1) == y).double().mean().item() for p in (plain, flipped, plain + flipped)]
        print(f"| {run} | " + " | ".join(f"{a:.2f}%" for a in acc) + " |")


if __name__ == "__main__":
    main()
