"""Exact log Z against brute force, and AIS against exact log Z on small RBMs."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import all_binary, random_rbm
from dbn.eval import ais_log_partition, exact_log_partition, paper_betas
from dbn.rbm import RBM


def brute_force_log_z(rbm: RBM) -> float:
    vs, hs = all_binary(rbm.n_visible), all_binary(rbm.n_hidden)
    with torch.no_grad():
        energies = torch.stack([rbm.energy(vs, h.expand(len(vs), -1)) for h in hs])
    return float(torch.logsumexp(-energies.flatten(), 0))


@pytest.mark.parametrize("n_visible,n_hidden", [(6, 4), (4, 7), (5, 5)])
def test_exact_log_partition_matches_brute_force(n_visible, n_hidden):
    rbm = random_rbm(n_visible, n_hidden, seed=n_visible * 10 + n_hidden)
    assert exact_log_partition(rbm, chunk=8) == pytest.approx(brute_force_log_z(rbm), abs=1e-9)


def test_exact_log_partition_of_a_float32_model_is_computed_in_float64():
    rbm = random_rbm(30, 12, scale=0.3, seed=1, dtype=torch.float32)
    # both enumerations (hidden side here, visible side on the transposed model) must agree
    flipped = RBM(12, 30).to(torch.float32)
    with torch.no_grad():
        flipped.weight.copy_(rbm.weight.T)
        flipped.visible_bias.copy_(rbm.hidden_bias)
        flipped.hidden_bias.copy_(rbm.visible_bias)
    assert exact_log_partition(rbm) == pytest.approx(exact_log_partition(flipped), abs=1e-6)


def test_exact_log_partition_refuses_large_models():
    with pytest.raises(ValueError, match="use ais_log_partition"):
        exact_log_partition(RBM(30, 26))


def test_paper_schedule():
    betas = paper_betas()
    assert len(betas) == 14500 and betas[0] == 0 and betas[-1] == 1
    assert (betas.diff() > 0).all()
    assert int((betas < 0.5).sum()) == 500 and int((betas < 0.9).sum()) == 4500


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed,n_visible", [(0, 50), (1, 80), (2, 100)])
def test_ais_is_within_a_tenth_of_a_nat_of_exact_log_z(seed, n_visible, dtype):
    """20 hidden units, weights ~ N(0, 1): log Z lies 6-28 nats from the base-rate model's. float32 chains (the
    training monitor's) keep float64 log-weights and must land as close."""
    rbm = random_rbm(n_visible, 20, scale=1.0, seed=seed)
    exact = exact_log_partition(rbm)
    g = torch.Generator().manual_seed(seed)
    data = rbm.gibbs((torch.rand(500, n_visible, generator=g, dtype=torch.float64) < 0.5).double(), 50, g)
    result = ais_log_partition(rbm, n_chains=200, n_betas=5000, data=data, seed=seed, dtype=dtype)
    assert abs(result.log_z_base - exact) > 5, "the test model must be far from the base-rate model"
    assert abs(result.log_z - exact) < 0.1
    assert result.log_z_low <= exact <= result.log_z_high
    assert result.log_z_low < result.log_z < result.log_z_high and math.isfinite(result.log_z_high)


def test_float32_ais_matches_float64_on_a_model_of_fashion_mnist_size():
    """784 x 500 with weights of a trained model's scale: log Z near 500 nats, where float32 rounding of each
    free energy (about 1e-4 of a nat) would add up over the 1,000 steps if the increments were not float64."""
    rbm = random_rbm(784, 500, scale=0.05, seed=3)
    a64 = ais_log_partition(rbm, n_chains=100, n_betas=1000, seed=0)
    a32 = ais_log_partition(rbm, n_chains=100, n_betas=1000, seed=0, dtype=torch.float32)
    assert a64.log_z > 300
    assert a32.log_z == pytest.approx(a64.log_z, abs=0.2)  # two independent runs: their spread, not rounding


def test_ais_refuses_other_dtypes():
    with pytest.raises(ValueError, match="float64 or float32"):
        ais_log_partition(random_rbm(5, 3, seed=0), n_chains=2, n_betas=10, dtype=torch.bfloat16)


def test_ais_is_seeded():
    rbm = random_rbm(30, 10, scale=0.3, seed=5)
    a = ais_log_partition(rbm, n_chains=20, n_betas=300, seed=7)
    b = ais_log_partition(rbm, n_chains=20, n_betas=300, seed=7)
    assert a == b


