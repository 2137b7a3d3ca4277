"""The CD / PCD gradient and the SGD update of RBMModule against the closed-form CD formulas."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch

from conftest import random_rbm
from dbn.rbm import RBM
from dbn.sampling import cd_loss, contrastive_divergence, sparsity_penalty
from dbn.training.rbm_module import RBMModule
from dbn.training.schedules import lr_factor, momentum_at


def cd_closed_form(rbm, v_data, v_model):
    """<v h>_data - <v h>_model with h -> p(h | v), for W, b, c (the ascent direction)."""
    with torch.no_grad():
        ph_d, ph_m = rbm.hidden_mean(v_data), rbm.hidden_mean(v_model)
        # PCD has n_chains negative samples, not batch-size many: each phase is its own mean
        dW = ph_d.T @ v_data / len(v_data) - ph_m.T @ v_model / len(v_model)
        db = v_data.mean(0) - v_model.mean(0)
        dc = ph_d.mean(0) - ph_m.mean(0)
    return dW, db, dc


def batch(n=8, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, d, generator=g, dtype=torch.float64) < 0.4).double()


@pytest.mark.parametrize("k,persistent", [(1, False), (3, False), (1, True), (2, True)])
def test_cd_loss_gradient_is_minus_the_cd_estimate(k, persistent):
    rbm = random_rbm(6, 4, seed=2)
    v = batch()
    chains = batch(n=5, seed=9) if persistent else None
    step = contrastive_divergence(rbm, v, k=k, chains=chains, generator=torch.Generator().manual_seed(1))
    cd_loss(rbm, step).backward()
    dW, db, dc = cd_closed_form(rbm, v, step.v_model)
    torch.testing.assert_close(rbm.weight.grad, -dW)
    torch.testing.assert_close(rbm.visible_bias.grad, -db)
    torch.testing.assert_close(rbm.hidden_bias.grad, -dc)
    # the chain's states carry no gradient and the negative phase differs from the data
    assert not step.v_model.requires_grad
    if persistent:
        assert torch.equal(chains, step.v_model), "PCD must write the new chain states back"


def test_free_energy_gradient_matches_finite_differences():
    rbm = random_rbm(5, 3, seed=4)
    v = batch(n=4, d=5)
    rbm.free_energy(v).sum().backward()
    eps = 1e-6
    for param in (rbm.weight, rbm.visible_bias, rbm.hidden_bias):
        flat = param.data.view(-1)
        for idx in range(0, flat.numel(), 3):
            old = flat[idx].item()
            with torch.no_grad():
                flat[idx] = old + eps
                up = rbm.free_energy(v).sum()
                flat[idx] = old - eps
                down = rbm.free_energy(v).sum()
                flat[idx] = old
            assert param.grad.view(-1)[idx].item() == pytest.approx(((up - down) / (2 * eps)).item(), abs=1e-6)


def test_cd1_chain_uses_reconstruction_probabilities():
    """CD-1 (default): negative visible state is p(v | h0), the reconstruction; with sample_visible it is binary."""
    rbm = random_rbm(6, 4, seed=5)
    v = batch()
    step = contrastive_divergence(rbm, v, k=1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(step.v_model, step.recon)
    assert ((step.v_model > 0) & (step.v_model < 1)).any()
    step = contrastive_divergence(rbm, v, k=1, sample_visible=True, generator=torch.Generator().manual_seed(0))
    assert set(step.v_model.unique().tolist()) <= {0.0, 1.0}


def test_k_must_be_positive():
    with pytest.raises(ValueError, match="k must be >= 1"):
        contrastive_divergence(random_rbm(3, 2), batch(d=3), k=0)


def test_sparsity_penalty_gradient_is_cost_times_q_minus_p():
    rbm = random_rbm(6, 4, seed=6)
    v = batch()
    pre = rbm.hidden_pre(v)
    q = torch.zeros(4, dtype=torch.float64)
    sparsity_penalty(pre, q, target=0.1, cost=0.5, mean_fn=torch.sigmoid).backward()
    expected_q = 0.1 * torch.sigmoid(pre.detach()).mean(0)  # running mean after one update from 0
    torch.testing.assert_close(q, expected_q)
    torch.testing.assert_close(rbm.hidden_bias.grad, 0.5 * (expected_q - 0.1))
    torch.testing.assert_close(rbm.weight.grad, 0.5 * (expected_q - 0.1)[:, None] * v.mean(0)[None, :])


def _module_step(module, v, seed):
    """One update of the module (``training_step`` by hand) on batch v; returns the chain's negative states."""
    torch.manual_seed(seed)
    step = contrastive_divergence(module.rbm, v, k=module.hparams.k)  # the same draws, replayed before the update
    torch.manual_seed(seed)
    module.training_step((v,), 0)
    return module._own_optimizer, step.v_model


