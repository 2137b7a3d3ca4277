"""Fine-tuning regularisers: input dropout and label smoothing, against their definitions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dbn import DBN
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
    from dbn.training.finetune import smoothed_targets

    logits = torch.randn(32, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 7, (32,), generator=torch.Generator().manual_seed(2))
    ours = F.cross_entropy(logits, smoothed_targets(y, logits, eps))
    (g_ours,) = torch.autograd.grad(ours, logits)
    theirs = F.cross_entropy(logits, y, label_smoothing=eps)
    (g_theirs,) = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(g_ours, g_theirs)
    assert torch.allclose(smoothed_targets(y, logits, eps).sum(1), torch.ones(32, dtype=torch.float64))
