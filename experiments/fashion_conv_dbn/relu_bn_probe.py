"""Do pretrained conv-RBM filters help a CNN with batch normalisation? A probe, outside the library.

The net has the recipe's shapes (conv 32x5x5 -> 2x2 max-pool -> conv 64x5x5 -> 2x2 max-pool -> dense 1024-256 ->
softmax), but every layer is followed by batch normalisation and ReLU instead of the RBMs' sigmoid units and
probabilistic max-pooling. ``--init pretrained`` copies the filters, the dense weights and their hidden biases from a
run's pretrained stack (``dbn_pretrained.pt``; batch normalisation then rescales and recenters each map, so what
carries over is the filters' shapes); ``--init random`` is PyTorch's default initialisation. Training: the
55,000 / 5,000 split that ``dbn-train experiment=fashion_mnist_conv seed=SEED`` uses (``data.seed`` = ``--seed``),
Adam 1e-3 cosine-annealed to 0, batch 100, random left-right flips, the epoch with the best validation accuracy
tested on the 10,000 test images.

``--act sigmoid``: the RBMs' sigmoid units in place of ReLU (max-pooling then takes the largest probability of a
block); ``--bn-init preserve`` (with ``--init pretrained``): each batch norm starts as the identity on the first
5,000 training images (scale and shift their pre-activations' standard deviation and mean), so the net starts as
the pretrained stack's bottom-up pass; the library's ``finetune.batch_norm=identity`` does this inside dbn-train.

Usage: python experiments/fashion_conv_dbn/relu_bn_probe.py --init pretrained --run RUN_DIR [--epochs 15]
       [--seed 0] [--act relu|sigmoid] [--bn-init default|preserve] [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dbn import DBN
from dbn.data import IdxDataModule
from dbn.data.augment import augment_images


def make_net(act: str = "relu") -> nn.Sequential:
    unit = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}[act]
    return nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 32, 5), nn.BatchNorm2d(32), unit(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5), nn.BatchNorm2d(64), unit(), nn.MaxPool2d(2),
        nn.Flatten(),  # (64, 4, 4) in the order of the RBM stack's pooled maps: map, block row, block column
        nn.Linear(1024, 256), nn.BatchNorm1d(256), unit(),
        nn.Linear(256, 10))


@torch.no_grad()
def preserve_pretrained(net: nn.Sequential, x: torch.Tensor) -> None:
    """Set each batch norm's scale and shift to the standard deviation and mean of its input on ``x``, so that the
    net starts as the pretrained stack's bottom-up pass (batch norm in training mode is then near the identity)."""
    h = x
    for module in net:
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            dims = (0, 2, 3) if h.dim() == 4 else (0,)
            module.weight.copy_(h.std(dims))
            module.bias.copy_(h.mean(dims))
        h = module(h) if not isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) else h


def load_pretrained(net: nn.Sequential, run: Path) -> None:
    stack = DBN.load(run / "dbn_pretrained.pt")
    targets = [m for m in net if isinstance(m, (nn.Conv2d, nn.Linear))][:3]
    if len(stack.layers) != 3:
        raise ValueError(f"{run}: expected the recipe's 3-layer stack, found {len(stack.layers)} layers")
    with torch.no_grad():
        for layer, rbm in zip(targets, stack.layers):
            if layer.weight.shape != rbm.weight.shape:
                raise ValueError(f"{run}: layer weight {tuple(rbm.weight.shape)} does not fit {tuple(layer.weight.shape)}")
            layer.weight.copy_(rbm.weight)
            layer.bias.copy_(rbm.hidden_bias)


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        correct = sum(int((net(xb).argmax(1) == yb).sum()) for xb, yb in zip(x.split(1000), y.split(1000)))
    return correct / len(y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", choices=["pretrained", "random"], required=True)
    parser.add_argument("--run", type=Path, help="a finished experiment=fashion_mnist_conv run (pretrained init)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0, help="initialisation, shuffling and the split")
    parser.add_argument("--act", choices=["relu", "sigmoid"], default="relu", help="hidden units (sigmoid: the RBMs')")
    parser.add_argument("--bn-init", choices=["default", "preserve"], default="default",
                        help="preserve: batch norm starts as the identity on the data (pretrained init only)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.init == "pretrained" and args.run is None:
        parser.error("--init pretrained needs --run RUN_DIR")
    data = IdxDataModule(name="fashion_mnist", val_fraction=5000 / 60000, seed=args.seed)
    data.setup()
    torch.manual_seed(args.seed)
    net = make_net(args.act)
    if args.init == "pretrained":
        load_pretrained(net, args.run)
        if args.bn_init == "preserve":
            preserve_pretrained(net, data.train_x[:5000])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    history, best, best_state = [], -1.0, None
    start = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(len(data.train_x))
        for idx in order.split(100):
            x = augment_images(data.train_x[idx], 28, hflip=True)
            loss = F.cross_entropy(net(x), data.train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        val = accuracy(net, data.val_x, data.val_y)
        history.append({"epoch": epoch + 1, "val_acc": val, "seconds": round(time.perf_counter() - start, 1)})
        print(f"epoch {epoch + 1}/{args.epochs} val_acc {val:.4f} ({history[-1]['seconds']} s)", flush=True)
        if val > best:
            best, best_state = val, copy.deepcopy(net.state_dict())
    net.load_state_dict(best_state)
    test = accuracy(net, data.test_x, data.test_y)
    print(f"{args.init}: best val {best:.4f}, test {test:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"init": args.init, "run": str(args.run), "seed": args.seed, "act": args.act,
                                         "bn_init": args.bn_init,
                                         "epochs": args.epochs, "best_val_acc": best, "test_acc": test,
                                         "history": history}, indent=1) + "\n")


if __name__ == "__main__":
    main()
