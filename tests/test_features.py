"""dbn-features end to end on a tiny dbn-train run: the saved features are the DBN's, split by split."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from dbn import DBN
from dbn.eval.report import load_run_data
from dbn.features import export_features, split_data
from dbn.training.pipeline import run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    with initialize_config_module("dbn.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"run_dir={run_dir}", "model.hidden=[12,10]", "pretrain.epochs=1",
                                          "finetune.epochs=2"])
    run(cfg)
    return run_dir


def _features_cli(*args):
    return subprocess.run([sys.executable, "-m", "dbn.cli.features", *args], capture_output=True, text=True, timeout=300)


def test_cli_writes_the_dbns_top_features_and_labels_of_a_split(small_run, tmp_path):
    out = tmp_path / "feats" / "test.npy"
    proc = _features_cli(f"run_dir={small_run}", "split=test", f"out={out}", "batch_size=50")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wrote features (360, 10)" in proc.stdout
    features, labels = np.load(out), np.load(tmp_path / "feats" / "test_labels.npy")
    dm = load_run_data(small_run)
    expected = DBN.load(small_run).transform(dm.test_x).numpy()
    assert features.shape == (360, 10) and features.dtype == np.float32
    np.testing.assert_allclose(features, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(labels, dm.test_y.numpy())


@pytest.mark.parametrize("layer, width", [(0, 12), (-2, 12), (1, 10)])
def test_any_layer_of_any_split(small_run, tmp_path, layer, width):
    written = export_features(small_run, layer=layer, split="all", out=tmp_path / "all.npy", batch_size=333)
    features = np.load(written["features"])
    dm = load_run_data(small_run)
    x = torch.cat([dm.train_x, dm.val_x, dm.test_x])
    expected = DBN.load(small_run).up(x, n_layers=layer % 2 + 1)
    assert features.shape == (1797, width) == tuple(written["shape"])
    np.testing.assert_allclose(features, expected.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.load(tmp_path / "all_labels.npy"), torch.cat([dm.train_y, dm.val_y, dm.test_y]))


def test_default_output_goes_into_the_run(small_run):
    written = export_features(small_run, split="val")
    assert Path(written["features"]) == small_run / "features_val.npy"
    assert np.load(small_run / "features_val_labels.npy").shape == (written["shape"][0],)


def test_bad_requests_are_one_line_errors(small_run, tmp_path):
    proc = _features_cli(f"run={small_run}", "layer=2")  # run=DIR, the older spelling, still names the run
    assert proc.returncode == 2 and "dbn-features: error: layer must be in -2..1" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _features_cli()
    assert proc.returncode == 2 and "no run directory" in proc.stderr and "run_dir=" in proc.stderr, proc.stderr
    with pytest.raises(FileNotFoundError, match="no saved DBN"):
        export_features(tmp_path / "nope")
    with pytest.raises(ValueError, match="split must be one of"):
        export_features(small_run, split="dev")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        export_features(small_run, batch_size=0)


def test_unlabelled_or_missing_splits():
    class Data:
        train_x, train_y, val_x, val_y, test_x, test_y = torch.ones(3, 2), None, None, None, torch.zeros(1, 2), None

    x, y = split_data(Data, "all")
    assert x.shape == (4, 2) and y is None
    with pytest.raises(ValueError, match="no val split"):
        split_data(Data, "val")


def test_registered_as_a_console_script():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["dbn-features"] == "dbn.cli.features:main"
    assert (ROOT / "conf" / "features.yaml").exists()


@pytest.mark.parametrize("device, message", [("cuda", "0 usable CUDA"), ("cuda:1", "0 usable CUDA"),
                                             ("tpu9", "is not a device")])
def test_dbn_features_and_dbn_eval_refuse_a_device_this_machine_lacks_with_the_fix(small_run, device, message,
                                                                                   monkeypatch):
    """dbn-features / dbn-eval device=cuda on a machine without CUDA failed deep in torch.load ("Attempting to
    deserialize object on a CUDA device"), as a traceback; now a ValueError, which both commands print as one line."""
    from dbn.eval.report import evaluate_run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for call in (lambda: export_features(small_run, split="test", device=device),
                 lambda: evaluate_run(small_run, n_chains=2, n_betas=10, device=device)):
        with pytest.raises(ValueError, match=rf"device={device!r}.*{message}.*'cpu'"):
            call()


def test_eval_sample_and_features_take_the_run_as_run_dir_or_run():
    """One spelling for the three readers of a run (dbn-train writes run_dir); run=DIR, the old dbn-features key,
    works everywhere; a missing or contradictory one is refused with the fix."""
    from omegaconf import OmegaConf

    from dbn.cli import run_directory

    with initialize_config_module("dbn.conf", version_base="1.3"):
        for name in ("eval", "sample", "features"):
            for key in ("run_dir", "run"):
                assert run_directory(compose(name, overrides=[f"{key}=/r/1"]), "x") == "/r/1"
            assert run_directory(compose(name, overrides=["run_dir=/r/1", "run=/r/1"]), "x") == "/r/1"
            with pytest.raises(ValueError, match=f"no run directory: .*dbn-{name} run_dir="):
                run_directory(compose(name), f"dbn-{name}")
            with pytest.raises(ValueError, match="name different runs"):
                run_directory(compose(name, overrides=["run_dir=/r/1", "run=/r/2"]), "x")
    assert run_directory(OmegaConf.create({"run": "/r/3"}), "x") == "/r/3"
