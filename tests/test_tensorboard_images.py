"""RBMTensorBoard: filters, reconstructions, samples and histograms of every pretrained layer, read from TensorBoard."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from dbn.errors import ConfigError
from dbn.rbm import RBM
from dbn.training.callbacks import (RBMTensorBoard, filter_grid, layer_pictures, reconstruction_grid,
                                    square_side)
from dbn.training import build
from dbn.training.pipeline import run
from conftest import random_rbm

BASE = ["pretrain.epochs=2", "finetune=none"]
QUICK = [*BASE, "callbacks.pretrain.rbm_tensorboard.gibbs_steps=20", "callbacks.pretrain.rbm_tensorboard.every_n_epochs=1"]
PICTURES = ("filters", "reconstructions", "samples")
HISTOGRAMS = ("weight", "visible_bias", "hidden_bias")


def make_cfg(run_dir: Path, *overrides: str, base: list[str] = QUICK):
    with initialize_config_module("dbn.conf", version_base="1.3"):
        return compose("train", overrides=[f"run_dir={run_dir}", *base, *overrides])


def read_events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "histograms": 0})
    events.Reload()
    return events


def grid_size(n: int, side: int, nrow: int) -> tuple[int, int]:
    """(height, width) of make_grid's tiling of n side x side tiles, nrow a row, padding 1."""
    cols, rows = min(nrow, n), math.ceil(n / min(nrow, n))
    return rows * (side + 1) + 1, cols * (side + 1) + 1


def tile(grid: torch.Tensor, row: int, col: int, side: int) -> torch.Tensor:
    """One side x side tile of a padding-1 grid, first channel, flattened."""
    top, left = 1 + row * (side + 1), 1 + col * (side + 1)
    return grid[0, top:top + side, left:left + side].reshape(-1)


# --- end to end: the real pipeline, shrunk --------------------------------------------------------------
def test_square_layers_get_pictures_and_every_layer_histograms(tmp_path):
    # 64 -> 10 -> 9: layer 0 sees 8x8 digits, layer 1 sees 10 hidden units (not a square)
    run(make_cfg(tmp_path, "model.hidden=[10,9]"))
    events = read_events(tmp_path)
    images, histograms = set(events.Tags()["images"]), set(events.Tags()["histograms"])
    for layer in (0, 1):
        assert {f"pretrain/layer{layer}/{name}" for name in HISTOGRAMS} <= histograms
    assert {f"pretrain/layer0/{name}" for name in PICTURES} <= images
    assert not any(tag.startswith("pretrain/layer1/") for tag in images)

    # once an epoch; the end of training falls on the last epoch's step and is not written twice
    steps = [e.step for e in events.Histograms("pretrain/layer0/weight")]
    assert len(steps) == 2 and steps[1] == 2 * steps[0] > 0
    assert [e.step for e in events.Images("pretrain/layer0/samples")] == steps

    last = {name: events.Images(f"pretrain/layer0/{name}")[-1] for name in PICTURES}
    sizes = {name: (e.height, e.width) for name, e in last.items()}
    assert sizes["filters"] == grid_size(10, 8, nrow=4)  # all 10 hidden units (n_filters=64 > 10)
    assert sizes["reconstructions"] == grid_size(64, 8, nrow=8)  # 32 inputs over 32 reconstructions
    assert sizes["samples"] == grid_size(32, 8, nrow=6)


def test_every_n_epochs_plus_the_end_of_training(tmp_path):
    run(make_cfg(tmp_path, "model.hidden=[16]", "pretrain.epochs=3",
                 "callbacks.pretrain.rbm_tensorboard.every_n_epochs=2"))
    steps = [e.step for e in read_events(tmp_path).Histograms("pretrain/layer0/weight")]
    assert len(steps) == 2 and 2 * steps[1] == 3 * steps[0]  # after epochs 2 and 3


@pytest.mark.parametrize("logger", ["~logger", "logger=csv"])  # no logger at all, or another kind
def test_runs_without_a_tensorboard_logger(tmp_path, logger):
    results = run(make_cfg(tmp_path, "model.hidden=[16]", logger))
    assert [layer["n_hidden"] for layer in results["pretrain"]] == [16]
    assert not (tmp_path / "tensorboard").exists()


# --- configuration -----------------------------------------------------------------------------------
def test_pretrain_callbacks_are_fresh_per_layer_and_can_be_switched_off(tmp_path):
    cfg = make_cfg(tmp_path)
    pick = lambda cbs: next(c for c in cbs if isinstance(c, RBMTensorBoard))  # noqa: E731
    first, second = pick(build.callbacks(cfg, "pretrain")), pick(build.callbacks(cfg, "pretrain"))
    assert first is not second
    assert first.gibbs_steps == 20 and first.seed == 0
    switched_off = build.callbacks(make_cfg(tmp_path, "callbacks.pretrain.rbm_tensorboard=null"), "pretrain")
    assert not any(isinstance(c, RBMTensorBoard) for c in switched_off)
    assert build.callbacks(make_cfg(tmp_path, "callbacks=none", base=BASE), "pretrain") == []
    # fine-tuning callbacks that watch validation metrics are left out without validation data
    assert len(build.callbacks(cfg, "finetune")) == 2 and build.callbacks(cfg, "finetune", has_val=False) == []


