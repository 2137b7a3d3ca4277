"""Variational lower bound on log p(v) of a two-layer DBN.

With Q(h|v) = p(h | v) of the bottom RBM (factorial) and the top RBM's marginal over its
visible layer p₂(h) = exp(-F₂(h)) / Z₂:

    log p(v) ≥ E_Q[log p(v | h) - F₂(h)] - log Z₂ + H(Q(h | v)),

the bound of Hinton, Osindero & Teh (2006) as evaluated in Salakhutdinov & Murray (2008),
with the expectation estimated from ``n_samples`` draws h ~ Q and log Z₂ from AIS or exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dbn.dbn import DBN
from dbn.eval.partition import float64_copy


@torch.no_grad()
def dbn_lower_bound(dbn: DBN, data: Tensor, log_z_top: float, n_samples: int = 100,
                    generator: torch.Generator | None = None, batch_size: int = 1000) -> Tensor:
    """Per-sample lower bound (nats) on log p(v) of a 2-layer binary DBN.  (n, n_visible) -> (n,)"""
    if len(dbn.layers) != 2:
        raise ValueError(f"the bound is implemented for 2-layer DBNs, this one has {len(dbn.layers)} layers")
    if any(r.visible.name != "bernoulli" or r.hidden.name != "bernoulli" for r in dbn.layers):
        raise ValueError("the bound needs Bernoulli units in both layers")
    bottom, top = float64_copy(dbn.layers[0]), float64_copy(dbn.layers[1])
    out = []
    for v in torch.as_tensor(data).flatten(1).to(bottom.weight).split(batch_size):
        q = bottom.hidden_mean(v)  # Q(h_j = 1 | v)
        entropy = -(torch.xlogy(q, q) + torch.xlogy(1 - q, 1 - q)).sum(1)
        total = torch.zeros(len(v), dtype=torch.float64, device=v.device)
        for _ in range(n_samples):
            h = bottom.hidden.sample(q, generator)
            a = bottom.visible_pre(h)
            log_p_v_given_h = (v * F.logsigmoid(a) + (1 - v) * F.logsigmoid(-a)).sum(1)
            total += log_p_v_given_h - top.free_energy(h)
        out.append(total / n_samples + entropy - log_z_top)
    return torch.cat(out)