def test_average_log_likelihood_matches_enumerated_probabilities():
    from dbn.eval import average_log_likelihood

    rbm = random_rbm(6, 4, seed=11)
    vs = all_binary(6)
    with torch.no_grad():
        log_p = torch.log_softmax(-rbm.free_energy(vs), 0)  # exact log p(v) over all 64 states
    data = vs[[0, 5, 5, 63, 17]]
    expected = float(log_p[[0, 5, 5, 63, 17]].mean())
    assert average_log_likelihood(rbm, data, exact_log_partition(rbm)) == pytest.approx(expected, abs=1e-9)
    # a distribution: the probabilities of all states sum to one
    assert float(torch.logsumexp(log_p, 0)) == pytest.approx(0.0, abs=1e-12)


def test_pseudo_log_likelihood_is_unbiased_for_the_sum_of_conditionals():
    from dbn.eval import pseudo_log_likelihood

    rbm = random_rbm(6, 4, seed=12)
    v = all_binary(6)[[3, 40]]
    with torch.no_grad():
        # exact Σ_i log p(v_i | v_-i): flip each unit in turn
        exact = torch.zeros(2, dtype=torch.float64)
        for i in range(6):
            flipped = v.clone()
            flipped[:, i] = 1 - flipped[:, i]
            exact += torch.nn.functional.logsigmoid(rbm.free_energy(flipped) - rbm.free_energy(v))
    g = torch.Generator().manual_seed(0)
    estimates = pseudo_log_likelihood(rbm, v.repeat(3000, 1), generator=g).reshape(3000, 2)
    # the mean of 3,000 one-unit estimates: its standard error here is < 0.1 nats
    torch.testing.assert_close(estimates.mean(0), exact, atol=0.3, rtol=0)
    assert (estimates <= 0).all()


def test_dbn_lower_bound_is_below_the_exact_log_probability_and_tight_in_expectation():
    """Tiny 2-layer DBN: exact log p(v) and the exact bound by enumerating h; the sampled bound matches the latter."""
    from dbn import DBN
    from dbn.eval import dbn_lower_bound

    torch.manual_seed(0)
    model = DBN([5, 4, 3]).double()
    for rbm, seed in zip(model.layers, (1, 2)):
        src = random_rbm(rbm.n_visible, rbm.n_hidden, seed=seed)
        rbm.load_state_dict(src.state_dict())
    bottom, top = model.layers
    vs, hs = all_binary(5), all_binary(4)
    log_z2 = exact_log_partition(top)
    with torch.no_grad():
        log_p2 = -top.free_energy(hs) - log_z2                              # (16,) top-RBM marginal over h
        a = bottom.visible_pre(hs)                                          # (16, 5)
        log_p_v_h = vs @ torch.nn.functional.logsigmoid(a).T + (1 - vs) @ torch.nn.functional.logsigmoid(-a).T  # (32, 16)
        exact = torch.logsumexp(log_p_v_h + log_p2, dim=1)                  # log p(v) of the DBN
        q = bottom.hidden_mean(vs)                                          # (32, 4)
        log_q = hs @ torch.log(q).T + (1 - hs) @ torch.log1p(-q).T          # (16, 32)
        w = log_q.T.exp()                                                   # Q(h | v), (32, 16)
        exact_bound = (w * (log_p_v_h + log_p2 - log_q.T)).sum(1)
    assert torch.exp(exact).sum() == pytest.approx(1.0, abs=1e-9)        # a distribution over the 32 states
    assert (exact_bound <= exact + 1e-12).all()
    sampled = dbn_lower_bound(model, vs, log_z2, n_samples=4000, generator=torch.Generator().manual_seed(0))
    # 4,000 samples: the Monte Carlo error of the mean of log p(v|h) - F(h) here is below 0.1 nats
    torch.testing.assert_close(sampled, exact_bound, atol=0.15, rtol=0)


def test_evaluation_leaves_the_global_random_stream_alone(tmp_path):
    """Monitors run between layers: if they drew from the global RNG, a run's results would depend on them."""
    from dbn import DBN
    from dbn.eval import average_log_likelihood, pseudo_log_likelihood
    from dbn.training.callbacks import layer_pictures

    rbm = RBM(64, 20)
    x = (torch.rand(50, 64) < 0.3).float()
    DBN([64, 20], n_classes=3).save(tmp_path)
    small = RBM(30, 5)
    state = torch.get_rng_state().clone()
    exact_log_partition(small)
    ais_log_partition(rbm, n_chains=10, n_betas=50, data=x, seed=0)
    pseudo_log_likelihood(rbm, x, torch.Generator().manual_seed(0))
    average_log_likelihood(rbm, x, 1.0)
    layer_pictures(rbm, x, gibbs_steps=5, generator=torch.Generator().manual_seed(0))
    DBN.load(tmp_path)
    assert torch.equal(state, torch.get_rng_state())
