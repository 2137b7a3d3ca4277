"""Parallel tempering (dbn.sampling.parallel_tempering) on a bimodal RBM small enough to enumerate."""

from __future__ import annotations

import pytest
import torch

from dbn.eval import free_energies
from dbn.eval.partition import binary_states
from dbn.rbm import RBM
from dbn.sampling import geometric_betas, parallel_tempering


def bimodal_rbm() -> RBM:
    """8 visible units, 1 hidden unit: two equally likely modes (all off / all on), Gibbs barely crosses."""
    rbm = RBM(8, 1, init_std=0.0).double()
    with torch.no_grad():
        # with b = -3, W = 6, c = -24 both modes carry the same mass: e^c (1 + e^3)^8 = (1 + e^-3)^8
        rbm.weight.fill_(6.0)
        rbm.visible_bias.fill_(-3.0)
        rbm.hidden_bias.fill_(-24.0)
    return rbm


def exact_count_distribution(rbm: RBM) -> torch.Tensor:
    """p(Σ_i v_i = s), s = 0..8, by enumeration of the 256 visible states."""
    states = binary_states(8, 0, 256, torch.float64, torch.device("cpu"))
    p = torch.softmax(-free_energies(rbm, states), 0)
    return torch.zeros(9, dtype=torch.float64).index_add_(0, states.sum(1).long(), p)


def empirical(samples: list[torch.Tensor]) -> torch.Tensor:
    counts = torch.zeros(9, dtype=torch.float64)
    for v in samples:
        counts.index_add_(0, v.sum(1).long(), torch.ones(len(v), dtype=torch.float64))
    return counts / counts.sum()


def test_tempered_chains_sample_the_exact_distribution_where_gibbs_is_stuck():
    rbm, g = bimodal_rbm(), torch.Generator().manual_seed(0)
    exact = exact_count_distribution(rbm)
    chains = torch.zeros(8, 100, 8, dtype=torch.float64)  # every chain starts in the all-off mode
    gibbs = torch.zeros(100, 8, dtype=torch.float64)
    pt_samples, gibbs_samples = [], []
    for sweep in range(400):
        rates = parallel_tempering(rbm, chains, geometric_betas(8, 0.05), generator=g)
        gibbs = rbm.gibbs(gibbs, 1, g)
        if sweep >= 100:
            pt_samples.append(chains[0].clone())
            gibbs_samples.append(gibbs)
    tv_pt = float((empirical(pt_samples) - exact).abs().sum() / 2)
    tv_gibbs = float((empirical(gibbs_samples) - exact).abs().sum() / 2)
    assert tv_pt < 0.03, f"β = 1 chains are {tv_pt:.3f} in total variation from the exact distribution"
    assert tv_gibbs > 0.3, f"plain Gibbs was expected to stay in its starting mode (TV {tv_gibbs:.3f})"
    assert rates.shape == (7,) and bool(((rates > 0) & (rates <= 1)).all())
    assert set(chains.unique().tolist()) <= {0.0, 1.0}


def test_geometric_ladder_and_input_checks():
    betas = geometric_betas(4, 0.125)
    torch.testing.assert_close(betas, torch.tensor([1.0, 0.5, 0.25, 0.125], dtype=torch.float64))
    with pytest.raises(ValueError, match="n_temperatures must be >= 2"):
        geometric_betas(1)
    with pytest.raises(ValueError, match="Bernoulli visible and hidden"):
        parallel_tempering(RBM(4, 2, visible="gaussian"), torch.zeros(2, 3, 4), torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="betas\\[0\\] = 1"):
        parallel_tempering(RBM(4, 2), torch.zeros(2, 3, 4), torch.tensor([0.9, 0.5]))
