"""The run directory has one owner (dbn.rundir), and greedy pretraining hands back each layer's results."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from dbn import DBN
from dbn.rundir import CONFIG, MODEL, PRETRAINED, PROGRESS, RESULTS, RunDir
from dbn.training import greedy_pretrain, layer_schedules
from dbn.training.pretrain import pretrain_layers

PACKAGE = Path(__file__).resolve().parents[1] / "dbn"


def test_only_the_rundir_module_spells_the_run_directory_layout():
    names = [CONFIG, RESULTS, MODEL, PRETRAINED, PROGRESS, "eval.json", "samples.png", "-last.ckpt"]
    spelled = {}
    for path in PACKAGE.rglob("*.py"):
        code = re.sub(r'"""(.*?)"""', "", path.read_text(), flags=re.S)  # docstrings may describe the layout
        code = "\n".join(line.split("#")[0] for line in code.splitlines())  # so may comments
        found = [name for name in names if name in code]
        if found:
            spelled[str(path.relative_to(PACKAGE))] = found
    assert list(spelled) == ["rundir.py"], spelled


def test_rundir_names_and_loading(tmp_path):
    run = RunDir(tmp_path)
    assert (run.config, run.results, run.model, run.pretrained) == (
        tmp_path / "config.yaml", tmp_path / "results.json", tmp_path / "dbn.pt", tmp_path / "dbn_pretrained.pt")
    assert run.progress == tmp_path / "resume" / "progress.pt"
    assert run.stage_checkpoint("pretrain-layer1") == tmp_path / "resume" / "pretrain-layer1-last.ckpt"
    assert not run.has_trained_work()
    with pytest.raises(FileNotFoundError, match="is .* a dbn-train run directory"):
        run.load_config()
    stack, tuned = DBN([6, 4, 3]), DBN([6, 4, 3])
    tuned.add_head(2)
    stack.save(run.pretrained)
    tuned.save(run.model)
    assert run.load_model().head is not None and run.load_model(pretrained=True).head is None
    run.write_results({"a": 1.5})
    assert run.read_results() == {"a": 1.5}


def test_a_layer_added_on_the_command_line_beside_yaml_layers_hashes_and_applies():
    """``+pretrain.layers.2.lr=...`` (conf/pretrain's documented form) beside the recipe's YAML ``layers: {0:, 1:}``
    mixes a string key with integer ones: the config hash used to fail on it (json cannot sort them)."""
    from hydra import compose, initialize_config_module

    from dbn.rundir import config_hash
    from dbn.training.build import PRETRAIN_EXTRA, schedules

    with initialize_config_module("dbn.conf", version_base="1.3"):
        plain = compose("train", overrides=["experiment=fashion_mnist_conv"])
        added = compose("train", overrides=["experiment=fashion_mnist_conv", "+pretrain.layers.2.lr=0.005"])
        changed = compose("train", overrides=["experiment=fashion_mnist_conv", "pretrain.layers.0.lr=0.0005"])
    assert len(config_hash(added)) == 12 and config_hash(added) != config_hash(plain)
    assert [s["lr"] for s in schedules(added, 3)] == [0.002, 0.002, 0.005]
    # the recipe quotes its indices, so the command line's plain override reaches them
    assert [s["lr"] for s in schedules(changed, 3)] == [0.0005, 0.002, 0.05]
    # an unquoted YAML index and the command line's string index name one layer twice: refused, naming the fix
    shared = {k: v for k, v in OmegaConf.to_container(plain.pretrain).items() if k not in PRETRAIN_EXTRA}
    with pytest.raises(ValueError, match=r"layer 0 is given twice, as 0 and '0'; quote the index in YAML"):
        layer_schedules(shared, {0: {"lr": 0.1}, "0": {"lr": 0.2}}, 3)


def test_pretrain_layers_yields_each_layer_before_training_the_next():
    torch.manual_seed(0)
    x = (torch.rand(64, 6) < 0.4).float()
    model = DBN([6, 5, 4])
    schedules = layer_schedules({"epochs": 1, "batch_size": 16}, None, 2)
    made = []

    def trainer_for(i: int, schedule: dict) -> L.Trainer:
        made.append((i, schedule["epochs"], schedule["batch_size"]))
        return L.Trainer(max_epochs=schedule["epochs"], logger=False, enable_checkpointing=False, enable_model_summary=False,
                         accelerator="cpu", limit_val_batches=0)  # no held-out data here

    layers = pretrain_layers(model, x, None, schedules, trainer_for)
    first = next(layers)
    assert made == [(0, 1, 16)] and first["layer"] == 0 and first["n_hidden"] == 5  # layer 1 not started yet
    second = next(layers)
    assert made == [(0, 1, 16), (1, 1, 16)] and second["n_visible"] == 5 and "train/recon_error" in second
    with pytest.raises(StopIteration):
        next(layers)
    assert [r["layer"] for r in greedy_pretrain(DBN([6, 5, 4]), x, None, schedules, trainer_for)] == [0, 1]
