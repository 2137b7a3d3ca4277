"""Centered fine-tuning (FineTuneModule(centering=True)) against Adam on the explicitly standardised network."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from dbn import DBN, RBM
from dbn.conv import ConvRBM
from dbn.data.base import batch_loader
from dbn.training.finetune import FineTuneModule


def _dense() -> DBN:
    torch.manual_seed(0)
    net = DBN([12, 7, 5], n_classes=3).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p))
    return net


def _conv() -> DBN:
    torch.manual_seed(1)
    layers = [ConvRBM((1, 8, 8), 3, 3, pooling="probabilistic"), ConvRBM((3, 3, 3), 2, 2), RBM(8, 4)]
    net = DBN.from_layers(layers, n_classes=3).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.7)
    return net


def _data(net: DBN, n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, net.sizes[0], generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def _centered(module: FineTuneModule) -> list[tuple[torch.nn.Module, torch.Tensor, torch.Tensor]]:
    """(layer, μ per flattened input, scale) of every centered layer, as the module measured them."""
    mods = list(module.dbn.layers[1:]) + [module.dbn.head]
    out = []
    for i, m in enumerate(mods):
        mean, scale = module.get_buffer(f"center_mean_{i}"), module.get_buffer(f"center_scale_{i}")
        if getattr(m, "convolutional", False):
            _, h, w = m.in_shape
            mean = mean.repeat_interleave(h * w)
        out.append((m, mean, scale))
    return out


def _reference_steps(module: FineTuneModule, batches, lr: float) -> DBN:
    """Adam on the network whose centered layers see s·(h - μ): parameters V = W/s, d = c + W μ; mapped back after."""
    ref = copy.deepcopy(module.dbn)
    stats = [(mean, scale) for _, mean, scale in _centered(module)]
    rbms = list(ref.layers[1:]) + [ref.head]
    with torch.no_grad():
        for m, (mean, scale) in zip(rbms, stats):
            weight, bias = m.weight, (m.bias if isinstance(m, torch.nn.Linear) else m.hidden_bias)
            flat = weight.flatten(1) if weight.dim() == 2 else None
            shift = flat @ mean if flat is not None else _conv_shift(m, weight, mean)
            bias.add_(shift)
            weight.div_(scale)

    def forward(x):
        h = ref.layers[0].output(x)
        for m, (mean, scale) in zip(rbms[:-1], stats[:-1]):
            h = m.output(scale * (h - mean))
        mean, scale = stats[-1]
        return ref.head(scale * (h - mean))

    params = [p for rbm in ref.layers for p in (rbm.weight, rbm.hidden_bias)] + list(ref.head.parameters())
    opt = torch.optim.Adam(params, lr=lr, eps=1e-30)
    for x, y in batches:
        opt.zero_grad()
        F.cross_entropy(forward(x), y).backward()
        opt.step()
    with torch.no_grad():  # back to the plain parametrization: W = s V, c = d - W μ
        for m, (mean, scale) in zip(rbms, stats):
            weight, bias = m.weight, (m.bias if isinstance(m, torch.nn.Linear) else m.hidden_bias)
            weight.mul_(scale)
            bias.sub_(weight @ mean if weight.dim() == 2 else _conv_shift(m, weight, mean))
    return ref


def _conv_shift(m: ConvRBM, weight: torch.Tensor, mean_flat: torch.Tensor) -> torch.Tensor:
    """W ⋆ μ for a constant map per channel: Σ_{c,i,j} W[k, c, i, j] μ_c."""
    c, h, w = m.in_shape
    return weight.sum((2, 3)) @ mean_flat.view(c, h * w)[:, 0]


def _module_steps(module: FineTuneModule, batches, lr: float) -> None:
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, eps=1e-30)
    for x, y in batches:
        def closure(x=x, y=y):
            opt.zero_grad()
            loss = F.cross_entropy(module(x), y)
            loss.backward()
            return loss

        module._optimizer_step(opt, closure)  # what training_step calls


@pytest.mark.parametrize("make", [_dense, _conv], ids=["dense", "conv"])
def test_centered_steps_equal_adam_on_the_standardised_network(make):
    net = make()
    module = FineTuneModule(net, centering=True)
    x0, _ = _data(net, seed=0)
    module._start_centering(x0)
    assert bool(module.center_ready)
    batches = [_data(net, n=16, seed=s) for s in (1, 2, 3)]
    ref = _reference_steps(module, batches, lr=0.05)
    _module_steps(module, batches, lr=0.05)
    for (name, got), (_, want) in zip(module.dbn.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10, msg=name)
    # and the step is not the plain one: without centering Adam lands elsewhere
    plain = FineTuneModule(make())
    opt = torch.optim.Adam([p for p in plain.parameters() if p.requires_grad], lr=0.05, eps=1e-30)
    for x, y in batches:
        opt.zero_grad()
        F.cross_entropy(plain(x), y).backward()
        opt.step()
    assert (plain.dbn.head.weight - module.dbn.head.weight).abs().max() > 1e-3


def test_statistics_are_the_layer_inputs_mean_per_map_and_inverse_std():
    net = _conv()
    module = FineTuneModule(net, centering=True)
    x, _ = _data(net)
    module._start_centering(x)
    with torch.no_grad():
        h1 = net.layers[0].output(x)  # (40, 3·3·3): pooled maps, the second conv layer's input
        h2 = net.layers[1].output(h1)  # (40, 8): the dense layer's input
        h3 = net.layers[2].output(h2)  # (40, 4): the head's input
    torch.testing.assert_close(module.center_mean_0, h1.view(40, 3, 9).mean((0, 2)))
    torch.testing.assert_close(module.center_mean_1, h2.view(40, 2, 4).mean((0, 2)).repeat_interleave(4))
    torch.testing.assert_close(module.center_mean_2, h3.mean(0))
    for i, h in enumerate((h1, h2, h3)):
        torch.testing.assert_close(module.get_buffer(f"center_scale_{i}"), 1 / h.std(unbiased=False))


def test_network_function_is_unchanged_by_centering():
    net = _dense()
    x, _ = _data(net)
    before = net(x).detach().clone()
    module = FineTuneModule(net, centering=True)
    module._start_centering(x)
    torch.testing.assert_close(module(x), before)


def test_centered_dropout_drops_to_the_mean_not_to_zero():
    """With centering, dropout acts on h - μ: a dropped unit feeds its layer μ (the centered input 0), a kept one
    μ + (h - μ)/(1 - p); without centering the same draws give 0 and h/(1 - p)."""
    p = 0.5
    net = _conv()
    x, _ = _data(net, n=8)
    module = FineTuneModule(net, centering=True, dropout=p)
    module._start_centering(x)
    module.train()
    means = [mean for _, mean, _ in _centered(module)]  # per flattened input of layers 1, 2 and the head
    for centered in (True, False):
        torch.manual_seed(5)
        got = module(x) if centered else FineTuneModule(net, dropout=p).train()(x)
        torch.manual_seed(5)  # the same draws, by hand: _dropout's uniform numbers, kept where >= p
        h = x
        for rbm, mean in zip(net.layers, means):
            h = rbm.output(h)
            keep = torch.rand(h.shape, dtype=h.dtype) >= p
            h = torch.where(keep, mean + (h - mean) / (1 - p), mean) if centered else torch.where(keep, h / (1 - p), 0.0)
        torch.testing.assert_close(got, net.head(h))
    module.eval()  # no dropout at evaluation: the plain network
    torch.testing.assert_close(module(x), net(x))


def test_centering_refuses_lbfgs():
    module = FineTuneModule(_dense(), centering=True, optimizer=lambda p: torch.optim.LBFGS(p))
    with pytest.raises(ValueError, match="L-BFGS"):
        module.configure_optimizers()


def test_centered_fit_measures_once_and_checkpoints_the_statistics(tmp_path):
    net = DBN([12, 7, 5], n_classes=3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 12, generator=g), torch.randint(0, 3, (64,), generator=g)
    module = FineTuneModule(net, centering=True, batch_size=16, steps_per_batch=2, dropout=0.2)
    trainer = L.Trainer(max_epochs=2, default_root_dir=tmp_path, accelerator="cpu", logger=False)
    trainer.fit(module, train_dataloaders=batch_loader(x, y, batch_size=module.loader_batch_size, shuffle=True))
    assert bool(module.center_ready)
    measured = module.center_mean_0.clone()
    ckpt = torch.load(next(tmp_path.rglob("*.ckpt")), weights_only=False)["state_dict"]
    assert {"center_mean_0", "center_scale_0", "center_mean_1", "center_scale_1", "center_ready"} <= set(ckpt)
    torch.testing.assert_close(ckpt["center_mean_0"], measured)
    assert torch.isfinite(module.dbn.head.weight).all()


def test_a_resumed_centered_fit_ends_where_an_uninterrupted_one_ends(tmp_path):
    """The statistics and the flag that they are set come back from the epoch checkpoint: the resumed fit neither
    measures them again on its first batch nor drops units to 0 instead of their means."""
    from dbn.training import resume

    x, y = _data(_dense(), n=96)

    def fit(epochs: int, ckpt) -> FineTuneModule:
        L.seed_everything(0, verbose=False)
        module = FineTuneModule(_dense(), centering=True, dropout=0.2, batch_size=16,
                                optimizer=lambda p: torch.optim.Adam(p, lr=0.01)).double()
        trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_model_summary=False,
                            precision="64-true")
        trainer.fit(module, train_dataloaders=batch_loader(x, y, batch_size=16, shuffle=True),
                    **resume.attach(trainer, ckpt))
        return module

    straight = fit(4, tmp_path / "a.ckpt")
    fit(2, tmp_path / "b.ckpt")  # "killed" after two epochs
    resumed = fit(4, tmp_path / "b.ckpt")
    assert resumed._flag("center_ready")
    assert not torch.equal(straight.dbn.layers[0].weight, _dense().layers[0].weight)  # it trained
    for (name, p), q in zip(straight.dbn.state_dict().items(), resumed.dbn.state_dict().values()):
        assert torch.equal(p, q), name
