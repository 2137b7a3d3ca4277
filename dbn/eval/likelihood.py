"""Log-likelihood and pseudo-log-likelihood of data under an RBM.

References:
    Salakhutdinov & Murray (2008); Besag (1975) pseudo-likelihood, as in scikit-learn's
    ``BernoulliRBM.score_samples``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dbn.eval.partition import float64_copy
from dbn.rbm import RBM


@torch.no_grad()
def free_energies(rbm: RBM, data: Tensor, batch_size: int = 4096) -> Tensor:
    """F(v) per row of ``data`` in float64, on the model's device."""
    model = float64_copy(rbm)
    data = torch.as_tensor(data)
    if data.ndim < 2 or len(data) == 0:
        raise ValueError(f"data must have shape (n >= 1, {rbm.n_visible}) (images are flattened), got {tuple(data.shape)}")
    data = data.flatten(1)
    device = model.weight.device
    return torch.cat([model.free_energy(chunk.to(device, torch.float64)) for chunk in data.split(batch_size)])


def average_log_likelihood(rbm: RBM, data: Tensor, log_z: float) -> float:
    """Mean log p(v) = -mean F(v) - log Z, in nats per sample."""
    return float(-free_energies(rbm, data).mean()) - float(log_z)


@torch.no_grad()
def pseudo_log_likelihood(rbm: RBM, data: Tensor, generator: torch.Generator | None = None,
                          flip: Tensor | None = None) -> Tensor:
    """Stochastic pseudo-log-likelihood per sample, as scikit-learn defines it.

    For each sample one visible unit i is drawn at random and flipped (v -> ṽ):
    PL(v) ≈ n_visible · log sigmoid(F(ṽ) - F(v)), an unbiased estimate of Σ_i log p(v_i | v_-i)
    for binary visible units.

    Args:
        rbm: the model.
        data: (n, n_visible) samples.
        generator: draws the flipped units.
        flip: (n,) the unit flipped in each row, instead of drawing them.

    Returns:
        (n,) float64 on the CPU.
    """
    data = torch.as_tensor(data).flatten(1).to(torch.float64)
    idx = torch.randint(0, data.shape[1], (len(data),), generator=generator) if flip is None else flip.cpu()
    flipped = data.clone()
    rows = torch.arange(len(data))
    flipped[rows, idx] = 1.0 - flipped[rows, idx]
    return data.shape[1] * F.logsigmoid(free_energies(rbm, flipped) - free_energies(rbm, data)).cpu()
