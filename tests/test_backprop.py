"""The hand-derived fine-tuning gradient (dbn/backprop.py) against autograd, bit for bit, and where it is used."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from dbn import DBN
from dbn.backprop import closed_form_applies, cross_entropy_backward, smoothed_targets
from dbn.data.base import batch_loader
from dbn.training.finetune import FineTuneModule


def _net(sizes=(20, 16, 12), n_classes=5, visible="bernoulli", dtype=torch.float32, seed=0, hidden="bernoulli") -> DBN:
    torch.manual_seed(seed)
    net = DBN(list(sizes), n_classes=n_classes, visible=visible, hidden=hidden).to(dtype)
    with torch.no_grad():  # biases off zero, so that a bias gradient can be wrong
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def _autograd(net: DBN, x, y, dropout: float, eps: float, seed: int):
    torch.manual_seed(seed)
    logits = net(x, dropout=dropout)
    loss = F.cross_entropy(logits, smoothed_targets(y, logits, eps) if eps else y)
    loss.backward()
    return loss.detach(), logits.detach()


def _grads(net: DBN) -> dict:
    return {name: None if p.grad is None else p.grad.clone() for name, p in net.named_parameters()}


@pytest.mark.parametrize("case", ["plain", "dropout", "smoothing", "dropout+smoothing", "gaussian", "float64",
                                  "deep", "wide", "relu", "relu+bernoulli", "relu float64"])
def test_gradients_loss_and_logits_equal_autograds_bit_for_bit(case):
    sizes, batch, dtype, visible, hidden = (20, 16, 12), 37, torch.float32, "bernoulli", "bernoulli"
    dropout = 0.3 if "dropout" in case else 0.0
    eps = 0.1 if "smoothing" in case else 0.0
    if case == "gaussian":
        visible = "gaussian_learned"  # the first layer's inputs are scaled by exp(-log σ²)
    if "float64" in case:
        dtype = torch.float64
    if "relu" in case:  # rectified units: softplus means (F.softplus, as autograd records it), pre-activations > 20
        hidden, dropout = (["relu", "bernoulli"] if "+" in case else "relu"), 0.2
    if case == "deep":
        sizes, dropout = (20, 16, 12, 9, 7), 0.2
    if case == "wide":  # the recipe's shapes, two threads' products
        sizes, batch, dropout = (784, 500, 500, 2000), 100, 0.2
    reference, ours = (_net(sizes, visible=visible, dtype=dtype, hidden=hidden) for _ in range(2))
    if "relu" in case:  # some pre-activations beyond softplus's threshold (20), where its backward is the identity
        for net in (reference, ours):
            with torch.no_grad():
                net.layers[0].hidden_bias[:3] = 25.0
    for net in (reference, ours):  # fine-tuning trains weights and hidden biases only (FineTuneModule.setup)
        for rbm in net.layers:
            rbm.visible_bias.requires_grad_(False)
        if visible != "bernoulli":
            with torch.no_grad():
                net.layers[0].log_variance.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(1))
            net.layers[0].log_variance.requires_grad_(False)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(batch, sizes[0], generator=g, dtype=dtype)
    y = torch.randint(0, 5, (batch,), generator=g)
    loss_ref, logits_ref = _autograd(reference, x, y, dropout, eps, seed=3)
    torch.manual_seed(3)
    loss, logits = cross_entropy_backward(ours, x, y, dropout, eps)
    assert torch.equal(loss, loss_ref) and torch.equal(logits, logits_ref)
    expected, got = _grads(reference), _grads(ours)
    assert expected.keys() == got.keys()
    for name in expected:
        if expected[name] is None:
            assert got[name] is None, name
        else:
            assert got[name] is not None and torch.equal(got[name], expected[name]), name
    assert any(v is not None and v.abs().sum() > 0 for v in got.values())


@pytest.mark.parametrize("hidden", ["bernoulli", "relu"])
@pytest.mark.parametrize("frozen", [[0], [1], [0, 1]])
def test_frozen_layers_get_no_gradient_and_the_rest_autograds(frozen, hidden):
    """A frozen bottom layer's output is not differentiated: rectified units' softplus takes its faster form there,
    in both."""
    reference, ours = _net(hidden=hidden), _net(hidden=hidden)
    for net in (reference, ours):
        for rbm in net.layers:
            rbm.visible_bias.requires_grad_(False)
        for i in frozen:
            net.layers[i].weight.requires_grad_(False)
            net.layers[i].hidden_bias.requires_grad_(False)
    x, y = torch.rand(8, 20), torch.randint(0, 5, (8,))
    _autograd(reference, x, y, 0.2, 0.0, seed=4)
    torch.manual_seed(4)
    cross_entropy_backward(ours, x, y, 0.2, 0.0)
    expected, got = _grads(reference), _grads(ours)
    for name in expected:
        assert (got[name] is None) == (expected[name] is None), name
        if expected[name] is not None:
            assert torch.equal(got[name], expected[name]), name
    assert all(got[f"layers.{i}.weight"] is None for i in frozen)


def test_gradients_accumulate_into_existing_ones_as_autograds_do():
    reference, ours = _net(), _net()
    x, y = torch.rand(8, 20), torch.randint(0, 5, (8,))
    for _ in range(2):
        _autograd(reference, x, y, 0.0, 0.1, seed=0)
        cross_entropy_backward(ours, x, y, 0.0, 0.1)
    for name, grad in _grads(reference).items():
        if grad is not None:
            torch.testing.assert_close(_grads(ours)[name], grad, rtol=0, atol=1e-7)


def test_nets_it_does_not_cover_are_named_and_refused():
    from dbn.conv import ConvRBM

    assert closed_form_applies(_net())
    assert closed_form_applies(DBN([20, 16, 8], n_classes=3, hidden=["relu", "bernoulli"]))
    conv = DBN.from_layers([ConvRBM((1, 8, 8), 4, 3)], n_classes=3)
    assert not closed_form_applies(conv)
    assert not closed_form_applies(DBN([20, 16]))  # no head
    with pytest.raises(ValueError, match="dense layers of bernoulli or relu hidden units"):
        cross_entropy_backward(conv, torch.rand(4, 64), torch.zeros(4, dtype=torch.int64))


def _fit(monkeypatch, closed_form: bool, accelerator: str = "cpu", **kwargs) -> tuple[DBN, FineTuneModule, int, L.Trainer]:
    net = _net()
    torch.manual_seed(5)
    module = FineTuneModule(net, optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), dropout=0.2, input_dropout=0.1,
                            label_smoothing=0.1, batch_size=16, steps_per_batch=3, **kwargs)
    calls = {"closed": 0}
    real = FineTuneModule._closed_form_backward

    def counted(self, batch):
        calls["closed"] += 1
        return real(self, batch)

    monkeypatch.setattr(FineTuneModule, "_closed_form_backward", counted)
    if not closed_form:
        monkeypatch.setattr(FineTuneModule, "_closed_form", lambda self: False)
    g = torch.Generator().manual_seed(6)
    x, y = torch.rand(96, 20, generator=g), torch.randint(0, 5, (96,), generator=g)
    trainer = L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_model_summary=False,
                        accelerator=accelerator, devices=1)
    trainer.fit(module, batch_loader(x, y, batch_size=module.loader_batch_size, shuffle=True))
    monkeypatch.undo()
    return net, module, calls["closed"], trainer


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("accelerator", ["cpu", pytest.param("gpu", marks=CUDA, id="cuda")])
def test_a_fine_tuning_run_is_the_same_run_with_or_without_autograd(monkeypatch, accelerator):
    ours, _, closed, trainer = _fit(monkeypatch, closed_form=True, accelerator=accelerator)
    reference, _, none, reference_trainer = _fit(monkeypatch, closed_form=False, accelerator=accelerator)
    assert closed == 3 * 6 and none == 0  # 96 rows, 16 a step, 3 epochs: every step took the closed form
    for (name, a), b in zip(ours.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name
    for key in ("finetune/train/loss", "finetune/train/acc"):
        assert torch.equal(trainer.callback_metrics[key], reference_trainer.callback_metrics[key]), key


def test_the_closed_form_is_used_only_where_it_covers_the_run():
    module = FineTuneModule(_net())
    assert not module._closed_form()  # no trainer
    module._trainer = type("T", (), {"precision": "32-true", "world_size": 1})()
    assert module._closed_form()
    module._trainer.precision = "bf16-mixed"  # autocast: autograd's path
    assert not module._closed_form()
    module._trainer.precision, module._trainer.world_size = "32-true", 2  # DDP averages gradients in backward
    assert not module._closed_form()
    for kwargs in ({"centering": True}, {"batch_norm": "identity"}):
        other = FineTuneModule(_net(), **kwargs)
        other._trainer = type("T", (), {"precision": "32-true", "world_size": 1})()
        assert not other._closed_form(), kwargs


@CUDA
@pytest.mark.parametrize("hidden", ["bernoulli", "relu"])
def test_on_cuda_the_gradients_are_autograds_bit_for_bit_too(hidden):
    """The same kernels on the GPU (cuBLAS products, the CUDA backward kernels): the run is the same run there too."""
    reference, ours = (_net((784, 500, 500, 2000), n_classes=10, hidden=hidden).cuda() for _ in range(2))
    for net in (reference, ours):
        for rbm in net.layers:
            rbm.visible_bias.requires_grad_(False)
    g = torch.Generator(device="cuda").manual_seed(2)
    x = torch.rand(100, 784, generator=g, device="cuda")
    y = torch.randint(0, 10, (100,), generator=g, device="cuda")
    loss_ref, logits_ref = _autograd(reference, x, y, 0.2, 0.1, seed=3)
    torch.manual_seed(3)
    loss, logits = cross_entropy_backward(ours, x, y, 0.2, 0.1)
    assert torch.equal(loss, loss_ref) and torch.equal(logits, logits_ref)
    for (name, a), b in zip(reference.named_parameters(), ours.parameters()):
        assert (a.grad is None and b.grad is None) or torch.equal(a.grad, b.grad), name