def test_module_sgd_update_equals_lr_times_cd_estimate_plus_weight_decay():
    rbm = random_rbm(6, 4, seed=7)
    module = RBMModule(rbm, k=1, lr=0.1, momentum=0.0, final_momentum=0.0, weight_decay=0.01)
    W0, b0, c0 = (p.detach().clone() for p in (rbm.weight, rbm.visible_bias, rbm.hidden_bias))
    v = batch()
    _, v_model = _module_step(module, v, seed=3)
    rbm0 = random_rbm(6, 4, seed=7)
    dW, db, dc = cd_closed_form(rbm0, v, v_model)
    torch.testing.assert_close(rbm.weight.detach(), W0 + 0.1 * (dW - 0.01 * W0))
    torch.testing.assert_close(rbm.visible_bias.detach(), b0 + 0.1 * db)  # no weight decay on biases
    torch.testing.assert_close(rbm.hidden_bias.detach(), c0 + 0.1 * dc)


def test_schedules():
    assert lr_factor("constant", 7, 10, 0.1) == 1.0
    assert lr_factor("linear", 0, 10, 0.1) == 1.0 and lr_factor("linear", 9, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor("cosine", 9, 10, 0.1) == pytest.approx(0.1) and lr_factor("exponential", 9, 10, 0.01) == pytest.approx(0.01)
    assert lr_factor("linear", 0, 1, 0.1) == 1.0
    assert [momentum_at(e, 0.5, 0.9, 2) for e in range(4)] == [0.5, 0.5, 0.9, 0.9]
    with pytest.raises(ValueError, match="unknown lr_schedule"):
        lr_factor("step", 0, 10, 0.1)


def _fit(module, x, epochs, batch_size=10):
    from dbn.data import PretrainDataModule

    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0)
    trainer.fit(module, datamodule=PretrainDataModule(x, x[:20], batch_size=batch_size, monitor_size=20))
    return trainer


def test_momentum_schedule_and_lr_schedule_reach_the_optimizer():
    x = batch(n=40, d=6).float()
    module = RBMModule(random_rbm(6, 4, dtype=torch.float32), momentum=0.5, final_momentum=0.9, momentum_switch_epoch=2,
                       lr=0.1, lr_schedule="linear", lr_final=0.1, epochs=3, log_prefix="t")
    trainer = _fit(module, x, epochs=3)
    opt = trainer.optimizers[0]
    assert opt.param_groups[0]["momentum"] == 0.9
    assert trainer.callback_metrics["t/momentum"] == pytest.approx(0.9)
    assert trainer.callback_metrics["t/lr"] == pytest.approx(0.01)  # epoch 2 of 3: 0.1 * 0.1
    for name in ("t/val/recon_error", "t/val/free_energy", "t/train_subset/free_energy", "t/free_energy_gap"):
        assert torch.isfinite(trainer.callback_metrics[name])


