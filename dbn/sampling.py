"""Contrastive divergence (CD-k) and persistent CD as plain functions.

The gradient of the log-likelihood of an RBM is

    ∂ log p(v) / ∂θ = -∂F(v)/∂θ + E_model[∂F(v)/∂θ],

so minimising ``F(v_data) - F(v_model)`` by gradient descent, with ``v_model``
held fixed, follows the CD estimate: for the weight of Bernoulli units
ΔW ∝ <h vᵀ>_data - <h vᵀ>_model with h replaced by p(h | v). The free energies
are computed from the hidden pre-activations the chain computes anyway, so a
CD-1 step costs five matrix products: c + W·v_data, the reconstruction, the
negative pre-activation, and the two weight-gradient products of backward.

Missing values (a ``mask``, 1 = observed): each case is its own RBM over its observed
entries, sharing the weights (Salakhutdinov, Mnih & Hinton 2007). The data are
zero-filled where missing, so the hidden units see only observed entries, and the
negative visible states are zeroed at the same places. The missing entries then add
the same terms to F(v_data) and F(v_model) of every row, which cancel in the loss and
its gradient: no weight or bias of a missing entry moves on that case, and the CD
step does no other extra work.

References:
    Hinton (2002), "Training products of experts by minimizing contrastive divergence";
    Tieleman (2008), "Training RBMs using approximations to the likelihood gradient" (PCD);
    Salakhutdinov, Mnih & Hinton (2007), "Restricted Boltzmann machines for collaborative filtering".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dbn.rbm import RBM


@dataclass
class CDStep:
    """What one CD/PCD step computed.

    Attributes:
        v_data: the data batch.
        v_model: visible states of the negative phase (no gradient).
        pre_data: c + W·v_data, carrying the gradient.
        pre_model: c + W·v_model, carrying the gradient.
        recon: one-step reconstruction E[v | h0], h0 ~ p(h | v_data), or None if not asked for;
            it fills the missing entries too.
        mask: observed entries of ``v_data`` (1), or None when all are observed.
    """

    v_data: Tensor
    v_model: Tensor
    pre_data: Tensor
    pre_model: Tensor
    recon: Tensor | None
    mask: Tensor | None = None


def contrastive_divergence(
    rbm: RBM,
    v_data: Tensor,
    k: int = 1,
    chains: Tensor | None = None,
    sample_visible: bool = False,
    reconstruct: bool = True,
    generator: torch.Generator | None = None,
    mask: Tensor | None = None,
) -> CDStep:
    """Run the Gibbs chain of one CD-k (``chains is None``) or PCD-k step.

    CD-k starts the chain at the data: h0 ~ p(h | v_data), then k sweeps
    v_t ~ p(v | h_{t-1}), h_t ~ p(h | v_t). The last visible state is the mean
    p(v | h) unless ``sample_visible`` (Hinton 2010, section 3.2: less sampling noise);
    Gaussian units with learned variances always sample it, because a mean carries none
    of the noise variance and the variance gradient would then only ever grow σ.
    PCD-k continues the persistent ``chains`` (n_chains, n_visible) for k sweeps
    with sampled states and writes the new states back into ``chains`` in place.

    Args:
        rbm: the model.
        v_data: (batch, n_visible) data batch.
        k: number of Gibbs sweeps, >= 1.
        chains: persistent chain states, updated in place; None for CD.
        sample_visible: use a sample, not the mean, as the last CD visible state.
        reconstruct: also return the one-step reconstruction (free for CD, one product for PCD).
        generator: random generator for the chain.
        mask: observed entries (1) of ``v_data``, which must be zero where the mask is 0; CD only.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if mask is not None and chains is not None:
        raise ValueError("missing values need CD (pretrain.persistent=false): persistent chains are not tied to "
                         "a case, so they cannot leave out its missing entries")
    sample_last = sample_visible or rbm.log_variance is not None
    pre_data = rbm.hidden_pre(v_data)
    recon = None
    with torch.no_grad():
        h = rbm.hidden.sample(rbm.hidden.mean(pre_data.detach()), generator)
        if chains is None:
            v = v_data
            for step in range(k):
                v_mean = rbm.visible_mean(h)
                if step == 0:
                    recon = v_mean
                last = step == k - 1
                v = v_mean if (last and not sample_last) else rbm.visible.sample(v_mean, generator, rbm.log_variance)
                if mask is not None:
                    v = v * mask  # this case's RBM has no units where its data are missing
                if not last:
                    _, h = rbm.sample_hidden(v, generator)
        else:
            if reconstruct:
                recon = rbm.visible_mean(h)
            v = chains
            for _ in range(k):
                _, h = rbm.sample_hidden(v, generator)
                _, v = rbm.sample_visible(h, generator)
            chains.copy_(v)
            v = chains.clone()
    pre_model = rbm.hidden_pre(v)
    return CDStep(v_data=v_data, v_model=v, pre_data=pre_data, pre_model=pre_model, recon=recon, mask=mask)


def cd_loss(rbm: RBM, step: CDStep) -> Tensor:
    """mean F(v_data) - mean F(v_model), from the step's cached pre-activations.

    Its gradient is minus the CD estimate of the log-likelihood gradient; its
    value is the free-energy difference (not a likelihood). With a mask the missing
    entries' terms are equal in both phases of every row and cancel (module docstring),
    so the mask is not needed here.
    """
    f_data = rbm.free_energy(step.v_data, hidden_pre=step.pre_data)
    f_model = rbm.free_energy(step.v_model, hidden_pre=step.pre_model)
    return f_data.mean() - f_model.mean()


def sparsity_penalty(pre_data: Tensor, q_running: Tensor, target: float, cost: float, mean_fn) -> Tensor:
    """Surrogate whose gradient is the sparsity term of Hinton (2010), section 11.

    With q the running mean activation of each hidden unit, the gradient of the
    cross-entropy between the target p and q with respect to the units' total
    input is cost·(q - p): added to the hidden biases and, times the data, to
    the weights. ``q_running`` (n_hidden,) is updated in place with decay 0.9.

    Returns:
        cost · Σ_j (q_j - p) · mean_batch(pre_j), with q held constant.
    """
    with torch.no_grad():
        q_running.mul_(0.9).add_(mean_fn(pre_data.detach()).mean(0), alpha=0.1)
        coeff = cost * (q_running - target)
    return (coeff * pre_data.mean(0)).sum()
