"""dbn-train end to end on the real config, shrunk: results on disk, stages switched off, bad input, TensorBoard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from dbn import DBN
from dbn.data import DataError, DigitsDataModule
from dbn.errors import ConfigError
from dbn.training import build, pipeline
from dbn.training.pipeline import run

QUICK = ["model.hidden=[32,16]", "pretrain.epochs=2", "finetune.epochs=8", "finetune.optimizer.lr=0.01",
        ]


def make_cfg(run_dir: Path, *overrides: str):
    with initialize_config_module("dbn.conf", version_base="1.3"):
        return compose("train", overrides=[f"run_dir={run_dir}", *QUICK, *overrides])


def test_digits_run_writes_results_and_a_loadable_dbn(tmp_path):
    results = run(make_cfg(tmp_path))
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["config_hash"] == results["config_hash"] and len(on_disk["config_hash"]) == 12
    assert [layer["n_hidden"] for layer in on_disk["pretrain"]] == [32, 16]
    for layer in on_disk["pretrain"]:
        assert layer["epochs"] == 2 and np.isfinite(layer["val/recon_error"]) and "free_energy_gap" in layer
    assert on_disk["data"]["n_features"] == 64 and on_disk["data"]["n_classes"] == 10
    # the saved, fine-tuned DBN reproduces the reported test accuracy on the same split
    model = DBN.load(tmp_path)
    dm = DigitsDataModule(seed=0)
    dm.setup()
    acc = (model.predict(dm.test_x) == dm.test_y).float().mean().item()
    assert acc == pytest.approx(on_disk["finetune"]["test_acc"], abs=1e-6)
    assert acc > 0.5  # ten classes: chance is 0.1
    pretrained = DBN.load(tmp_path / "dbn_pretrained.pt")
    assert pretrained.head is None and pretrained.sizes == [64, 32, 16]


def test_per_layer_schedules_override_shared_defaults(tmp_path):
    results = run(make_cfg(tmp_path, "finetune=none", "+pretrain.layers.1.epochs=1", "+pretrain.layers.1.lr=0.01"))
    first, second = results["pretrain"]
    assert (first["epochs"], second["epochs"]) == (2, 1)
    assert first["lr"] == pytest.approx(0.05) and second["lr"] == pytest.approx(0.01)


def test_finetune_none_stops_after_pretraining(tmp_path):
    results = run(make_cfg(tmp_path, "finetune=none"))
    assert "finetune" not in results and len(results["pretrain"]) == 2
    assert DBN.load(tmp_path).head is None
    assert not (tmp_path / "checkpoints").exists()
    # the layers' rolling checkpoints are gone once progress.pt holds the finished layers
    assert sorted(p.name for p in (tmp_path / "resume").iterdir()) == ["progress.pt"]


def test_pretrain_none_is_the_random_init_baseline(tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr(pipeline, "pretrain_layers", lambda *a, **k: called.append(1))
    results = run(make_cfg(tmp_path, "pretrain=none"))
    assert not called and results["pretrain"] is None and "test_acc" in results["finetune"]
    assert DBN.load(tmp_path).sizes == [64, 32, 16]


def test_tensorboard_gets_per_layer_and_finetune_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    run(make_cfg(tmp_path))
    mux = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "tensorboard"))
    mux.Reload()
    tags = {t for r in mux.Runs().values() for t in r.get("scalars", [])}
    for layer in (0, 1):
        for name in ("train/recon_error_step", "val/recon_error", "val/free_energy", "train_subset/free_energy",
                     "free_energy_gap", "lr", "momentum"):
            assert f"pretrain/layer{layer}/{name}" in tags
    for name in ("finetune/train/loss_step", "finetune/val/loss", "finetune/val/acc", "finetune/test/acc"):
        assert name in tags


def test_finished_layers_survive_a_later_failure(tmp_path, monkeypatch):
    real = build.pretrain_trainer
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("node lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(build, "pretrain_trainer", flaky)
    with pytest.raises(RuntimeError, match="node lost"):
        run(make_cfg(tmp_path))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [layer["layer"] for layer in saved["pretrain"]] == [0]
    first = DBN.load(tmp_path / "dbn_pretrained.pt").layers[0]
    assert first.hidden_bias.abs().max() > 0  # trained: hidden biases start at zero


@pytest.mark.parametrize("override,error,msg", [
    ("model.hidden=[32,0]", ConfigError, "layer sizes must be >= 1"),
    ("model.hidden=[]", ConfigError, "non-empty list"),
    ("model.visible=gausian", ConfigError, "unknown unit type 'gausian'"),
    ("pretrain.k=0", ConfigError, "k must be >= 1"),
    ("+pretrain.layers.1.momentum=1.5", ConfigError, "layer 1: momentum must be in"),
    ("+pretrain.layers.4.k=2", ConfigError, "the model has 2 layers"),
    ("+pretrain.layers.0.kk=2", ConfigError, "unknown keys \\['kk'\\]"),
    ("finetune.epochs=0", ConfigError, "finetune.epochs must be >= 1"),
    ("finetune.dropout=1.0", ConfigError, "finetune.dropout must be a number in \\[0, 1\\)"),
    ("finetune.input_dropout=-0.1", ConfigError, "finetune.input_dropout must be"),
    ("finetune.label_smoothing=half", ConfigError, "finetune.label_smoothing must be"),
    ("data.val_fraction=1.5", DataError, "val_fraction must be in"),
    ("trainer.precision=bf16-true", ConfigError, "bf16-true stores the weights in 16 bits.*use trainer.precision=bf16-mixed"),
    ("trainer.precision=16-true", ConfigError, "16-true stores the weights in 16 bits"),
    ("finetune/optimizer=lbfgs finetune.centering=true", ConfigError, "L-BFGS's line search does not see"),
    ("finetune.batch_norm=true", ConfigError, "finetune.batch_norm must be null \\(off\\), identity or standard"),
])
def test_impossible_configs_fail_before_training(tmp_path, override, error, msg, monkeypatch):
    monkeypatch.setattr(pipeline, "pretrain_layers", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(error, match=msg):
        run(make_cfg(tmp_path, *override.split()))


def test_float64_training_runs_through_every_layer(tmp_path):
    """trainer.precision=64-true: Lightning fits each layer in float64; the greedy step fed the float32 data to the
    float64 first layer and stopped the run at the second layer with a dtype TypeError."""
    results = run(make_cfg(tmp_path, "trainer.precision=64-true"))
    assert [layer["layer"] for layer in results["pretrain"]] == [0, 1]
    assert results["finetune"]["test_acc"] > 0.5


@pytest.mark.parametrize("override", ["trainer.accelerator=gpu", "trainer=gpu", "trainer.accelerator=cuda"])
def test_a_gpu_trainer_on_a_machine_without_one_fails_before_training_naming_the_key(tmp_path, override, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(pipeline, "pretrain_layers", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ConfigError, match=r"trainer.accelerator=(gpu|cuda), but torch sees no GPU.*accelerator=cpu"):
        run(make_cfg(tmp_path, override))


def test_lightning_refusing_a_trainer_setting_is_a_config_error(tmp_path, monkeypatch):
    """A refusal by Lightning's Trainer constructor (a MisconfigurationException; here ``devices=0``) reaches the user
    as a ConfigError naming ``trainer`` (dbn-train prints it as one line), not as Hydra's instantiation error."""
    monkeypatch.setattr(pipeline, "pretrain_layers", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ConfigError, match=r"^trainer: "):
        build.trainer(make_cfg(tmp_path, "trainer.accelerator=cpu", "trainer.devices=0"), "finetune", epochs=1)


