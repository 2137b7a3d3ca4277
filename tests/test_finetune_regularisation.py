"""Fine-tuning regularisers and options: input dropout, label smoothing, per-layer learning rates (layer_lr), weight
averaging; against their definitions."""

from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from dbn import DBN
from dbn.data.base import batch_loader
from dbn.training.finetune import FineTuneModule


def _module(**kwargs) -> FineTuneModule:
    torch.manual_seed(0)
    return FineTuneModule(DBN([20, 12, 6], n_classes=4), **kwargs)


def _inputs_seen(module: FineTuneModule, x: torch.Tensor) -> torch.Tensor:
    """What the DBN's bottom layer receives from ``module(x)``."""
    seen = []
    real_up = module.dbn.up

    def spy(inp, *args, **kwargs):
        seen.append(inp.detach().clone())
        return real_up(inp, *args, **kwargs)

    module.dbn.up = spy
    module(x)
    module.dbn.up = real_up
    return seen[0]


def test_input_dropout_zeroes_a_fraction_p_and_rescales_the_rest_in_training_only():
    p = 0.3
    module = _module(input_dropout=p)
    x = torch.rand(500, 20) * 0.9 + 0.1  # no zeros of its own
    module.train()
    seen = _inputs_seen(module, x)
    dropped = seen == 0
    n = dropped.numel()
    assert abs(dropped.sum().item() - p * n) < 4 * (n * p * (1 - p)) ** 0.5  # Binomial(n, p): ±4 sd
    torch.testing.assert_close(seen[~dropped], x[~dropped] / (1 - p))  # inverted dropout: E[input] unchanged
    module.eval()
    assert torch.equal(_inputs_seen(module, x), x)


def test_label_smoothing_trains_on_the_smoothed_targets_and_reports_plain_validation_loss():
    eps, k = 0.1, 4
    module = _module(label_smoothing=eps)
    module.eval()  # no dropout: the logits below are the ones the step sees
    x, y = torch.rand(64, 20), torch.randint(0, k, (64,))
    logp = F.log_softmax(module(x), -1)
    nll = -logp.gather(1, y[:, None]).mean()
    smoothed = (1 - eps) * nll + eps * (-logp.mean(1)).mean()  # targets (1 - eps) one-hot + eps / k uniform
    module.log = lambda *a, **k: None
    torch.testing.assert_close(module._shared_step((x, y), "train"), smoothed)
    torch.testing.assert_close(module._shared_step((x, y), "val"), nll)
    assert abs(smoothed - nll) > 1e-3  # the check can fail: the two losses differ here


@pytest.mark.parametrize("kwargs", [{"input_dropout": 1.0}, {"input_dropout": -0.1}, {"label_smoothing": 1.0}])
def test_out_of_range_regularisers_are_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        _module(**kwargs)


def test_weight_averaging_callback_from_config_tests_and_saves_the_averaged_weights(tmp_path):
    """``+callbacks.finetune.ema`` (Lightning's EMAWeightAveraging): validation, the best checkpoint,
    the test score and dbn.pt all use the averaged weights; the rolling checkpoint keeps both."""
    from dbn.data import DigitsDataModule
    from dbn.training.pipeline import run
    from tests.test_train import make_cfg

    results = run(make_cfg(tmp_path, "+callbacks.finetune.ema._target_=lightning.pytorch.callbacks.EMAWeightAveraging",
                           "+callbacks.finetune.ema.decay=0.9"))
    last = torch.load(tmp_path / "resume" / "finetune-last.ckpt", map_location="cpu", weights_only=True)
    key = "dbn.layers.0.weight"
    averaged, current = last["state_dict"][key], last["current_model_state"][key]
    assert not torch.allclose(averaged, current)  # the check can fail: the average is not the last iterate
    best = torch.load(results["finetune"]["best_checkpoint"], map_location="cpu", weights_only=True)
    assert not torch.allclose(best["state_dict"][key], best["current_model_state"][key])
    saved = DBN.load(tmp_path)
    assert torch.equal(saved.layers[0].weight, best["state_dict"][key])  # dbn.pt = the best epoch's average
    dm = DigitsDataModule(seed=0)
    dm.setup()
    acc = (saved.predict(dm.test_x) == dm.test_y).float().mean().item()
    assert acc == pytest.approx(results["finetune"]["test_acc"], abs=1e-6) and acc > 0.5


