"""Fine-tuning augmentation: flips mirror, shifts translate with zero fill, per image, and the input stays as it was."""

from __future__ import annotations

import pytest
import torch

from dbn import DBN
from dbn.data.augment import augment_images, image_side
from dbn.training.finetune import FineTuneModule


def _dots(n: int, side: int = 8) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """n images with a single bright pixel each, at varied positions away from the border."""
    x, where = torch.zeros(n, side * side), []
    for i in range(n):
        r, c = 2 + i % 4, 2 + (i // 4) % 4
        x[i, r * side + c] = 1.0
        where.append((r, c))
    return x, where


def test_shifts_move_each_image_by_at_most_shift_pixels_and_vary_between_images():
    torch.manual_seed(0)
    x, where = _dots(64)
    before = x.clone()
    out = augment_images(x, 8, shift=2)
    assert torch.equal(x, before)  # input untouched
    moves = set()
    for img, (r, c) in zip(out.reshape(-1, 8, 8), where):
        (r2, c2), = img.nonzero().tolist()  # the dot survives: 2 pixels of margin
        assert abs(r2 - r) <= 2 and abs(c2 - c) <= 2
        moves.add((r2 - r, c2 - c))
    assert len(moves) > 10  # each image draws its own shift (25 possible)


def test_flips_mirror_about_half_the_images():
    torch.manual_seed(0)
    x, where = _dots(400)
    out = augment_images(x, 8, hflip=True).reshape(-1, 8, 8)
    flipped = 0
    for img, (r, c) in zip(out, where):
        (r2, c2), = img.nonzero().tolist()
        assert r2 == r and c2 in (c, 7 - c)
        flipped += c2 == 7 - c
    assert 160 < flipped < 240  # Binomial(400, 1/2): ±4 sd


def test_shifted_content_is_zero_filled_not_wrapped():
    x = torch.ones(1, 16)  # a wrap-around (torch.roll) would keep all 16 ones
    torch.manual_seed(1)
    outs = torch.stack([augment_images(x, 4, shift=1).reshape(4, 4) for _ in range(50)])
    assert (outs.sum((1, 2)) < 16).any() and set(outs.unique().tolist()) <= {0.0, 1.0}


def test_erasing_zeroes_one_rectangle_of_the_drawn_size_in_about_p_of_the_images():
    torch.manual_seed(0)
    n, side, p = 2000, 28, 0.5
    x = torch.ones(n, side * side)
    out = augment_images(x, side, erase=p).reshape(n, side, side)
    zero = out == 0
    erased = zero.any(-1).any(-1)
    assert abs(erased.float().mean().item() - p) < 4 * (p * (1 - p) / n) ** 0.5  # Binomial(n, p): ±4 sd
    for img in zero[erased]:
        rows, cols = img.any(1).nonzero().flatten(), img.any(0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert rows[-1] - rows[0] + 1 == h and cols[-1] - cols[0] + 1 == w  # contiguous
        assert img.sum() == h * w  # exactly the rectangle: one block, nothing else
        assert h < side and w < side
        assert 0.02 * side * side * 0.6 <= h * w <= 0.33 * side * side * 1.4  # the scale range, rounding aside
        assert 0.3 / 2 <= h / w <= 3.3 * 2  # the ratio range, rounding aside
    areas = zero[erased].sum((1, 2)).float() / side ** 2
    assert 0.14 < areas.mean() < 0.21  # uniform area fraction on [0.02, 0.33]: mean 0.175
    tops = torch.stack([img.any(1).nonzero()[0, 0] for img in zero[erased][:200]])
    assert len(set(tops.tolist())) > 10  # each image draws its own position
    assert torch.equal(x, torch.ones(n, side * side))  # input untouched


def test_erasing_off_draws_nothing_so_earlier_augmentations_are_unchanged():
    x = torch.rand(16, 64)
    torch.manual_seed(3)
    a = augment_images(x, 8, hflip=True, shift=2)
    torch.manual_seed(3)
    b = augment_images(x, 8, hflip=True, shift=2, erase=0.0)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="probability"):
        FineTuneModule(DBN([64, 8], n_classes=2), augment={"erase": 1.5})


def test_augmentation_needs_square_images_and_known_keys():
    assert image_side(784) == 28
    with pytest.raises(ValueError, match="square"):
        image_side(30)
    with pytest.raises(ValueError, match="hflip, shift and erase"):
        FineTuneModule(DBN([64, 8], n_classes=2), augment={"rotate": 10})
    with pytest.raises(ValueError, match="square"):
        FineTuneModule(DBN([30, 8], n_classes=2), augment={"hflip": True})
