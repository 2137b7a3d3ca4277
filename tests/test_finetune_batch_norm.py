"""Fine-tuning with batch normalisation (FineTuneModule(batch_norm=...), finetune.batch_norm): it starts as the
identity (or standard), normalises per unit or per map, and folds into the plain DBN exactly."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from dbn import DBN, RBM
from dbn.conv import ConvRBM
from dbn.data import DigitsDataModule
from dbn.data.base import batch_loader
from dbn.training.finetune import FineTuneModule
from dbn.training.pipeline import run
from tests.test_train import make_cfg


def _dense() -> DBN:
    torch.manual_seed(0)
    net = DBN([12, 7, 5], n_classes=3, hidden=["bernoulli", "relu"]).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p))
    return net


def _conv(pooling: str | None) -> DBN:
    torch.manual_seed(1)
    first = ConvRBM((1, 8, 8), 3, 3, pooling=pooling)
    layers = [first, ConvRBM(first.output_shape, 2, 2), RBM(2 * (first.output_shape[1] - 1) ** 2, 4)]
    net = DBN.from_layers(layers, n_classes=3).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.7)
    return net


NETS = {"dense": _dense, "conv-probabilistic": lambda: _conv("probabilistic"), "conv-max": lambda: _conv("max"),
        "conv-none": lambda: _conv(None)}


def _x(net: DBN, n: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, net.sizes[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _perturb(module: FineTuneModule) -> None:
    """Normalisations far from the identity, as after training."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for norm in module._batch_norms():
            n = norm.num_features
            norm.weight.copy_(torch.rand(n, generator=g, dtype=torch.float64) * 2 + 0.2)
            norm.bias.copy_(torch.randn(n, generator=g, dtype=torch.float64))
            norm.running_mean.copy_(torch.randn(n, generator=g, dtype=torch.float64))
            norm.running_var.copy_(torch.rand(n, generator=g, dtype=torch.float64) + 0.1)
    module._set_flag("norms_ready")


@pytest.mark.parametrize("make", NETS.values(), ids=NETS.keys())
def test_normalisation_starts_as_the_identity_in_training_and_evaluation_mode(make):
    net = make()
    plain = net(_x(net))
    module = FineTuneModule(net, batch_norm="identity").double()
    module._start_batch_norm(_x(net))
    module.eval()  # running statistics: the batch's
    torch.testing.assert_close(module(_x(net)), plain)
    module.train()  # batch statistics of the same batch (this updates the running ones: checked first)
    torch.testing.assert_close(module(_x(net)), plain)
    # and it is not a no-op: a normalisation that is not the identity changes the output
    with torch.no_grad():
        module.norms[0].bn.bias.add_(1.0)
    assert not torch.allclose(module(_x(net)), plain)


@pytest.mark.parametrize("make", NETS.values(), ids=NETS.keys())
def test_folding_reproduces_the_normalised_net_in_evaluation_mode(make):
    module = FineTuneModule(make(), batch_norm="identity").double().eval()
    _perturb(module)
    x = _x(module.dbn, seed=3)
    normalised = module(x)
    module.fold_batch_norm()
    assert bool(module.norms_folded)
    torch.testing.assert_close(module.dbn(x), normalised)  # the plain DBN, no normalisation left
    torch.testing.assert_close(module(x), normalised)  # the module no longer applies the folded norms
    module.fold_batch_norm()  # once only
    torch.testing.assert_close(module.dbn(x), normalised)


def test_conv_normalisation_is_per_map_over_batch_and_positions():
    """Probabilistic pooling keeps its hidden units in blocks; the statistics must still be each map's."""
    net = _conv("probabilistic")
    module = FineTuneModule(net, batch_norm="identity").double().train()
    rbm, norm = net.layers[0], module.norms[0]
    bn = norm.bn
    with torch.no_grad():
        bn.weight.fill_(1.0)
        bn.bias.zero_()
    pre = rbm.hidden_pre(_x(net))
    maps = rbm.hidden_maps(pre)  # (batch, K, H, W)
    mean, var = maps.mean((0, 2, 3), keepdim=True), maps.var((0, 2, 3), unbiased=False, keepdim=True)
    expected = (maps - mean) / (var + bn.eps).sqrt()
    torch.testing.assert_close(rbm.hidden_maps(norm(pre)), expected)