def test_a_weight_average_that_would_keep_much_of_the_start_is_warned_of_before_fine_tuning(tmp_path, caplog):
    """The dense recipe's decay 0.999 suits its 50 epochs (2,750 averaging updates keep 6% of the first one's
    weights) but not 5 of them (275 updates keep 76%: a 5-epoch run of it tested 33%): the warning names the key and a
    decay that fits, and comes before fine-tuning starts."""
    import logging

    from hydra import compose, initialize_config_module

    from dbn.training.build import weight_averaging_warnings
    from dbn.training.pipeline import run
    from tests.test_train import make_cfg

    with initialize_config_module("dbn.conf", version_base="1.3"):
        recipe = compose("train", overrides=["run_dir=unused", "experiment=fashion_mnist_dbn"])
        plain = compose("train", overrides=["run_dir=unused"])
    assert weight_averaging_warnings(recipe, 55 * 50) == []  # 55 Lightning batches of 1,000 rows an epoch
    (message,) = weight_averaging_warnings(recipe, 55 * 5)
    assert "callbacks.finetune.ema" in message and "76%" in message and "callbacks.finetune.ema.decay=0.991" in message
    assert 0.991 ** 274 <= 0.1 < 0.992 ** 274  # the suggested decay is the largest (to 3 places) that fits
    assert weight_averaging_warnings(plain, 10) == []  # no averaging configured

    steps = ["pretrain.epochs=1", "finetune.epochs=2", "+callbacks.finetune.ema._target_=lightning.pytorch.callbacks.EMAWeightAveraging"]
    with caplog.at_level(logging.WARNING, logger="dbn.training.build"):
        run(make_cfg(tmp_path / "short", *steps, "+callbacks.finetune.ema.decay=0.999"))
    warned = [r.getMessage() for r in caplog.records if "callbacks.finetune.ema:" in r.getMessage()]
    assert len(warned) == 1 and "decay 0.999" in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dbn.training.build"):
        run(make_cfg(tmp_path / "fits", *steps, "+callbacks.finetune.ema.decay=0.5"))
    assert not [r for r in caplog.records if "callbacks.finetune.ema:" in r.getMessage()]


def test_default_finetune_optimizer_is_fused_adam_with_the_same_updates_as_torchs_default_adam():
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    with initialize_config_module("dbn.conf", version_base="1.3"):
        cfg = compose("train", overrides=["run_dir=unused"])
    nets = []
    for fused in (True, False):
        torch.manual_seed(0)
        net = DBN([20, 12, 6], n_classes=4)
        opt = instantiate(cfg.finetune.optimizer)(net.parameters()) if fused else torch.optim.Adam(net.parameters(), lr=1e-3)
        assert opt.defaults["fused"] is (True if fused else None)
        g = torch.Generator().manual_seed(1)
        for _ in range(20):
            x, y = torch.rand(16, 20, generator=g), torch.randint(0, 4, (16,), generator=g)
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
        nets.append(net)
    torch.manual_seed(0)
    start = DBN([20, 12, 6], n_classes=4)
    assert (nets[0].layers[0].weight - start.layers[0].weight).abs().max() > 1e-3  # 20 steps moved the weights
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.5])
def test_smoothed_targets_give_torchs_label_smoothing_loss_and_gradient(eps):
    from dbn.backprop import smoothed_targets

    logits = torch.randn(32, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 7, (32,), generator=torch.Generator().manual_seed(2))
    ours = F.cross_entropy(logits, smoothed_targets(y, logits, eps))
    (g_ours,) = torch.autograd.grad(ours, logits)
    theirs = F.cross_entropy(logits, y, label_smoothing=eps)
    (g_theirs,) = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(g_ours, g_theirs)
    assert torch.allclose(smoothed_targets(y, logits, eps).sum(1), torch.ones(32, dtype=torch.float64))


def _one_sgd_step(module: FineTuneModule) -> tuple[dict, dict]:
    """(gradients, parameter changes) by name of one optimizer step of ``module`` on a fixed batch."""
    module.setup("fit")
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(16, 20, generator=g), torch.randint(0, 4, (16,), generator=g)
    opt.zero_grad()
    F.cross_entropy(module(x), y).backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    opt.step()
    module.teardown("fit")
    return grads, {n: p.detach() - before[n] for n, p in module.named_parameters()}


def test_layer_lr_scales_each_layers_step_and_zero_freezes_it():
    lr = 0.1
    module = _module(optimizer=partial(torch.optim.SGD, lr=lr), layer_lr=[0, 0.5])
    grads, steps = _one_sgd_step(module)
    for name in ("dbn.layers.0.weight", "dbn.layers.0.hidden_bias"):
        assert name not in grads and torch.equal(steps[name], torch.zeros_like(steps[name]))  # frozen: no gradient
    for name, factor in (("dbn.layers.1.weight", 0.5), ("dbn.layers.1.hidden_bias", 0.5), ("dbn.head.weight", 1.0),
                         ("dbn.head.bias", 1.0)):
        assert grads[name].abs().max() > 1e-4  # the check can fail: these gradients are not zero
        torch.testing.assert_close(steps[name], -lr * factor * grads[name])
    assert all(p.requires_grad for p in module.dbn.parameters())  # given back after the fit


