from __future__ import annotations

import itertools

import pytest
import torch

from dbn.rbm import RBM


def all_binary(n: int, dtype=torch.float64) -> torch.Tensor:
    """Every binary vector of length n, (2**n, n)."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=dtype)


def random_rbm(n_visible: int, n_hidden: int, scale: float = 1.0, seed: int = 0, dtype=torch.float64) -> RBM:
    """A tiny RBM with weights and biases large enough to make every term matter."""
    g = torch.Generator().manual_seed(seed)
    rbm = RBM(n_visible, n_hidden).to(dtype)
    with torch.no_grad():
        rbm.weight.copy_(torch.randn(n_hidden, n_visible, generator=g, dtype=dtype) * scale)
        rbm.visible_bias.copy_(torch.randn(n_visible, generator=g, dtype=dtype) * scale)
        rbm.hidden_bias.copy_(torch.randn(n_hidden, generator=g, dtype=dtype) * scale)
    return rbm


@pytest.fixture
def tiny_rbm() -> RBM:
    return random_rbm(5, 3)