@pytest.mark.parametrize("persistent, final", [(False, 0.9), (True, 0.5)])
def test_default_momentum_switches_to_0_9_for_cd_and_not_for_pcd(persistent, final):
    """final_momentum=None: CD switches to 0.9 (Hinton 2010), PCD keeps its momentum (0.9 collapses PCD)."""
    x = batch(n=40, d=6).float()
    module = RBMModule(random_rbm(6, 4, dtype=torch.float32), persistent=persistent, n_chains=5, momentum=0.5,
                       momentum_switch_epoch=1, epochs=2, log_prefix="t")
    assert module.hparams.final_momentum == final  # the resolved value is what the checkpoint records
    trainer = _fit(module, x, epochs=2)
    assert trainer.optimizers[0].param_groups[0]["momentum"] == final
    assert trainer.callback_metrics["t/momentum"] == pytest.approx(final)
    explicit = RBMModule(random_rbm(6, 4, dtype=torch.float32), persistent=persistent, final_momentum=0.7)
    assert explicit.hparams.final_momentum == 0.7


def test_pcd_chains_persist_across_batches_and_are_saved():
    x = batch(n=40, d=6).float()
    module = RBMModule(random_rbm(6, 4, dtype=torch.float32), persistent=True, n_chains=7, log_prefix="t")
    assert module.chains.shape == (7, 6) and not module.chains_ready
    _fit(module, x, epochs=1)
    assert module.chains_ready and set(module.chains.unique().tolist()) <= {0.0, 1.0}
    state = module.state_dict()
    assert "chains" in state and state["chains"].shape == (7, 6)
    # the next step continues from the stored chains, not from the data: replay it by hand
    before = module.chains.clone()
    rbm_before = copy.deepcopy(module.rbm)  # the chain runs on the weights before the step's update
    module._trainer = None  # step by hand, outside the finished fit
    torch.manual_seed(0)
    module.training_step((x[:10],), 0)
    torch.manual_seed(0)
    expected = before.clone()
    contrastive_divergence(rbm_before, x[:10], k=1, chains=expected)
    torch.testing.assert_close(module.chains, expected)


def test_training_lowers_reconstruction_error_on_structured_data():
    """Two prototypes plus noise: after a few epochs the RBM reconstructs far better than at the start."""
    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(2, 20, generator=g) < 0.5).float()
    x = protos[torch.randint(0, 2, (400,), generator=g)]
    x = torch.where(torch.rand(x.shape, generator=g) < 0.05, 1 - x, x)
    rbm = random_rbm(20, 8, scale=0.01, dtype=torch.float32)
    with torch.no_grad():
        before = (x - rbm.reconstruct(x)).square().mean()
    module = RBMModule(rbm, lr=0.1, epochs=5, log_prefix="t")
    trainer = _fit(module, x, epochs=5, batch_size=20)
    with torch.no_grad():
        after = (x - rbm.reconstruct(x)).square().mean()
    assert after < 0.5 * before
    assert trainer.callback_metrics["t/val/recon_error"] < 0.5 * before


@pytest.mark.parametrize("kwargs,msg", [
    ({"k": 0}, "k must be >= 1"),
    ({"lr": 0}, "lr must be > 0"),
    ({"momentum": 1.2}, "momentum must be in"),
    ({"sparsity_target": 1.5}, "sparsity_target must be in"),
    ({"lr_schedule": "steps"}, "lr_schedule must be one of"),
    ({"weight_decay": -1}, "weight_decay must be >= 0"),
])
def test_module_rejects_impossible_schedules(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        RBMModule(random_rbm(3, 2), **kwargs)


def test_cd1_step_costs_five_matrix_products():
    """Positive pre-activation, reconstruction, negative pre-activation, and the two weight-gradient products."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountProducts(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += func.overloadpacket.__name__ in ("mm", "addmm", "bmm", "matmul", "linear")
            return func(*args, **(kwargs or {}))

    rbm = RBM(20, 12)
    v = (torch.rand(16, 20) < 0.5).float()
    with CountProducts() as counter:
        loss = cd_loss(rbm, contrastive_divergence(rbm, v, k=1))
        loss.backward()
    assert counter.n == 5
