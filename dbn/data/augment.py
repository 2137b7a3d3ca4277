"""Image augmentation on whole batches, on the batch's device: random horizontal flips and small translations.

Used while fine-tuning on flattened square images (Fashion-MNIST, MNIST); the
random numbers are drawn on the device, so a step needs no host synchronisation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def image_side(n_features: int) -> int:
    """The side of a square image with ``n_features`` pixels; ValueError if there is none."""
    side = math.isqrt(n_features)
    if side * side != n_features:
        raise ValueError(f"augmentation needs square images, but {n_features} features are not a square number of pixels")
    return side


def check_augment(augment: dict | None) -> dict:
    """The augmentation settings as a dict, or ValueError naming what is wrong: keys ``hflip`` and ``shift`` only."""
    augment = dict(augment or {})
    unknown = set(augment) - {"hflip", "shift"}
    if unknown:
        raise ValueError(f"augment takes hflip and shift, got {sorted(unknown)}")
    if int(augment.get("shift", 0)) < 0:
        raise ValueError(f"augment.shift must be >= 0 pixels, got {augment['shift']}")
    return augment


def augment_images(x: Tensor, side: int, hflip: bool = False, shift: int = 0) -> Tensor:
    """Flip each image left-right with probability 1/2 and move it by up to ``shift`` pixels each way, zero-filled.

    x: (batch, side*side) -> (batch, side*side), a new tensor (x is left unchanged).
    """
    b = x.shape[0]
    img = x.reshape(b, side, side)
    if hflip:
        flip = torch.rand(b, 1, 1, device=x.device) < 0.5
        img = torch.where(flip, img.flip(-1), img)
    if shift > 0:
        padded = torch.nn.functional.pad(img, (shift, shift, shift, shift))
        dy, dx = torch.randint(-shift, shift + 1, (2, b), device=x.device)
        grid = torch.arange(side, device=x.device)
        rows = (grid[None, :] + shift - dy[:, None])[:, :, None]  # (b, side, 1)
        cols = (grid[None, :] + shift - dx[:, None])[:, None, :]  # (b, 1, side)
        img = padded[torch.arange(b, device=x.device)[:, None, None], rows, cols]
    return img.reshape(b, side * side)
