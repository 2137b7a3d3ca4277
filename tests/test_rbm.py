"""The RBM's energy, free energy and conditionals against brute-force enumeration."""

from __future__ import annotations

import pytest
import torch

from conftest import all_binary, random_rbm
from dbn.rbm import RBM
from dbn.units import Bernoulli, get_units


def explicit_energy(rbm: RBM, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """E(v, h) = -Σ_i b_i v_i - Σ_j c_j h_j - Σ_ij h_j W_ji v_i, written as loops."""
    W, b, c = rbm.weight, rbm.visible_bias, rbm.hidden_bias
    out = torch.zeros(len(v), dtype=v.dtype)
    for n in range(len(v)):
        e = 0.0
        for i in range(rbm.n_visible):
            e -= b[i] * v[n, i]
            for j in range(rbm.n_hidden):
                e -= h[n, j] * W[j, i] * v[n, i]
        for j in range(rbm.n_hidden):
            e -= c[j] * h[n, j]
        out[n] = e
    return out


def test_parameters_are_named_and_shaped_like_linear():
    rbm = RBM(7, 3)
    assert dict(rbm.named_parameters()).keys() == {"weight", "visible_bias", "hidden_bias"}
    assert rbm.weight.shape == (3, 7) and rbm.visible_bias.shape == (7,) and rbm.hidden_bias.shape == (3,)


def test_energy_matches_the_written_out_formula(tiny_rbm):
    g = torch.Generator().manual_seed(1)
    v = torch.randint(0, 2, (6, 5), generator=g).double()
    h = torch.randint(0, 2, (6, 3), generator=g).double()
    with torch.no_grad():
        torch.testing.assert_close(tiny_rbm.energy(v, h), explicit_energy(tiny_rbm, v, h))


def test_free_energy_is_minus_log_sum_over_hidden_states(tiny_rbm):
    v = all_binary(5)
    hs = all_binary(3)
    with torch.no_grad():
        # F(v) = -log Σ_h exp(-E(v, h)), brute force over all 2^3 hidden states
        energies = torch.stack([tiny_rbm.energy(v, h.expand(len(v), -1)) for h in hs], dim=1)
        expected = -torch.logsumexp(-energies, dim=1)
        torch.testing.assert_close(tiny_rbm.free_energy(v), expected)
        # the cached pre-activation gives the same number
        torch.testing.assert_close(tiny_rbm.free_energy(v, hidden_pre=tiny_rbm.hidden_pre(v)), expected)


def test_hidden_conditional_matches_enumeration(tiny_rbm):
    v = all_binary(5)
    hs = all_binary(3)
    with torch.no_grad():
        logp = torch.stack([-tiny_rbm.energy(v, h.expand(len(v), -1)) for h in hs], dim=1)
        p = torch.softmax(logp, dim=1)  # p(h | v) over the 8 hidden states
        marginal = p @ hs  # p(h_j = 1 | v)
        torch.testing.assert_close(tiny_rbm.hidden_mean(v), marginal)


def test_visible_conditional_matches_enumeration(tiny_rbm):
    vs = all_binary(5)
    h = all_binary(3)
    with torch.no_grad():
        logp = torch.stack([-tiny_rbm.energy(v.expand(len(h), -1), h) for v in vs], dim=1)
        p = torch.softmax(logp, dim=1)
        torch.testing.assert_close(tiny_rbm.visible_mean(h), p @ vs)


def test_gibbs_chain_samples_the_model_distribution():
    """Long Gibbs chains reach p(v) = exp(-F(v)) / Z (exact on 2^4 states)."""
    rbm = random_rbm(4, 3, scale=0.8, seed=3)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        vs = all_binary(4)
        p_exact = torch.softmax(-rbm.free_energy(vs), dim=0)
        v0 = (torch.rand(20000, 4, generator=g, dtype=torch.float64) < 0.5).double()
        v = rbm.gibbs(v0, steps=30, generator=g)
        codes = (v * torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=torch.float64)).sum(1).long()
        p_emp = torch.bincount(codes, minlength=16).double() / len(v)
    # 20,000 samples: the total variation of an exact sampler is ~0.01; a wrong conditional gives > 0.1
    assert 0.5 * (p_emp - p_exact).abs().sum() < 0.03


def test_bernoulli_sample_means_match_probabilities():
    g = torch.Generator().manual_seed(0)
    p = torch.linspace(0, 1, 11).repeat(20000, 1)
    s = Bernoulli().sample(p, generator=g)
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    # std of a mean of 20,000 draws is at most 0.0036; allow 5 sigma
    torch.testing.assert_close(s.mean(0), p[0], atol=0.018, rtol=0)
    assert s[:, 0].sum() == 0 and s[:, -1].sum() == len(s)


def test_sampling_leaves_inputs_unchanged(tiny_rbm):
    v = all_binary(5)
    before = v.clone()
    with torch.no_grad():
        tiny_rbm.sample_hidden(v)
        tiny_rbm.gibbs(v, steps=3)
    assert torch.equal(v, before)


def test_constructor_rejects_bad_sizes_and_unit_types():
    with pytest.raises(ValueError, match="n_hidden must be >= 1"):
        RBM(3, 0)
    with pytest.raises(ValueError, match="n_visible must be >= 1"):
        RBM(-1, 3)
    with pytest.raises(ValueError, match="unknown unit type 'gausian'"):
        RBM(3, 2, visible="gausian")
    assert get_units("BERNOULLI") is get_units("bernoulli")


def test_bernoulli_check_names_the_problem():
    with pytest.raises(ValueError, match=r"values in \[0, 255\].*\[0, 1\]"):
        Bernoulli().check(torch.tensor([[0.0, 255.0]]))
    with pytest.raises(ValueError, match="NaN"):
        Bernoulli().check(torch.tensor([[0.0, float("nan")]]))
    Bernoulli().check(torch.tensor([[0.0, 0.5, 1.0]]))


def test_init_visible_bias_gives_data_mean():
    rbm = RBM(3, 2, init_std=0.0)
    mean = torch.tensor([0.2, 0.5, 0.9])
    rbm.init_visible_bias(mean)
    torch.testing.assert_close(rbm.visible_mean(torch.zeros(1, 2))[0], mean)
