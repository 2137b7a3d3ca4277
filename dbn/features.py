"""A run's hidden-layer features as .npy (the library side of ``dbn-features``, :mod:`dbn.cli.features`).

The run's data are rebuilt from its saved config as ``dbn-eval`` does (same split, same
scaling); the features of hidden layer ``layer`` of its saved DBN (``dbn.pt``) are
written to ``out``, and the labels, when the data have them, to ``<out stem>_labels.npy``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dbn.device import resolve_device
from dbn.rundir import RunDir

SPLITS = ("train", "val", "test", "all")


def split_data(dm, split: str) -> tuple[Tensor, Tensor | None]:
    """Rows and labels (None if unlabelled) of one split of a set-up data module; ``all`` is train, val, test."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    names = ("train", "val", "test") if split == "all" else (split,)
    parts = [(getattr(dm, f"{name}_x"), getattr(dm, f"{name}_y")) for name in names]
    parts = [(x, y) for x, y in parts if x is not None]
    if not parts:
        raise ValueError(f"the run's data have no {split} split (val_fraction=0, or no test data?); "
                         "choose another split")
    labels = [y for _, y in parts]
    return torch.cat([x for x, _ in parts]), (torch.cat(labels) if all(y is not None for y in labels) else None)


@torch.no_grad()
def layer_features(model, x: Tensor, layer: int = -1, batch_size: int = 4096, progress: bool | None = None) -> Tensor:
    """E[h_l | x] of hidden layer ``layer`` (0-based, negative from the top), in batches on the model's device.

    ``progress``: tqdm bar (None: only on a terminal).  x: (n, n_visible) -> (n, sizes[layer + 1]) on the CPU.
    """
    from tqdm.auto import tqdm

    n_layers = len(model.layers)
    if not -n_layers <= int(layer) < n_layers:
        raise ValueError(f"layer must be in {-n_layers}..{n_layers - 1} for this {n_layers}-layer DBN, got {layer}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    depth = int(layer) % n_layers + 1
    chunks = x.split(int(batch_size))
    disable = None if progress is None else not progress  # None: tqdm shows the bar on a terminal only
    bar = tqdm(chunks, desc=f"layer {depth - 1} features", unit="batch", disable=disable)
    return torch.cat([model.transform(chunk, batch_size=len(chunk), n_layers=depth).cpu() for chunk in bar])


def export_features(run: str | Path, layer: int = -1, split: str = "all", out: str | Path | None = None,
                    batch_size: int = 4096, device: str = "cpu") -> dict:
    """Write the features (float32) and labels of a run's split; returns what was written where."""
    device = resolve_device(device)
    run = RunDir(run)
    model = run.load_model(map_location=device).eval()
    x, y = split_data(run.load_data(), split)
    features = layer_features(model, x, layer, batch_size).numpy().astype(np.float32, copy=False)
    out = Path(out) if out else run.features(split)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, features)
    written = {"features": str(out), "shape": list(features.shape)}
    if y is not None:
        labels = out.with_name(f"{out.stem}_labels.npy")
        np.save(labels, y.numpy())
        written["labels"] = str(labels)
    return written
