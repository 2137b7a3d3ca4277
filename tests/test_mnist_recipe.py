"""The Hinton & Salakhutdinov (2006) MNIST recipe: its config composes to the paper's numbers and runs on tiny idx files."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_module

from dbn.training.pipeline import run
from tests.test_data import mnist_like, write_mnist


def _cfg(*overrides: str):
    with initialize_config_module("dbn.conf", version_base="1.3"):
        return compose("train", overrides=["experiment=mnist_hinton2006", *overrides])


def test_recipe_composes_to_the_papers_settings(tmp_path):
    cfg = _cfg(f"run_dir={tmp_path}")
    assert cfg.data._target_ == "dbn.data.IdxDataModule" and cfg.data.name == "mnist"
    assert list(cfg.model.hidden) == [500, 500, 2000] and cfg.data.val_fraction == 0.0
    p = cfg.pretrain
    assert (p.epochs, p.batch_size, p.lr, p.k, p.momentum, p.final_momentum, p.momentum_switch_epoch, p.weight_decay) == \
           (50, 100, 0.1, 1, 0.5, 0.9, 5, 0.0002)
    f = cfg.finetune
    assert (f.epochs, f.batch_size, f.dropout) == (200, 1000, 0.0)
    assert f.optimizer._target_ == "torch.optim.LBFGS" and "weight_decay" not in f.optimizer


def dry_run(tmp_path, experiment: str, data_root) -> dict:
    """Two epochs of every stage of ``experiment`` (a 784-500-500-2000 recipe) on the idx files in ``data_root``."""
    with initialize_config_module("dbn.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", f"run_dir={tmp_path / 'run'}", f"data.root={data_root}",
                                          "trainer.max_epochs=2"])
    results = run(cfg)
    assert [layer["n_hidden"] for layer in results["pretrain"]] == [500, 500, 2000]
    assert all(layer["epochs"] == 2 for layer in results["pretrain"])
    assert results["finetune"]["epochs"] == 2 and 0.0 <= results["finetune"]["test_acc"] <= 1.0
    return results


@pytest.mark.slow
def test_recipe_dry_run_on_tiny_mnist_files(tmp_path):
    """Two epochs of every stage on 300 written images: the real architecture and optimizers run end to end."""
    write_mnist(tmp_path / "mnist", mnist_like(n_train=300, n_test=100), layout="torchvision", gz=True)
    dry_run(tmp_path, "mnist_hinton2006", tmp_path / "mnist")
    assert json.loads((tmp_path / "run" / "results.json").read_text())["data"]["n_train"] == 300