def test_fit_trains_the_normalisations_checkpoints_them_and_folds_at_the_end(tmp_path):
    net = DBN([12, 7, 5], n_classes=3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, 12, generator=g), torch.randint(0, 3, (96,), generator=g)
    module = FineTuneModule(net, batch_norm="identity", batch_size=16, steps_per_batch=2, optimizer=lambda p: torch.optim.Adam(p, lr=0.05))
    trainer = L.Trainer(max_epochs=3, default_root_dir=tmp_path, accelerator="cpu", logger=False)
    trainer.fit(module, train_dataloaders=batch_loader(x, y, batch_size=module.loader_batch_size, shuffle=True))
    ckpt = torch.load(next(tmp_path.rglob("*.ckpt")), weights_only=False)["state_dict"]
    assert {"norms.0.bn.weight", "norms.1.bn.running_var", "norms_ready", "norms_folded"} <= set(ckpt)
    assert bool(ckpt["norms_ready"]) and not bool(ckpt["norms_folded"])  # saved mid-fit: unfolded
    assert bool(module.norms_folded)  # on_fit_end folded it
    # the checkpoint's normalised net in evaluation mode is what the folded DBN computes
    unfolded = FineTuneModule(DBN([12, 7, 5], n_classes=3), batch_norm="identity").eval()
    unfolded.load_state_dict(ckpt)
    assert not torch.allclose(ckpt["norms.0.bn.weight"], unfolded.dbn.layers[0].hidden_bias.new_ones(7))  # it trained
    with torch.no_grad():
        torch.testing.assert_close(module.dbn.eval()(x), unfolded(x), atol=1e-5, rtol=1e-5)


def test_dbn_train_with_batch_norm_saves_a_plain_dbn_that_reproduces_the_test_accuracy(tmp_path):
    """The best epoch's checkpoint is loaded after the fit (unfolded), folded, tested and saved."""
    results = run(make_cfg(tmp_path, "finetune.batch_norm=identity"))
    model = DBN.load(tmp_path)
    dm = DigitsDataModule(seed=0)
    dm.setup()
    acc = (model.predict(dm.test_x) == dm.test_y).float().mean().item()
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert acc == pytest.approx(on_disk["finetune"]["test_acc"], abs=1e-6)
    assert results["finetune"]["best_checkpoint"] and acc > 0.5


def test_standard_start_is_pytorchs_and_still_folds_exactly():
    net = _dense()
    module = FineTuneModule(net, batch_norm="standard").double()
    module._start_batch_norm(_x(net))
    for norm in module._batch_norms():
        assert torch.equal(norm.weight, torch.ones_like(norm.weight)) and torch.equal(norm.bias, torch.zeros_like(norm.bias))
    module.train()
    out = module.dbn.layers[0].hidden_pre(_x(net))  # standardised per unit by the first layer's normalisation
    normalised = module.norms[0](out)
    torch.testing.assert_close(normalised.mean(0), torch.zeros(7, dtype=torch.float64), atol=1e-12, rtol=0)
    module.eval()
    _perturb(module)
    x = _x(net, seed=4)
    expected = module(x)
    module.fold_batch_norm()
    torch.testing.assert_close(module.dbn(x), expected)


@pytest.mark.parametrize("value", [True, "yes", 1])
def test_batch_norm_takes_identity_standard_or_nothing(value):
    with pytest.raises(ValueError, match="identity or standard"):
        FineTuneModule(_dense(), batch_norm=value)
    assert FineTuneModule(_dense(), batch_norm=False).batch_norm is None


def test_identity_start_without_pretraining_warns_before_training(tmp_path, caplog):
    from dbn.training import build

    with caplog.at_level("WARNING", logger="dbn.training.build"):
        build.check_config(make_cfg(tmp_path, "pretrain=none", "finetune.batch_norm=identity"))
    assert "use finetune.batch_norm=standard" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="dbn.training.build"):
        build.check_config(make_cfg(tmp_path, "pretrain=none", "finetune.batch_norm=standard"))
        build.check_config(make_cfg(tmp_path, "finetune.batch_norm=identity"))
    assert "batch_norm" not in caplog.text


def test_state_flags_come_back_with_a_loaded_state_dict():
    """A module loaded from a folded one must not normalise again: the flags the steps read (Python mirrors of the
    buffers) are read back from the state dict."""
    module = FineTuneModule(_dense(), batch_norm="identity").double().eval()
    _perturb(module)
    module.fold_batch_norm()
    fresh = FineTuneModule(_dense(), batch_norm="identity").double().eval()
    assert not fresh._flag("norms_folded")
    fresh.load_state_dict(module.state_dict())
    assert fresh._flag("norms_folded") and fresh._flag("norms_ready")
    x = _x(module.dbn, seed=4)
    torch.testing.assert_close(fresh(x), module.dbn(x))


@pytest.mark.parametrize("kwargs", [{"batch_norm": "identity"}, {"centering": True, "dropout": 0.2}])
def test_a_forward_pass_reads_no_tensor_on_the_host(kwargs, monkeypatch):
    """``bool(buffer)`` in a step would synchronise a GPU every step (STYLE: no host reads in a step)."""
    module = FineTuneModule(_dense(), **kwargs).double().train()
    x = _x(module.dbn)
    if kwargs.get("centering"):
        module._start_centering(x)
    else:
        module._start_batch_norm(x)
    reads = []
    real = torch.Tensor.__bool__
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda t: reads.append(t.shape) or real(t))
    module(x)
    monkeypatch.undo()
    assert reads == []
