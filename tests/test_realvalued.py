"""Real-valued features end to end: data.scale=standard, Gaussian visible units, ReLU hidden units, dbn-eval."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from dbn import DBN
from dbn.data import DataError
from dbn.eval.report import evaluate_run, format_report
from dbn.training.pipeline import run

QUICK = ["pretrain.epochs=5", "finetune.epochs=20",
         "finetune.batch_size=16", "pretrain.batch_size=16"]


def blobs(n: int = 300, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of correlated real-valued features far from standardised (means near 200, stds near 40)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    latent = rng.normal(size=(n, 2)) + y[:, None] * 1.5
    x = latent @ rng.normal(size=(2, d)) + 0.3 * rng.normal(size=(n, d))
    return x * 40 + 200, y


def cfg_for(tmp_path: Path, x: np.ndarray, y: np.ndarray, *overrides: str):
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    with initialize_config_module("dbn.conf", version_base="1.3"):
        return compose("train", overrides=[f"run_dir={tmp_path}", "data=arrays", f"data.features={tmp_path / 'x.npy'}",
                                           f"data.labels={tmp_path / 'y.npy'}", *QUICK, *overrides])


def test_gaussian_dbn_trains_saves_its_scaling_and_evaluates(tmp_path):
    x, y = blobs()
    cfg = cfg_for(tmp_path, x, y, "model.visible=gaussian_learned", "data.scale=standard", "model.hidden=[12,8]")
    results = run(cfg)
    assert results["data"]["scale"] == "standard" and results["model"]["visible"] == "gaussian_learned"
    # the statistics come from the training split, and the saved model maps raw data the same way
    dm = instantiate(cfg.data)
    dm.setup()
    model = DBN.load(tmp_path)
    assert model.input_scaling == results["model"]["input_scaling"] == dm.scaling
    assert not torch.equal(model.layers[0].log_variance, torch.zeros(6))  # learned, and saved
    raw_test = (dm.test_x.double().numpy() * dm.scale_std) + dm.scale_mean
    torch.testing.assert_close(model.preprocess(raw_test), dm.test_x, atol=1e-5, rtol=0)
    acc = float((model.predict(model.preprocess(raw_test)) == dm.test_y).float().mean())
    assert acc == pytest.approx(results["finetune"]["test_acc"], abs=1e-6)
    assert acc > 0.8
    # dbn-eval: exact log Z of the Gaussian-Bernoulli layer (12 hidden units), densities in nats
    report = evaluate_run(tmp_path, n_chains=10, n_betas=100, seed=0)["layer0"]
    assert "log_z_ais" not in report and "test_pseudo_ll" not in report
    assert report["test_ll_low"] == report["test_ll"] == report["test_ll_high"]
    # the pretrained layer models the correlated features better than independent unit Gaussians
    # (-d/2 (log 2π + 1) = -8.51 nats for d = 6 standardised features)
    assert report["test_ll"] > -3 * (math.log(2 * math.pi) + 1)
    assert "log Z (exact)" in format_report({"run_dir": str(tmp_path), "layer0": report})


def test_relu_first_layer_under_gaussian_visible_units_trains_end_to_end(tmp_path):
    x, y = blobs(seed=1)
    results = run(cfg_for(tmp_path, x, y, "model.visible=gaussian", "data.scale=standard", "model.hidden=[16,8]",
                          "model.hidden_units=[relu,bernoulli]", "pretrain.lr=0.01"))
    assert [layer["n_hidden"] for layer in results["pretrain"]] == [16, 8]
    assert all(np.isfinite(layer["val/recon_error"]) for layer in results["pretrain"])
    model = DBN.load(tmp_path)
    assert [(r.visible.name, r.hidden.name) for r in model.layers] == [("gaussian", "relu"), ("relu", "bernoulli")]
    assert results["finetune"]["test_acc"] > 0.8


def test_unscaled_data_for_gaussian_units_stop_the_run_with_the_fix(tmp_path):
    x, y = blobs()
    with pytest.raises(DataError, match=r"does not look standardised.*data\.scale=standard"):
        run(cfg_for(tmp_path, x, y, "model.visible=gaussian"))


@pytest.mark.slow
def test_cli_breast_cancer_with_gaussian_visible_units_beats_a_weak_bar(tmp_path):
    """The experiments/tabular path, shrunk: raw breast-cancer features through dbn-train (logistic regression
    gets 98.2-99.1 % on these splits, see experiments/tabular/README.md)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    np.save(tmp_path / "x.npy", data.data)
    np.save(tmp_path / "y.npy", data.target)
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "dbn.cli.train", "data=arrays", f"data.features={tmp_path / 'x.npy'}",
         f"data.labels={tmp_path / 'y.npy'}", "data.scale=standard", "model.visible=gaussian", "model.hidden=[32]",
         "pretrain.epochs=10", "finetune.epochs=30", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600, env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["finetune"]["test_acc"] > 0.9  # the majority class is 63 %
    assert "fine-tuned test accuracy" in proc.stdout
