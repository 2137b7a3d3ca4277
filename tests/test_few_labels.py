"""Few labels: a class-balanced labelled subset for fine-tuning, and fine-tuning from another run's pretrained layers."""

from __future__ import annotations

import pytest
import torch

from dbn import DBN
from dbn.data import DataError, DigitsDataModule
from dbn.data.base import balanced_subset
from dbn.errors import ConfigError
from dbn.training import pipeline
from dbn.training.pipeline import run
from tests.test_train import make_cfg


def test_balanced_subset_takes_equal_shares_of_each_class_reproducibly():
    y = torch.arange(1000) % 7
    idx = balanced_subset(y, 30, torch.Generator().manual_seed(0))
    counts = torch.bincount(y[idx], minlength=7)
    assert len(idx) == len(set(idx.tolist())) == 30 and counts.max() - counts.min() <= 1
    assert torch.equal(idx, balanced_subset(y, 30, torch.Generator().manual_seed(0)))
    assert not torch.equal(idx, balanced_subset(y, 30, torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("n, msg", [(3, "between the number of classes"), (2000, "between the number of classes")])
def test_balanced_subset_refuses_impossible_sizes(n, msg):
    with pytest.raises(DataError, match=msg):
        balanced_subset(torch.arange(1000) % 7, n, torch.Generator())


def test_labelled_limits_finetuning_batches_but_not_pretraining_data():
    dm = DigitsDataModule(seed=0, labelled=50, batch_size=1000)
    dm.setup()
    (x, y), = list(dm.train_dataloader())
    assert len(x) == 50 and torch.bincount(y).tolist() == [5] * 10
    assert len(dm.train_x) > 1000  # greedy pretraining reads train_x: every training image
    assert dm.describe()["n_labelled"] == 50
    with pytest.raises(DataError, match="labelled must be"):
        DigitsDataModule(labelled=0)


def test_finetuning_from_another_runs_pretrained_layers(tmp_path, monkeypatch):
    run(make_cfg(tmp_path / "pre", "finetune=none"))
    source = DBN.load(tmp_path / "pre" / "dbn_pretrained.pt")
    seen = {}
    real_finetune = pipeline.finetune

    def spy(cfg, model, dm, run_dir):
        seen["weights"] = [rbm.weight.detach().clone() for rbm in model.layers]
        seen["n_batches"] = sum(len(b[0]) for b in dm.train_dataloader())
        return real_finetune(cfg, model, dm, run_dir)

    monkeypatch.setattr(pipeline, "pretrain_layers", lambda *a, **k: pytest.fail("pretrained again"))
    monkeypatch.setattr(pipeline, "finetune", spy)
    results = run(make_cfg(tmp_path / "few", f"pretrain.init_from={tmp_path / 'pre'}", "+data.labelled=100"))
    assert results["pretrained_from"] == str(tmp_path / "pre") and results["data"]["n_labelled"] == 100
    assert all(torch.equal(w, rbm.weight) for w, rbm in zip(seen["weights"], source.layers))
    assert seen["n_batches"] == 100
    # the run keeps the stack it started from, so that it can be the init_from of another run in turn
    again = DBN.load(tmp_path / "few" / "dbn_pretrained.pt")
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(again.layers, source.layers))
    chained = run(make_cfg(tmp_path / "chained", f"pretrain.init_from={tmp_path / 'few'}", "finetune=none"))
    assert chained["pretrained_from"] == str(tmp_path / "few")
    with pytest.raises(ConfigError, match="init_from=.* holds a .* stack but this run builds"):
        run(make_cfg(tmp_path / "bad", f"pretrain.init_from={tmp_path / 'pre'}", "model.hidden=[32,8]"))
