"""The Fashion-MNIST headline recipe (experiment=fashion_mnist_dbn): its config composes to the settings docs/results.md
reports, and it runs end to end, EMA included, on tiny idx files written here."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module

from tests.test_data import mnist_like, write_mnist
from tests.test_mnist_recipe import dry_run


def _cfg(*overrides: str):
    with initialize_config_module("dbn.conf", version_base="1.3"):
        return compose("train", overrides=["experiment=fashion_mnist_dbn", *overrides])


def test_recipe_composes_to_the_readme_settings(tmp_path):
    cfg = _cfg(f"run_dir={tmp_path}")
    assert cfg.data.name == "fashion_mnist" and abs(cfg.data.val_fraction * 60_000 - 5_000) < 1
    assert list(cfg.model.hidden) == [500, 500, 2000]
    p, f = cfg.pretrain, cfg.finetune
    assert (p.epochs, p.batch_size, p.lr, p.k, p.momentum_switch_epoch, p.weight_decay) == (30, 100, 0.05, 1, 5, 0.0002)
    assert (f.epochs, f.batch_size, f.dropout, f.augment, f.scheduler.T_max) == (50, 100, 0.2, None, 50)
    callbacks = cfg.callbacks.finetune
    assert callbacks.early_stopping is None and callbacks.model_checkpoint.monitor == "finetune/val/acc"
    assert callbacks.ema._target_ == "lightning.pytorch.callbacks.EMAWeightAveraging" and callbacks.ema.decay == 0.999


def test_random_init_baseline_keeps_the_fine_tuning_and_drops_only_pretraining(tmp_path):
    pretrained, baseline = _cfg(f"run_dir={tmp_path}"), _cfg(f"run_dir={tmp_path}", "pretrain=none")
    assert not baseline.pretrain.enabled and pretrained.pretrain.enabled
    assert baseline.finetune == pretrained.finetune and baseline.callbacks.finetune == pretrained.callbacks.finetune


@pytest.mark.slow
def test_recipe_dry_run_on_tiny_fashion_files(tmp_path):
    """Two epochs of every stage on 300 written images: the real architecture, EMA and best-epoch testing run."""
    write_mnist(tmp_path / "fashion", mnist_like(n_train=300, n_test=100), name="fashion_mnist")
    results = dry_run(tmp_path, "fashion_mnist_dbn", tmp_path / "fashion")
    assert results["finetune"]["best_monitor"] == "finetune/val/acc"
