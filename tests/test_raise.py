"""RAISE (dbn.eval.reverse) against the exact log-likelihood of RBMs small enough to enumerate, beside AIS."""

from __future__ import annotations

import pytest
import torch

from dbn.eval import ais_log_partition, exact_log_partition, free_energies
from dbn.eval.partition import binary_states
from dbn.eval.reverse import raise_log_likelihood
from dbn.rbm import RBM


def model_and_exact_samples(std: float = 2.0, n: int = 400):
    """A 14-8 RBM with weights of std ``std``, n exact samples of p(v) (by enumeration) and their mean log p(v)."""
    g = torch.Generator().manual_seed(0)
    rbm = RBM(14, 8, init_std=std, generator=g).double()
    states = binary_states(14, 0, 2**14, torch.float64, torch.device("cpu"))
    log_p = -free_energies(rbm, states) - exact_log_partition(rbm)
    idx = torch.multinomial(log_p.exp(), n, replacement=True, generator=g)
    return rbm, states[idx], float(log_p[idx].mean())


def ais_log_likelihood(rbm, data, n_betas):
    return float(-free_energies(rbm, data).mean()) - ais_log_partition(rbm, n_chains=100, n_betas=n_betas, seed=1).log_z


def test_raise_and_ais_bracket_the_truth_with_a_crude_schedule():
    """10 temperatures: RAISE (reverse chains from the data) is far below the exact value, AIS above it."""
    rbm, data, exact = model_and_exact_samples()
    low = raise_log_likelihood(rbm, data, n_betas=10, n_chains=1, seed=1)
    assert low.log_likelihood < exact - 1.0
    assert ais_log_likelihood(rbm, data, 10) > exact + 0.1
    assert low.per_sample.shape == (400,) and low.std_error > 0


@pytest.mark.parametrize("std", [1.0, 2.0])
def test_raise_converges_to_the_exact_log_likelihood(std):
    """1,000 temperatures and 10 chains a vector: RAISE and AIS within 0.1 nat of the enumerated mean log p(v)."""
    rbm, data, exact = model_and_exact_samples(std)
    est = raise_log_likelihood(rbm, data, n_betas=1000, n_chains=10, seed=1)
    assert abs(est.log_likelihood - exact) < 0.1
    assert abs(ais_log_likelihood(rbm, data, 1000) - exact) < 0.1
    assert est.n_betas == 1000 and est.n_chains == 10


def test_raise_refuses_what_it_cannot_estimate():
    with pytest.raises(ValueError, match="Bernoulli units only"):
        raise_log_likelihood(RBM(4, 3, visible="gaussian"), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="too few"):
        raise_log_likelihood(RBM(4, 3), torch.zeros(2, 4), n_betas=3)
    with pytest.raises(ValueError, match=r"shape \(n >= 1, 4\)"):
        raise_log_likelihood(RBM(4, 3), torch.zeros(2, 5))