def _arrays(tmp_path, x, y=None):
    np.save(tmp_path / "x.npy", x)
    args = ["data=arrays", f"data.features={tmp_path / 'x.npy'}"]
    if y is not None:
        np.save(tmp_path / "y.npy", y)
        args.append(f"data.labels={tmp_path / 'y.npy'}")
    return args


def test_bad_data_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "pretrain_layers", lambda *a, **k: pytest.fail("training started"))
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        run(make_cfg(tmp_path, *_arrays(tmp_path, rng.random((60, 5)) * 255, y)))
    x = rng.random((60, 5))
    x[3, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        run(make_cfg(tmp_path, *_arrays(tmp_path, x, y)))
    with pytest.raises(DataError, match="empty"):
        run(make_cfg(tmp_path, *_arrays(tmp_path, np.zeros((0, 5)))))
    with pytest.raises(ConfigError, match="needs labels"):
        run(make_cfg(tmp_path, *_arrays(tmp_path, rng.random((60, 5)))))
    np.save(tmp_path / "xt.npy", rng.random((10, 4)))
    with pytest.raises(DataError, match="test data has 4 features but training data has 5"):
        run(make_cfg(tmp_path, *_arrays(tmp_path, rng.random((60, 5)), y), f"+data.test_features={tmp_path / 'xt.npy'}"))


def test_arrays_scaled_with_minmax_train_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    x = rng.normal(size=(200, 8)) * 10 + y[:, None] * 15  # real-valued, far outside [0, 1]
    results = run(make_cfg(tmp_path, *_arrays(tmp_path, x, y), "data.scale=minmax", "model.hidden=[16]",
                          "finetune.batch_size=16", "finetune.epochs=30"))
    assert results["finetune"]["test_acc"] > 0.8


def _cli(*args, cwd):
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", "dbn.cli.train", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_cli_config_error_is_one_line_and_nonzero(tmp_path):
    proc = _cli("pretrain.k=0", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "dbn-train: error: pretrain: layer 0: k must be >= 1" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.slow
def test_cli_runs_and_prints_accuracy(tmp_path):
    proc = _cli(*QUICK, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fine-tuned test accuracy:" in proc.stdout
    assert (tmp_path / "run" / "results.json").exists() and (tmp_path / "run" / "dbn.pt").exists()


@pytest.mark.slow
def test_compiled_bfloat16_main_job_as_typed(tmp_path):
    """The speed section's configuration on the main job, as typed: every layer compiles (the 64-256 and 256-256
    layers differ in width, the digits' last minibatch is short) and nothing falls back to eager."""
    from tests.conftest import run_as_typed

    job = run_as_typed(["dbn-train", "trainer.precision=bf16-mixed", "pretrain.compile=true"], tmp_path)
    assert job.returncode == 0, job.stderr[-3000:]
    assert "recompile_limit" not in job.stderr
    results = json.loads((job.run_dir / "results.json").read_text())
    assert len(results["pretrain"]) == 2  # both layers of the main job's 64-256-256 stack
    assert results["finetune"]["test_acc"] > 0.95  # eager float32: 0.9778 (seed 0)


@pytest.mark.slow
def test_cli_multirun_sweep_gets_one_directory_per_job(tmp_path):
    proc = _cli("-m", "pretrain.lr=0.01,0.05", "finetune=none", *QUICK, f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lrs = sorted(json.loads((tmp_path / "sweep" / str(i) / "results.json").read_text())["pretrain"][0]["lr"] for i in (0, 1))
    assert lrs == pytest.approx([0.01, 0.05])


@pytest.mark.slow
def test_wheel_ships_the_configs(tmp_path):
    import zipfile

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
                   check=True, timeout=600)
    (wheel,) = tmp_path.glob("dbn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for cfg in ("train.yaml", "data/digits.yaml", "pretrain/none.yaml", "experiment/fashion_mnist_dbn.yaml"):
        assert f"dbn/conf/{cfg}" in names


def test_likelihood_monitor_reaches_results_and_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    results = run(make_cfg(tmp_path, "finetune=none", "model.hidden=[12]", "pretrain.epochs=2",
                           "callbacks.pretrain.likelihood.every_n_epochs=1"))
    layer = results["pretrain"][0]
    # log-likelihoods of 64 pixels in [0, 1]: negative, and better than a uniform model's -64 log 2
    for key in ("val/log_likelihood", "train_subset/log_likelihood", "val/pseudo_log_likelihood"):
        assert -64 * 0.6932 < layer[key] < 0
    mux = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "tensorboard"))
    mux.Reload()
    events = [e for r in mux.Runs() for e in (mux.Scalars(r, "pretrain/layer0/val/log_likelihood")
                                              if "pretrain/layer0/val/log_likelihood" in mux.Runs()[r]["scalars"] else [])]
    assert len(events) == 2  # after epoch 1 and at the end of the layer


def test_centered_layer_with_the_likelihood_bracket_through_dbn_train(tmp_path):
    """pretrain.centering=true trains a plain RBM (saved, reloaded, evaluated as any), and the monitor's RAISE/AIS
    bracket holds the held-out log-likelihood from both sides."""
    from dbn.eval.partition import exact_log_partition

    results = run(make_cfg(tmp_path, "finetune=none", "model.hidden=[12]", "pretrain.epochs=3", "pretrain.centering=true",
                           "callbacks.pretrain.likelihood.raise_vectors=50", "callbacks.pretrain.likelihood.raise_betas=2000"))
    layer = results["pretrain"][0]
    raise_ll, ais_ll = layer["val_subset/log_likelihood_raise"], layer["val_subset/log_likelihood_ais"]
    assert raise_ll <= ais_ll + 0.05  # conservative below, optimistic above (here both within a fraction of a nat)
    assert ais_ll - raise_ll < 1.0
    rbm = DBN.load(tmp_path / "dbn_pretrained.pt").layers[0]
    assert type(rbm).__name__ == "RBM" and set(dict(rbm.named_parameters())) == {"weight", "visible_bias", "hidden_bias"}
    # AIS's log Z (1,000 betas) against enumeration of the 2^12 hidden states of the centered layer's plain form
    assert abs(layer["log_z"] - exact_log_partition(rbm.double())) < 0.5


def test_divergence_stops_the_layer_with_a_message_and_keeps_finished_layers(tmp_path):
    from dbn.training.rbm_module import DivergenceError

    # layer 0 trains normally; layer 1's absurd learning rate overflows float32 within an epoch
    with pytest.raises(DivergenceError, match=r"pretrain/layer1: .*NaN or infinite in epoch 0; lower the learning rate"):
        run(make_cfg(tmp_path, "finetune=none", "+pretrain.layers.1.lr=1e38"))
    saved = DBN.load(tmp_path / "dbn_pretrained.pt")
    assert torch.isfinite(saved.layers[0].weight).all()
    assert json.loads((tmp_path / "results.json").read_text())["pretrain"][0]["layer"] == 0
