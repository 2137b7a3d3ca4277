"""Unit types of an RBM layer.

Each unit type knows three things about its layer, given the pre-activation
(total input) ``x`` the other layer sends it:

* ``mean(x)``: E[u | x], the conditional mean (differentiable, used by the
  feed-forward pass of a fine-tuned DBN too);
* ``sample(mean, generator)``: a draw from the conditional distribution;
* ``log_partition(x)``: log Σ_u exp(u·x) summed over the units, which is what a
  layer contributes to the free energy when it is summed out analytically.

Visible units also contribute a bias term ``energy(v, bias)`` (the part of the
energy that does not involve the weights) and a ``check`` of the values a data
set may hold for them.

The maths here imports only torch (see STYLE.md): new unit types (Gaussian,
ReLU) plug in by subclassing :class:`Units` and registering a name.

References:
    Hinton (2010), "A practical guide to training restricted Boltzmann machines".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class Units:
    """Interface of a unit type; stateless, so one instance serves every layer."""

    name: str = "units"

    def mean(self, pre: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, mean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def log_partition(self, pre: Tensor) -> Tensor:
        """log Σ_u exp(u·pre) summed over units: (batch, n) -> (batch,)."""
        raise NotImplementedError

    def energy(self, v: Tensor, bias: Tensor) -> Tensor:
        """Bias part of the energy when these units are visible: (batch, n) -> (batch,)."""
        raise NotImplementedError

    def bias_for_mean(self, mean: Tensor) -> Tensor:
        """Bias that gives these units the given mean when the other layer is silent."""
        raise NotImplementedError

    def check(self, x: Tensor, what: str = "data") -> None:
        """Raise ValueError naming the problem if ``x`` cannot be data for these units."""
        if not torch.isfinite(x).all():
            n_bad = int((~torch.isfinite(x)).sum())
            raise ValueError(
                f"{what} holds {n_bad} NaN or infinite values; remove or impute them before training"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Bernoulli(Units):
    """Binary units u ∈ {0, 1} with p(u=1 | x) = sigmoid(x)."""

    name = "bernoulli"

    def mean(self, pre: Tensor) -> Tensor:
        """E[u | x] = sigmoid(x)."""
        return torch.sigmoid(pre)

    def sample(self, mean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """u = 1[r < p] with r ~ U(0, 1).

        Comparing against a uniform draw is ~2.5x cheaper than ``torch.bernoulli``
        on CPU and gives the same distribution.
        """
        r = torch.rand(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return (r < mean).to(mean.dtype)

    def log_partition(self, pre: Tensor) -> Tensor:
        """Σ_j log(1 + exp(x_j)) = Σ_j softplus(x_j)."""
        return F.softplus(pre).sum(dim=-1)

    def energy(self, v: Tensor, bias: Tensor) -> Tensor:
        """-b·v."""
        return -(v @ bias)

    def bias_for_mean(self, mean: Tensor) -> Tensor:
        """b = log(p / (1 - p)), p clipped to [1e-3, 1 - 1e-3] (Hinton 2010, section 8.1)."""
        return torch.logit(mean.clamp(1e-3, 1 - 1e-3))

    def check(self, x: Tensor, what: str = "data") -> None:
        super().check(x, what)
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{what} has values in [{lo:g}, {hi:g}] but Bernoulli visible units need values in [0, 1]; "
                "scale the data (e.g. pixels / 255, or min-max scaling) or use real-valued visible units"
            )


UNITS: dict[str, Units] = {"bernoulli": Bernoulli()}


def get_units(name: str | Units) -> Units:
    """Look a unit type up by name (case-insensitive); instances pass through."""
    if isinstance(name, Units):
        return name
    key = str(name).lower()
    if key not in UNITS:
        raise ValueError(f"unknown unit type {name!r}; choose one of {sorted(UNITS)}")
    return UNITS[key]