def test_layer_lr_one_number_scales_the_stack_and_the_scheduler_starts_from_the_scaled_rates():
    module = _module(optimizer=partial(torch.optim.Adam, lr=0.01), layer_lr=0.25,
                     scheduler=partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=10))
    module.setup("fit")
    config = module.configure_optimizers()
    lrs = {id(p): g["lr"] for g in config["optimizer"].param_groups for p in g["params"]}
    assert lrs[id(module.dbn.layers[0].weight)] == lrs[id(module.dbn.layers[1].hidden_bias)] == pytest.approx(0.0025)
    assert lrs[id(module.dbn.head.weight)] == pytest.approx(0.01)
    assert sorted(config["lr_scheduler"]["scheduler"].base_lrs) == pytest.approx([0.0025, 0.01])


@pytest.mark.parametrize("value", [[1.0], [1, -0.5], "fast", [1, float("nan")], True])
def test_layer_lr_refuses_a_wrong_length_or_negative_factors(value):
    with pytest.raises(ValueError, match="layer_lr must be null, a number >= 0 or a list of 2 numbers"):
        _module(layer_lr=value)


def test_layer_lr_with_lbfgs_may_only_freeze_layers():
    _module(optimizer=partial(torch.optim.LBFGS, lr=1), layer_lr=[0, 1])  # freezing: one group, accepted
    with pytest.raises(ValueError, match="L-BFGS takes one learning rate"):
        _module(optimizer=partial(torch.optim.LBFGS, lr=1), layer_lr=[0.5, 1])


def test_dbn_train_layer_lr_keeps_a_frozen_layer_pretrained_and_refuses_a_wrong_length(tmp_path):
    from dbn.errors import ConfigError
    from dbn.training.pipeline import run
    from tests.test_train import make_cfg

    run(make_cfg(tmp_path, "finetune.layer_lr=[0,1]"))
    pretrained, tuned = DBN.load(tmp_path / "dbn_pretrained.pt"), DBN.load(tmp_path)
    assert torch.equal(pretrained.layers[0].weight, tuned.layers[0].weight)
    assert torch.equal(pretrained.layers[0].hidden_bias, tuned.layers[0].hidden_bias)
    assert not torch.allclose(pretrained.layers[1].weight, tuned.layers[1].weight)  # the check can fail
    with pytest.raises(ConfigError, match="list of 2 numbers"):
        run(make_cfg(tmp_path / "bad", "finetune.layer_lr=[0,1,1]"))


def test_fit_resumed_from_its_epoch_checkpoint_ends_where_an_uninterrupted_fit_ends_schedule_and_layer_lr_included(tmp_path):
    """The per-factor parameter groups and their scaled schedule come back from the epoch checkpoint: the schedule
    resumes at the epoch it had reached (the checkpoint is written before the epoch's scheduler step)."""
    from dbn.training import resume

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, 20, generator=g), torch.randint(0, 4, (96,), generator=g)

    def fit(epochs: int, ckpt) -> FineTuneModule:
        L.seed_everything(0, verbose=False)
        module = _module(optimizer=partial(torch.optim.Adam, lr=0.02), layer_lr=[0.5, 0], batch_size=16,
                         batch_norm="identity", scheduler=partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=4))
        trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_model_summary=False)
        trainer.fit(module, train_dataloaders=batch_loader(x, y, batch_size=16, shuffle=True),
                    **resume.attach(trainer, ckpt))
        return module

    straight = fit(4, tmp_path / "a.ckpt")
    fit(2, tmp_path / "b.ckpt")  # "killed" after two epochs
    resumed = fit(4, tmp_path / "b.ckpt")
    torch.manual_seed(0)
    start = DBN([20, 12, 6], n_classes=4)
    assert not torch.allclose(straight.dbn.layers[0].weight, start.layers[0].weight)  # the check can fail: it trained
    assert straight.lr_schedulers().last_epoch == resumed.lr_schedulers().last_epoch == 4
    for (name, p), q in zip(straight.dbn.state_dict().items(), resumed.dbn.state_dict().values()):
        assert torch.equal(p, q), name


def test_weight_averaging_updates_once_per_lightning_batch_not_per_optimizer_step(tmp_path):
    """What docs/configuration.md says of ``callbacks.finetune.ema``: Lightning's EMA callback averages at the end of
    each Lightning batch, which holds ``steps_per_batch`` optimizer steps, so its ``decay`` is per batch."""
    from lightning.pytorch.callbacks import EMAWeightAveraging


    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, 20, generator=g), torch.randint(0, 4, (96,), generator=g)
    module = _module(batch_size=8, steps_per_batch=4)  # 96 rows: 3 Lightning batches of 4 steps an epoch
    ema = EMAWeightAveraging(decay=0.9)
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, default_root_dir=tmp_path,
                        callbacks=[ema])
    trainer.fit(module, train_dataloaders=batch_loader(x, y, batch_size=module.loader_batch_size, shuffle=True))
    assert trainer.global_step == 24  # optimizer steps
    assert int(ema._average_model.n_averaged) == 6  # averaging updates: one per Lightning batch
