"""Why the fine-tuned conv DBN underfits: short fine-tuning probes on a Fashion-MNIST subset.

Every probe trains on the same 10,000 training images for 4 epochs (batch 100, Adam, cosine to 0, one thread)
and reports the accuracy on 5,000 held-out training images (no test images are used):
  (1) one conv layer (32 filters 5x5) + 2x2 pooling + a linear softmax, from PyTorch's default init, with
      different units: sigmoid, probabilistic max-pooling (the conv RBM's), softplus, sigmoid after batch norm,
      sigmoid whose pooled outputs are centered and scaled (5 (h - 0.5)), and ReLU;
  (2) the pretrained conv DBN of a run (its dbn_pretrained.pt) with a head, fine-tuned as dbn-train does
      (FineTuneModule), with and without ``centering``, dropout and augmentation (with ``centering``, dropout drops
      a unit to its mean: see FineTuneModule).
Usage: python experiments/fashion_conv_dbn/finetune_probe.py RUN_DIR [--json FILE]
  (RUN_DIR: a finished experiment=fashion_mnist_conv run, e.g. runs/fashion_conv_dbn/dbn/0)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dbn import DBN
from dbn.data.augment import augment_images
from dbn.data.idx import read_idx
from dbn.training.finetune import FineTuneModule

ROOT = Path("/usr/share/datasets/fashion-mnist")
EPOCHS, BATCH, N_TRAIN = 4, 100, 10_000


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.tensor(read_idx(ROOT / "train-images-idx3-ubyte.gz")).float().flatten(1) / 255
    y = torch.tensor(read_idx(ROOT / "train-labels-idx1-ubyte.gz")).long()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, held = perm[:N_TRAIN], perm[-5000:]
    return x[train], y[train], x[held], y[held]


class OneConv(nn.Module):
    """conv 32x5x5 -> units -> 2x2 pooling -> linear softmax."""

    def __init__(self, units: str) -> None:
        super().__init__()
        self.units, self.conv, self.norm, self.head = units, nn.Conv2d(1, 32, 5), nn.BatchNorm2d(32), nn.Linear(4608, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv(x.view(-1, 1, 28, 28))
        if self.units == "probabilistic max-pooling":  # P(block on) = 1 - 1 / (1 + sum exp)
            b, k, h, w = z.shape
            blocks = z.view(b, k, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(b, k, h // 2, w // 2, 4)
            pooled = torch.sigmoid(torch.logsumexp(blocks, -1))
        else:
            act = {"sigmoid": torch.sigmoid, "softplus": F.softplus, "relu": F.relu,
                   "sigmoid, centered and scaled": torch.sigmoid,
                   "batch norm + sigmoid": lambda t: torch.sigmoid(self.norm(t))}[self.units]
            pooled = F.max_pool2d(act(z), 2)
        if self.units == "sigmoid, centered and scaled":
            pooled = 5 * (pooled - 0.5)
        return self.head(pooled.flatten(1))


def fit(forward, params, x, y, xv, yv, lr, augment=False, train_mode=None) -> list[float]:
    torch.manual_seed(0)
    opt = torch.optim.Adam(params, lr=lr)
    steps = EPOCHS * (len(x) // BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    accs = []
    for _ in range(EPOCHS):
        if train_mode:
            train_mode(True)
        order = torch.randperm(len(x))
        for i in range(0, len(x), BATCH):
            b = order[i:i + BATCH]
            xb = augment_images(x[b], 28, hflip=True, shift=2) if augment else x[b]
            loss = F.cross_entropy(forward(xb), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if train_mode:
            train_mode(False)
        with torch.no_grad():
            accs.append(100 * (forward(xv).argmax(1) == yv).float().mean().item())
    return accs


def finetune(run: Path, x, y, xv, yv, centering: bool, dropout: float, augment: bool) -> list[float]:
    net = DBN.load(run / "dbn_pretrained.pt")
    net.add_head(10, torch.Generator().manual_seed(0))
    module = FineTuneModule(net, centering=centering, dropout=dropout)
    torch.manual_seed(0)
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=0.002)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS * (len(x) // BATCH))
    if centering:
        module._start_centering(x[:1000])
    accs = []
    for _ in range(EPOCHS):
        module.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x), BATCH):
            b = order[i:i + BATCH]
            xb = augment_images(x[b], 28, hflip=True, shift=2) if augment else x[b]

            def closure(xb=xb, yb=y[b]):
                opt.zero_grad()
                loss = F.cross_entropy(module(xb), yb)
                loss.backward()
                return loss

            module._optimizer_step(opt, closure)  # FineTuneModule's step, centered or not
            sched.step()
        module.eval()
        with torch.no_grad():
            accs.append(100 * (module(xv).argmax(1) == yv).float().mean().item())
    return accs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y, xv, yv = data()
    rows = []
    for units in ("sigmoid", "probabilistic max-pooling", "softplus", "batch norm + sigmoid",
                  "sigmoid, centered and scaled", "relu"):
        torch.manual_seed(0)
        net = OneConv(units)
        t = time.perf_counter()
        accs = fit(net, list(net.parameters()), x, y, xv, yv, lr=0.002, train_mode=net.train)
        rows.append({"probe": f"one conv layer, {units}", "acc": accs, "seconds": time.perf_counter() - t})
        print(rows[-1], flush=True)
    for centering in (False, True):
        settings = ((0.0, False), (0.2, True)) + (((0.2, False), (0.0, True)) if centering else ())
        for dropout, augment in settings:
            t = time.perf_counter()
            accs = finetune(args.run, x, y, xv, yv, centering, dropout, augment)
            rows.append({"probe": f"pretrained conv DBN, centering={centering}, dropout {dropout}, "
                                  f"augmentation {'on' if augment else 'off'}", "acc": accs,
                         "seconds": time.perf_counter() - t})
            print(rows[-1], flush=True)
    print(f"\n| probe | held-out accuracy after epochs 1-{EPOCHS} (%) |\n|---|---|")
    for r in rows:
        print(f"| {r['probe']} | {' / '.join(f'{a:.2f}' for a in r['acc'])} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
