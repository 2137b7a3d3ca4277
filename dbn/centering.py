"""Centered RBMs: the energy with offsets subtracted from the states, trained in the centered coordinates.

The centered energy of binary units, with offsets μ (visible) and λ (hidden), is

    E_c(v, h) = -(v - μ)·b_c - c_c·(h - λ) - (h - λ)ᵀ W (v - μ).

Expanding it gives an ordinary RBM with the same W and

    b = b_c - Wᵀλ,        c = c_c - Wμ,

plus a constant (μ·b_c + λ·c_c - λᵀWμ) that cancels in p(v). So the model family is unchanged; what
changes is the coordinates that SGD moves in. The centered gradient is the chain rule of the plain
one through that map: with G the gradient of a loss L in plain coordinates,

    ∂L/∂W_c = G_W - λ G_bᵀ - G_c μᵀ,      ∂L/∂b_c = G_b,      ∂L/∂c_c = G_c,

which for CD is <(h - λ)(v - μ)ᵀ>_model - <(h - λ)(v - μ)ᵀ>_data for the weights (Melchior et al. 2016,
eq. 13) and the plain statistics for the biases. With the offsets at the units' means the weight
gradient no longer carries the means' outer product, which is what conditions the problem.

Here the :class:`~dbn.rbm.RBM` always holds the plain parameters (so a centered RBM *is* an ordinary
``dbn.RBM`` for stacking, evaluation, sampling and saving), SGD's momentum buffers hold the centered
velocities u, and a step W_c -= η u_W, b_c -= η u_b, c_c -= η u_c is applied in plain coordinates as

    W -= η u_W,      b -= η_b u_b - η u_Wᵀλ,      c -= η_c u_c - η u_W μ.

Moving the offsets (μ ← (1-ν)μ + ν<v>_data, λ ← (1-ν)λ + ν<p(h|v)>_data, Melchior's Algorithm 1) while the
plain parameters stay put is their re-parametrisation b_c += Wᵀ(λ' - λ), c_c += W(μ' - μ): the model does
not change. The derivation holds for any unit type whose visible energy enters through b and Wᵀh and
whose hidden units see c + Wv (every type here except Gaussian units with learned variances, whose
hidden units see W(v/σ²)).

References:
    Montavon & Müller (2012), "Deep Boltzmann machines and the centering trick";
    Melchior, Fischer & Wiskott (2016), "How to center deep Boltzmann machines", JMLR 17.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dbn.rbm import RBM


@dataclass
class Offsets:
    """The offsets of a centered RBM and how fast they follow the data (tensors updated in place).

    Attributes:
        visible: μ, (n_visible,): running mean of the data.
        hidden: λ, (n_hidden,): running mean of p(h | v_data).
        rate: ν, the sliding-average rate of both (Melchior et al.: 0.01; 1 = the batch's own means).
    """

    visible: Tensor
    hidden: Tensor
    rate: float = 0.01

    @torch.no_grad()
    def follow(self, visible_mean: Tensor, hidden_mean: Tensor) -> None:
        """μ ← (1 - ν) μ + ν visible_mean and λ ← (1 - ν) λ + ν hidden_mean, in place."""
        self.visible.lerp_(visible_mean.to(self.visible), self.rate)
        self.hidden.lerp_(hidden_mean.to(self.hidden), self.rate)


def check_centerable(rbm: RBM) -> None:
    """ValueError unless the centering derivation holds for ``rbm``'s unit types (see the module docstring)."""
    if rbm.convolutional:
        raise ValueError("centering is written for dense layers (one offset per unit); this layer is convolutional: "
                         "set centering=false")
    if rbm.log_variance is not None:
        raise ValueError("centering needs hidden units that see c + W·v; Gaussian visible units with learned "
                         "variances see W·(v/σ²): use visible=gaussian (fixed variances) or centering=false")


def centered_biases(rbm: RBM, offsets: Offsets) -> tuple[Tensor, Tensor]:
    """The centered biases of ``rbm``'s model: b_c = b + Wᵀλ, c_c = c + Wμ.  -> (n_visible,), (n_hidden,)"""
    W = rbm.weight.detach()
    return rbm.visible_bias.detach() + offsets.hidden @ W, rbm.hidden_bias.detach() + W @ offsets.visible


@torch.no_grad()
def load_centered(rbm: RBM, weight: Tensor, visible_bias: Tensor, hidden_bias: Tensor, offsets: Offsets) -> RBM:
    """Set ``rbm`` to the plain form of a centered model (W, b_c, c_c, μ, λ): b = b_c - Wᵀλ, c = c_c - Wμ.

    The plain RBM has the same p(v) and p(v, h) and the same free energies up to one constant
    (:func:`centered_free_energy`). Returns ``rbm``.
    """
    check_centerable(rbm)
    rbm.weight.copy_(weight)
    rbm.visible_bias.copy_(visible_bias - offsets.hidden.to(weight) @ weight)
    rbm.hidden_bias.copy_(hidden_bias - weight @ offsets.visible.to(weight))
    return rbm


def centered_free_energy(weight: Tensor, visible_bias: Tensor, hidden_bias: Tensor, offsets: Offsets,
                         v: Tensor) -> Tensor:
    """F_c(v) = -(v - μ)·b_c + λ·x - Σ_j softplus(x_j), x = c_c + W(v - μ), for binary units.  (batch, n_visible) -> (batch,)

    This is -log Σ_h exp(-E_c(v, h)); it equals the plain free energy plus μ·b_c + λ·c_c - λᵀWμ.
    """
    x = hidden_bias + (v - offsets.visible) @ weight.t()
    return -(v - offsets.visible) @ visible_bias + x @ offsets.hidden - F.softplus(x).sum(-1)


@torch.no_grad()
def center_gradient(velocity: Tensor, visible_grad: Tensor, hidden_grad: Tensor, offsets: Offsets) -> Tensor:
    """Add the centering terms to a weight gradient (or SGD velocity) in place: u -= λ G_bᵀ + G_c μᵀ.

    ``visible_grad`` G_b and ``hidden_grad`` G_c are the plain (= centered) bias gradients; the two
    rank-one terms go in as one (n_hidden, 2) x (2, n_visible) product.
    """
    dtype = velocity.dtype
    left = torch.stack([offsets.hidden.to(dtype), hidden_grad.to(dtype)], dim=1)
    right = torch.stack([visible_grad.to(dtype), offsets.visible.to(dtype)])
    return velocity.addmm_(left, right, alpha=-1.0)


@torch.no_grad()
def centered_bias_step(rbm: RBM, weight_velocity: Tensor, lr: float | Tensor, offsets: Offsets) -> None:
    """The part of a centered step that the plain biases get from the weights' step: b += η u_Wᵀλ, c += η u_W μ.

    (After W -= η u_W and the biases' own SGD steps, this keeps b = b_c - Wᵀλ and c = c_c - Wμ.) ``lr`` may be a
    0-d tensor (the compiled update's).
    """
    db = offsets.hidden.to(weight_velocity) @ weight_velocity
    dc = weight_velocity @ offsets.visible.to(weight_velocity)
    if isinstance(lr, Tensor):
        rbm.visible_bias.add_(db * lr)
        rbm.hidden_bias.add_(dc * lr)
    else:
        rbm.visible_bias.add_(db, alpha=lr)
        rbm.hidden_bias.add_(dc, alpha=lr)


@torch.no_grad()
def start_centering(rbm: RBM, offsets: Offsets, visible_mean: Tensor, hidden_offset: float = 0.5) -> None:
    """Melchior et al.'s start: μ = the data's mean, λ = ``hidden_offset``, and the current b, c read as b_c, c_c.

    With ``init_visible_bias`` having set b = logit(μ), the centered model starts at b_c = logit(μ),
    c_c = 0 (their Algorithm 1); the plain parameters become b - Wᵀλ, c - Wμ.
    """
    offsets.visible.copy_(visible_mean)
    offsets.hidden.fill_(hidden_offset)
    load_centered(rbm, rbm.weight.detach().clone(), rbm.visible_bias.detach().clone(),
                  rbm.hidden_bias.detach().clone(), offsets)
