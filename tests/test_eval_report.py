"""dbn-eval on a saved run: AIS against exact log Z, likelihood bands, eval.json, CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module

from dbn.eval.report import evaluate_run, format_report
from dbn.training.pipeline import run


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    with initialize_config_module("dbn.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"run_dir={run_dir}", "model.hidden=[12,10]", "data.binarize=sample",
                                          "pretrain.epochs=5", "finetune.epochs=3"])
    run(cfg)
    return run_dir


def test_evaluate_run_pins_ais_to_exact_log_z(small_run):
    result = evaluate_run(small_run, n_chains=100, n_betas=2000, seed=0)
    r = result["layer0"]
    assert abs(r["log_z_ais"] - r["log_z_exact"]) < 0.1
    assert r["log_z_low"] <= r["log_z_exact"] <= r["log_z_high"]
    assert r["test_ll_low"] <= r["test_ll"] <= r["test_ll_high"] < 0
    assert r["train_ll"] > r["test_ll"] - 5  # same distribution: no wild gap after 5 epochs
    assert 0 <= result["test_acc"] <= 1
    # the DBN's bound: finite and a log-probability (below 0); the top layer's log Z came from AIS
    assert -64 * 0.7 < result["dbn_bound"]["test_bound"] < 0
    assert json.loads((small_run / "eval.json").read_text()) == json.loads(json.dumps(result))
    assert "test log-likelihood" in format_report(result)
    # the RAISE / AIS bracket on the first 100 test vectors (dbn-eval's defaults) closes on the enumerated truth:
    # on this 64-12 layer both ends land within 0.01 nat of it (which end is above is noise at that scale;
    # tests/test_raise.py shows the two sides with a crude schedule)
    assert r["raise_vectors"] == 100 and r["raise_betas"] == 1000 and r["raise_chains"] == 5
    assert abs(r["test_subset_ll_raise"] - r["test_subset_ll_exact"]) < 0.05
    assert abs(r["test_subset_ll_ais"] - r["test_subset_ll_exact"]) < 0.05
    assert "bracket, first 100 test vectors" in format_report(result)


def test_dbn_eval_cli_reports_a_missing_run_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dbn.cli.evaluate", f"run_dir={tmp_path / 'nope'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "is" in proc.stderr and "a dbn-train run directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dbn_sample_cli_writes_an_image_grid(small_run, tmp_path):
    from PIL import Image

    out = tmp_path / "s.png"
    proc = subprocess.run([sys.executable, "-m", "dbn.cli.sample", f"run_dir={small_run}", "n=16", "steps=50", f"out={out}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (4 * (8 + 1) + 1,) * 2  # 4x4 grid of 8x8 digits, 1-pixel padding


def test_rbm_sample_from_noise_and_from_data():
    import torch

    from dbn import RBM

    rbm = RBM(9, 4)
    g = torch.Generator().manual_seed(0)
    x = rbm.sample(5, steps=3, generator=g)
    assert x.shape == (5, 9) and ((x > 0) & (x < 1)).all()
    data = torch.ones(2, 9)
    assert rbm.sample(steps=1, v0=data, generator=g).shape == (2, 9)


@pytest.mark.parametrize("case, reason", [
    ("conv", "written for dense layers; this first layer is convolutional"),
    ("missing", "missing values"),
    ("gaussian", "this layer has gaussian visible and 30 bernoulli hidden units"),
])
def test_a_layer_without_a_likelihood_says_why(case, reason):
    """dbn-eval printed one sentence listing every possible reason; now it names the one that applies."""
    import torch

    from dbn.conv import ConvRBM
    from dbn.eval.report import rbm_report
    from dbn.rbm import RBM

    rbm = {"conv": ConvRBM((1, 8, 8), 4, 3), "missing": RBM(64, 8), "gaussian": RBM(64, 30, visible="gaussian")}[case]
    x = (torch.rand(20, 64, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    out = rbm_report(rbm, x, x, n_chains=4, n_betas=20, seed=0, missing=case == "missing")
    assert "test_ll" not in out and reason in out["no_likelihood"]
    text = format_report({"run_dir": "RUN", "layer0": out})
    assert f"log-likelihood: not available: {out['no_likelihood']}" in text
