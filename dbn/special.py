"""Special functions: softplus without log1p, and for the ReLU units the integral of softplus (a dilogarithm) and
the inverse of softplus.

Torch only, differentiable, accurate to float64 round-off.

References:
    Lewin (1981), "Polylogarithms and associated functions" (Landen's identity, the reflection formula);
    Nair & Hinton (2010), "Rectified linear units improve restricted Boltzmann machines".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def softplus(x: Tensor) -> Tensor:
    """log(1 + eˣ), elementwise: ``F.softplus`` under autograd, in float64 or off the CPU, else a faster form.

    On CPU, torch's float32 and bfloat16 softplus (and log1p, logsigmoid) run unvectorised, at 5-10 ns an element
    on one core, while sigmoid and log are vectorised (about 1 ns). The free energy of binary hidden units, which
    every CD update's monitor, AIS and parallel tempering evaluate, is a sum of softplus; here, without autograd,

        softplus(x) = max(x, 0) - log sigmoid(|x|)

    (sigmoid(|x|) lies in [1/2, 1), so the log neither overflows nor loses the large-x branch), 3-5x faster
    on a 2-core CPU (``benchmarks/softplus.py``), with the same absolute error as torch's result in float32
    (within 6e-7 over [-120, 120], ``tests/test_units.py``). Float64, whose torch softplus is vectorised,
    other devices (where torch's softplus is one fused kernel; not measured here), and anything autograd will
    differentiate go to ``F.softplus``, whose backward is sigmoid.
    """
    if x.device.type != "cpu" or x.dtype == torch.float64 or (x.requires_grad and torch.is_grad_enabled()):
        return F.softplus(x)
    return x.clamp_min(0).sub_(torch.sigmoid(x.abs()).log_())


def _li2_small(u: Tensor) -> Tensor:
    """Li₂(u) = Σ_k u^k / k² for 0 ≤ u ≤ 1/2, by Horner's rule; truncation error < 2^-K / K²."""
    terms = 24 if u.dtype in (torch.float32, torch.float16, torch.bfloat16) else 48
    acc = torch.full_like(u, 1.0 / terms**2)
    for k in range(terms - 1, 0, -1):
        acc = acc * u + 1.0 / k**2
    return acc * u


def softplus_integral(x: Tensor) -> Tensor:
    """A(x) = ∫_{-∞}^x softplus(t) dt = -Li₂(-eˣ), elementwise, with dA/dx = softplus(x) exactly.

    Computed from Landen's identity, A(x) = ½ softplus(x)² + Li₂(sigmoid(x)), and for x > 0 the
    reflection Li₂(u) + Li₂(1 - u) = π²/6 - log u · log(1 - u), so that the series of Li₂ only
    ever sees arguments sigmoid(-|x|) ≤ 1/2:

        x ≤ 0:  A(x) = ½ softplus(x)² + Li₂(sigmoid(x))
        x > 0:  A(x) = ½ softplus(x)² + π²/6 - softplus(x)·softplus(-x) - Li₂(sigmoid(-x))

    A(0) = π²/12, and A(x) → x²/2 + π²/6 for large x.  (...) -> (...)
    """
    return _SoftplusIntegral.apply(x)


class _SoftplusIntegral(torch.autograd.Function):
    """A(x) with the analytic gradient softplus(x): no graph through the series."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        sp_pos, sp_neg = F.softplus(x), F.softplus(-x)
        li2 = _li2_small(torch.sigmoid(-x.abs()))
        low = 0.5 * sp_pos.square() + li2
        high = 0.5 * sp_pos.square() + (math.pi**2 / 6) - sp_pos * sp_neg - li2
        return torch.where(x > 0, high, low)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * F.softplus(x)


def softplus_inverse(mean: Tensor) -> Tensor:
    """x with softplus(x) = mean: log(eᵐ - 1) = m + log(1 - e⁻ᵐ), stable for small and large m (0 -> -inf)."""
    return mean + torch.log(-torch.expm1(-mean))
