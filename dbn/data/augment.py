"""Image augmentation on whole batches, on the batch's device: random horizontal flips, small translations and
random erasing (Zhong et al. 2017).

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
    """The augmentation settings as a dict, or ValueError naming what is wrong: keys ``hflip``, ``shift`` and
    ``erase`` only."""
    augment = dict(augment or {})
    unknown = set(augment) - {"hflip", "shift", "erase"}
    if unknown:
        raise ValueError(f"augment takes hflip, shift and erase, got {sorted(unknown)}")
    if int(augment.get("shift", 0)) < 0:
        raise ValueError(f"augment.shift must be >= 0 pixels, got {augment['shift']}")
    if not 0.0 <= float(augment.get("erase", 0.0)) <= 1.0:
        raise ValueError(f"augment.erase is the probability of erasing a rectangle of an image, in [0, 1]; "
                         f"got {augment['erase']}")
    return augment


def augment_images(x: Tensor, side: int, hflip: bool = False, shift: int = 0, erase: float = 0.0) -> Tensor:
    """Flip each image left-right with probability 1/2, move it by up to ``shift`` pixels each way, zero-filled,
    and with probability ``erase`` set a random rectangle of it to zero (:func:`erase_rectangles`).

    x: (batch, side*side) -> (batch, side*side), a new tensor (x is left unchanged). The random numbers are drawn
    in that order, and only for the augmentations that are on.
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
    if erase > 0:
        img = erase_rectangles(img, erase)
    return img.reshape(b, side * side)


def erase_rectangles(img: Tensor, p: float, scale: tuple[float, float] = (0.02, 0.33),
                     ratio: tuple[float, float] = (0.3, 3.3), tries: int = 10) -> Tensor:
    """Random erasing (Zhong, Zheng, Kang, Li & Yang 2017), each image on its own: with probability ``p`` a
    rectangle of area ``scale`` times the image's and aspect ratio (height / width) in ``ratio`` (log-uniform) is set
    to 0, at a uniformly drawn position. torchvision's ``RandomErasing`` with its defaults draws the same way, but
    one rectangle per call (for a batch tensor the same one for every image); here every image draws its own.
    A draw that does not fit inside the image is drawn again, up to ``tries`` times, after which the image is kept.

    img: (batch, height, width) -> a new tensor of the same shape.
    """
    b, height, width = img.shape
    dev = img.device
    area = height * width * torch.empty(b, tries, device=dev).uniform_(*scale)
    aspect = torch.exp(torch.empty(b, tries, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    h = torch.sqrt(area * aspect).round().long()
    w = torch.sqrt(area / aspect).round().long()
    fits = (h < height) & (w < width)
    first = fits.int().argmax(1, keepdim=True)  # the first draw that fits (0 where none does: masked below)
    h, w = h.gather(1, first), w.gather(1, first)  # (b, 1)
    on = (torch.rand(b, 1, device=dev) < p) & fits.any(1, keepdim=True)
    top = (torch.rand(b, 1, device=dev) * (height - h + 1)).long()
    left = (torch.rand(b, 1, device=dev) * (width - w + 1)).long()
    rows = torch.arange(height, device=dev)[None, :]
    cols = torch.arange(width, device=dev)[None, :]
    in_rows = (rows >= top) & (rows < top + h)  # (b, height)
    in_cols = (cols >= left) & (cols < left + w)  # (b, width)
    inside = in_rows[:, :, None] & in_cols[:, None, :] & on[:, :, None]
    return img.masked_fill(inside, 0.0)