def test_impossible_callback_settings_name_the_key(tmp_path):
    cfg = make_cfg(tmp_path, "callbacks.pretrain.rbm_tensorboard.gibbs_steps=0")
    with pytest.raises(ConfigError, match="callbacks.pretrain.rbm_tensorboard: gibbs_steps must be >= 1, got 0"):
        build.callbacks(cfg, "pretrain")


# --- the pictures ------------------------------------------------------------------------------------
def test_square_side():
    assert [square_side(n) for n in (1, 10, 16, 64, 784, 785)] == [1, None, 4, 8, 28, None]


def test_filter_grid_tiles_each_filter_min_max_scaled():
    rbm = random_rbm(64, 4, scale=3.0, dtype=torch.float32)
    weight = rbm.weight.detach().clone()
    grid = filter_grid(rbm.weight, side=8)
    assert grid.shape == (3, *grid_size(4, 8, nrow=2)) == (3, 19, 19)
    assert grid.min() >= 0 and grid.max() <= 1 and torch.isfinite(grid).all()
    for j in range(4):
        w = weight[j]
        expected = (w - w.min()) / (w.max() - w.min())
        torch.testing.assert_close(tile(grid, j // 2, j % 2, 8), expected)
    assert torch.equal(rbm.weight, weight)  # input unchanged
    assert filter_grid(rbm.weight, side=8, n_filters=2).shape == (3, 10, 19)


def test_constant_filter_is_black_not_nan():
    grid = filter_grid(torch.zeros(3, 16), side=4)
    assert torch.isfinite(grid).all() and tile(grid, 0, 0, 4).abs().max() == 0


def test_reconstructions_sit_below_their_inputs():
    g = torch.Generator().manual_seed(0)
    v, recon = torch.rand(5, 9, generator=g), torch.rand(5, 9, generator=g)
    grid = reconstruction_grid(v, recon, side=3)
    # ceil(sqrt(10)) = 4 tiles a row: inputs fill rows 0-1 (3 blanks), reconstructions rows 2-3
    assert grid.shape == (3, *grid_size(16, 3, nrow=4))
    for i in range(5):
        row, col = divmod(i, 4)
        torch.testing.assert_close(tile(grid, row, col, 3), v[i])
        torch.testing.assert_close(tile(grid, row + 2, col, 3), recon[i])


def test_model_samples_are_reproducible_visible_means():
    rbm = random_rbm(16, 5, dtype=torch.float32)
    draw = lambda seed: rbm.sample(7, steps=10, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    a = draw(1)
    assert a.shape == (7, 16) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, draw(1)) and not torch.equal(a, draw(2))
    # means, not binary samples: E[v | h] = sigmoid(b + Wᵀh) for the last binary h
    assert ((a > 0) & (a < 1)).any()
    with pytest.raises(ValueError, match="steps must be >= 1"):
        rbm.sample(7, steps=0)


def test_layer_pictures_only_for_square_layers():
    monitor = torch.rand(40, 16, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    assert layer_pictures(RBM(10, 5), monitor, gibbs_steps=2, generator=g) == {}
    pictures = layer_pictures(RBM(16, 5), monitor, n_images=8, gibbs_steps=2, generator=g)
    assert set(pictures) == {"filters", "reconstructions", "samples"}
    assert pictures["reconstructions"].shape == (3, *grid_size(16, 4, nrow=4))
    assert pictures["samples"].shape == (3, *grid_size(8, 4, nrow=3))
    assert set(layer_pictures(RBM(16, 5), None, gibbs_steps=2, generator=g)) == {"filters", "samples"}


@pytest.mark.parametrize("key", ["every_n_epochs", "n_filters", "n_images", "gibbs_steps"])
def test_callback_rejects_non_positive_settings(key):
    with pytest.raises(ValueError, match=f"{key} must be >= 1"):
        RBMTensorBoard(**{key: 0})


@pytest.mark.parametrize("image_layers,layer1_pictures", [("[0]", False), ("null", True)])
def test_pictures_only_for_the_chosen_layers(tmp_path, image_layers, layer1_pictures):
    """Layer 1 of 64-16-9 has 16 = 4x4 inputs: hidden units, not pixels; pictured only when asked."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    run(make_cfg(tmp_path, "model.hidden=[16,9]", f"callbacks.pretrain.rbm_tensorboard.image_layers={image_layers}"))
    mux = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "tensorboard"))
    mux.Reload()
    images = {t for r in mux.Runs().values() for t in r.get("images", [])}
    histograms = {t for r in mux.Runs().values() for t in r.get("histograms", [])}
    assert "pretrain/layer0/filters" in images and "pretrain/layer1/weight" in histograms
    assert ("pretrain/layer1/filters" in images) == layer1_pictures
