"""Centered RBMs: the plain form has the same distribution, and the update is SGD in the centered coordinates."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dbn import RBM
from dbn.centering import Offsets, centered_biases, centered_free_energy, load_centered, start_centering
from dbn.eval.partition import binary_states, exact_log_partition
from dbn.sampling import contrastive_divergence
from dbn.training.rbm_module import RBMModule
from dbn.update import cd_update


def _model(n_v=6, n_h=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    rbm = RBM(n_v, n_h, init_std=0.5, generator=g).to(dtype)
    with torch.no_grad():
        rbm.visible_bias.normal_(0, 0.5, generator=g)
        rbm.hidden_bias.normal_(0, 0.5, generator=g)
    offsets = Offsets(torch.rand(n_v, generator=g, dtype=dtype), torch.rand(n_h, generator=g, dtype=dtype), 0.1)
    return rbm, offsets


def test_plain_form_has_the_centered_models_distribution_and_free_energies():
    rbm, offsets = _model()
    W, b_c, c_c = rbm.weight.detach().clone(), *(t.clone() for t in centered_biases(rbm, offsets))
    plain = load_centered(copy.deepcopy(rbm), W, b_c, c_c, offsets)
    states = binary_states(6, 0, 64, torch.float64, torch.device("cpu"))
    f_c = centered_free_energy(W, b_c, c_c, offsets, states)
    f = plain.free_energy(states)
    constant = offsets.visible @ b_c + offsets.hidden @ c_c - offsets.hidden @ W @ offsets.visible
    torch.testing.assert_close(f_c - f, constant.expand(64), rtol=0, atol=1e-12)
    # log p(v) by enumeration of the centered energy equals the plain RBM's exact log-likelihood
    log_p_c = -f_c - torch.logsumexp(-f_c, 0)
    torch.testing.assert_close(log_p_c, -f - exact_log_partition(plain), rtol=0, atol=1e-10)
    # and the round trip plain -> centered -> plain is the identity
    for p, q in zip(rbm.parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


def _reference_step(params, opt, offsets, v, v_model, hidden_data):
    """SGD on the centered surrogate F_c(v_data) - F_c(v_model) by autograd, offsets moved first (Melchior's Alg. 1)."""
    W, b_c, c_c = params
    new = Offsets(offsets.visible.clone(), offsets.hidden.clone(), offsets.rate)
    # re-parametrise at fixed plain model: b_c += Wᵀ(λ' - λ), c_c += W(μ' - μ)
    new.follow(v.mean(0), hidden_data.mean(0))
    with torch.no_grad():
        b_c += (new.hidden - offsets.hidden) @ W
        c_c += W @ (new.visible - offsets.visible)
    opt.zero_grad()
    loss = centered_free_energy(W, b_c, c_c, new, v).mean() - centered_free_energy(W, b_c, c_c, new, v_model).mean()
    loss.backward()
    opt.step()
    return new


@pytest.mark.parametrize("persistent", [False, True], ids=["CD-1", "PCD-2"])
def test_centered_update_is_sgd_with_momentum_on_the_centered_parameters(persistent):
    rbm, offsets = _model()
    g = torch.Generator().manual_seed(1)
    data = (torch.rand(40, 6, generator=g, dtype=torch.float64) < 0.4).double()
    chains = (torch.rand(10, 6, generator=g, dtype=torch.float64) < 0.5).double() if persistent else None
    k = 2 if persistent else 1
    # the reference: centered parameters as leaves, torch SGD (momentum, decay on W only), autograd
    ref_offsets = Offsets(offsets.visible.clone(), offsets.hidden.clone(), offsets.rate)
    W = rbm.weight.detach().clone().requires_grad_()
    b_c, c_c = (t.clone().requires_grad_() for t in centered_biases(rbm, offsets))
    ref_opt = torch.optim.SGD([{"params": [W], "weight_decay": 0.01}, {"params": [b_c, c_c], "weight_decay": 0.0}],
                              lr=0.1, momentum=0.5)
    ref_rbm, ref_chains = copy.deepcopy(rbm), None if chains is None else chains.clone()
    opt = torch.optim.SGD([{"params": [rbm.weight], "weight_decay": 0.01},
                           {"params": [rbm.visible_bias, rbm.hidden_bias], "weight_decay": 0.0}], lr=0.1, momentum=0.5)
    for batch in data.split(10):
        seed = int(torch.randint(1 << 30, (1,), generator=g))
        cd_update(rbm, batch, opt, k=k, chains=chains, generator=torch.Generator().manual_seed(seed), offsets=offsets)
        # the same chain on the reference's plain model, then its centered SGD step
        load_centered(ref_rbm, W.detach(), b_c.detach(), c_c.detach(), ref_offsets)
        with torch.no_grad():
            step = contrastive_divergence(ref_rbm, batch, k=k, chains=ref_chains,
                                          generator=torch.Generator().manual_seed(seed))
        ref_offsets = _reference_step((W, b_c, c_c), ref_opt, ref_offsets, batch, step.v_model, step.hidden_data)
    torch.testing.assert_close(offsets.visible, ref_offsets.visible)
    torch.testing.assert_close(offsets.hidden, ref_offsets.hidden)
    load_centered(ref_rbm, W.detach(), b_c.detach(), c_c.detach(), ref_offsets)
    for name, p in rbm.named_parameters():
        torch.testing.assert_close(p, dict(ref_rbm.named_parameters())[name], rtol=1e-10, atol=1e-12, msg=name)


def test_the_centered_gradient_differs_from_the_plain_one():
    """The point of centering: away from zero offsets the step is not the plain step."""
    rbm, offsets = _model()
    plain = copy.deepcopy(rbm)
    data = (torch.rand(20, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64) < 0.5).double()
    for model, off in ((rbm, offsets), (plain, None)):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        cd_update(model, data, opt, generator=torch.Generator().manual_seed(3), offsets=off)
    assert (rbm.weight - plain.weight).abs().max() > 1e-3
    # zero offsets that do not move (rate → tiny, batch means far away): the plain update, up to the rate's move
    rbm, _ = _model()
    plain = copy.deepcopy(rbm)
    zero = Offsets(torch.zeros(6, dtype=torch.float64), torch.zeros(4, dtype=torch.float64), 1e-12)
    for model, off in ((rbm, zero), (plain, None)):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        cd_update(model, data, opt, generator=torch.Generator().manual_seed(3), offsets=off)
    for p, q in zip(rbm.parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-9)


def test_start_centering_reads_the_current_biases_as_centered_ones():
    rbm, offsets = _model()
    b, c = rbm.visible_bias.detach().clone(), rbm.hidden_bias.detach().clone()
    mean = torch.full((6,), 0.3, dtype=torch.float64)
    start_centering(rbm, offsets, mean)
    torch.testing.assert_close(offsets.visible, mean)
    torch.testing.assert_close(offsets.hidden, torch.full((4,), 0.5, dtype=torch.float64))
    b_c, c_c = centered_biases(rbm, offsets)
    torch.testing.assert_close(b_c, b)
    torch.testing.assert_close(c_c, c)


def test_centering_refuses_what_it_does_not_cover():
    with pytest.raises(ValueError, match="learned variances"):
        RBMModule(RBM(4, 3, visible="gaussian_learned"), centering=True)
    with pytest.raises(ValueError, match="centering_rate must be in"):
        RBMModule(RBM(4, 3), centering=True, centering_rate=0.0)
    rbm, offsets = _model()
    with pytest.raises(ValueError, match="missing values"):
        cd_update(rbm, torch.zeros(2, 6, dtype=torch.float64), torch.optim.SGD(rbm.parameters(), lr=0.1),
                  mask=torch.ones(2, 6, dtype=torch.float64), offsets=offsets)


def test_centered_module_trains_a_plain_rbm_with_offsets_at_the_data_means(tmp_path):
    """Through Lightning: the offsets follow the data, checkpoint with the layer, and the likelihood improves."""
    torch.manual_seed(0)
    proto = torch.tensor([[1, 1, 1, 0, 0, 0, 1, 0.0], [0, 0, 0, 1, 1, 1, 0, 1.0]])
    x = proto[torch.randint(0, 2, (600,))]
    x = torch.where(torch.rand_like(x) < 0.05, 1 - x, x)
    rbm = RBM(8, 4)
    module = RBMModule(rbm, centering=True, centering_rate=0.05, lr=0.1, epochs=20, batch_size=20, weight_decay=0.0)

    def log_lik(model):
        return float((-model.free_energy(x.double())).mean() - exact_log_partition(model))

    before = log_lik(copy.deepcopy(rbm).double())
    trainer = L.Trainer(max_epochs=20, default_root_dir=tmp_path)  # Lightning's defaults: progress bar, logger, checkpoints
    trainer.fit(module, DataLoader(TensorDataset(x), batch_size=20, shuffle=True))
    after = log_lik(copy.deepcopy(rbm).double())
    assert after > before + 1.0
    torch.testing.assert_close(module.visible_offset, x.mean(0), atol=0.08, rtol=0)
    with torch.no_grad():
        hidden_mean = rbm.hidden_mean(x).mean(0)
    torch.testing.assert_close(module.hidden_offset, hidden_mean, atol=0.1, rtol=0)
    state = module.state_dict()
    assert {"visible_offset", "hidden_offset", "offsets_ready"} <= set(state)
    assert "visible_offset" not in RBMModule(RBM(8, 4)).state_dict()
