"""Unit types of an RBM layer: Bernoulli, Gaussian and K-way softmax (visible), noisy rectified linear (ReLU).

Each unit type knows three things about its layer, given the pre-activation
(total input) ``x`` the other layer sends it:

* ``mean(x)``: E[u | x], the conditional mean (differentiable, used by the
  feed-forward pass of a fine-tuned DBN too);
* ``sample(mean, generator, log_var)``: a draw from the conditional distribution;
* ``log_partition(x)``: log Σ_u exp(u·x) (an integral for real-valued units) summed
  over the units, which is what a layer contributes to the free energy when it is
  summed out analytically.

Visible units also contribute a bias term ``energy(v, bias, log_var, mask)`` (the part
of the energy that does not involve the weights) and a ``check`` of the values a data
set may hold for them.

The unit types are stateless, so one instance serves every layer. The only parameter a
unit type may need beyond the biases, the per-unit variance σ² = exp(z) of Gaussian
visible units, is owned by the RBM (``RBM.log_variance``, an ``nn.Parameter``) and
passed in as ``log_var``; it is None for every other unit type, and for Gaussian units
with unit variance, so those paths do no extra work.

A ``mask`` (1 = observed) leaves missing visible entries out of the model: the caller
zero-fills them, so they add nothing to the hidden units' input, and ``energy`` skips
them (Salakhutdinov, Mnih & Hinton 2007, one RBM per case over its observed entries).

The maths here imports only torch (see STYLE.md).

References:
    Hinton (2010), "A practical guide to training restricted Boltzmann machines";
    Cho, Raiko & Ilin (2011), "Improved learning of Gaussian-Bernoulli restricted Boltzmann machines";
    Nair & Hinton (2010), "Rectified linear units improve restricted Boltzmann machines";
    Salakhutdinov, Mnih & Hinton (2007), "Restricted Boltzmann machines for collaborative filtering".
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from dbn.draws import normal, uniform
from dbn.special import softplus, softplus_integral, softplus_inverse

#: Gaussian visible units refuse data whose features are this far from mean 0, std 1
UNSCALED_MEAN, UNSCALED_STD = 4.0, 4.0


class Units:
    """Interface of a unit type; stateless, so one instance serves every layer.

    Attributes:
        name: the registered name (``model.visible=NAME``, saved with a DBN).
        can_be_hidden: whether the type has a ``log_partition`` (Gaussian units are visible-only here).
        learns_variance: the RBM keeps a learned ``log_variance`` for these (visible) units.
        group: units come in groups of this size (K-way softmax); the layer size must be a multiple.
    """

    name: str = "units"
    can_be_hidden: bool = True
    learns_variance: bool = False
    group: int = 1

    def mean(self, pre: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, mean: Tensor, generator: torch.Generator | None = None, log_var: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def log_partition(self, pre: Tensor) -> Tensor:
        """log Σ_u exp(u·pre) summed over units: (batch, n) -> (batch,)."""
        raise NotImplementedError

    def energy(self, v: Tensor, bias: Tensor, log_var: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Bias part of the energy when these units are visible: (batch, n) -> (batch,).

        ``v`` is zero where ``mask`` is 0; for the linear terms (-b·v) that already leaves the missing units out.
        """
        raise NotImplementedError

    def mean_energy_grad(self, v: Tensor, bias: Tensor, log_var: Tensor | None = None,
                         mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Batch means of the derivatives of ``energy`` by the bias and by ``log_var``: (n,) each (None without it).

        The closed-form CD update (:func:`dbn.sampling.cd_gradients`) uses these in place of autograd;
        the means are taken in float32 or wider.
        """
        raise NotImplementedError

    def bias_for_mean(self, mean: Tensor) -> Tensor:
        """Bias that gives these units the given mean when the other layer is silent."""
        raise NotImplementedError

    def check(self, x: Tensor, what: str = "data") -> None:
        """Raise ValueError naming the problem if ``x`` cannot be data for these units."""
        if not torch.isfinite(x).all():
            n_bad = int((~torch.isfinite(x)).sum())
            raise ValueError(
                f"{what} holds {n_bad} NaN or infinite values; remove or impute them before training, "
                "or mark them as missing (data.missing=true)"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def check_probabilities(lo: float, hi: float, what: str, fix: str) -> None:
    """ValueError naming the range unless [lo, hi] lies in [0, 1], what Bernoulli visible units can model.

    Args:
        lo, hi: the smallest and largest value of the data.
        what: the data's name in the message.
        fix: what the user should do, ending the message.
    """
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{what} has values in [{lo:g}, {hi:g}] but Bernoulli visible units need values in [0, 1] "
                         f"(probabilities or binary data); {fix}")


class Bernoulli(Units):
    """Binary units u ∈ {0, 1} with p(u=1 | x) = sigmoid(x)."""

    name = "bernoulli"

    def mean(self, pre: Tensor) -> Tensor:
        """E[u | x] = sigmoid(x)."""
        return torch.sigmoid(pre)

    def sample(self, mean: Tensor, generator: torch.Generator | None = None, log_var: Tensor | None = None) -> Tensor:
        """u = 1[r < p] with r ~ U(0, 1).

        Comparing against a uniform draw is ~2.5x cheaper than ``torch.bernoulli``
        on CPU and gives the same distribution. The draw is at least float32: a bfloat16
        uniform has 8 significant bits, which would round every probability to a coarse grid.
        """
        dtype = torch.promote_types(mean.dtype, torch.float32)
        r = uniform(mean, generator, dtype)
        return r.lt_(mean).to(mean.dtype)  # in place: 1.0 where r < p (no bool tensor, no second allocation)

    def log_partition(self, pre: Tensor) -> Tensor:
        """Σ_j log(1 + exp(x_j)) = Σ_j softplus(x_j)."""
        return softplus(pre).sum(dim=-1)

    def energy(self, v: Tensor, bias: Tensor, log_var: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """-b·v."""
        return -(v @ bias)

    def mean_energy_grad(self, v: Tensor, bias: Tensor, log_var: Tensor | None = None,
                         mask: Tensor | None = None) -> tuple[Tensor, None]:
        """mean ∂(-b·v)/∂b = -mean(v) (zero at missing entries, which are zero-filled)."""
        return -v.mean(0, dtype=torch.promote_types(v.dtype, torch.float32)), None

    def bias_for_mean(self, mean: Tensor) -> Tensor:
        """b = log(p / (1 - p)), p clipped to [1e-3, 1 - 1e-3] (Hinton 2010, section 8.1)."""
        return torch.logit(mean.clamp(1e-3, 1 - 1e-3))

    def check(self, x: Tensor, what: str = "data") -> None:
        super().check(x, what)
        check_probabilities(float(x.min()), float(x.max()), what,
                            "scale the data (e.g. pixels / 255, or min-max scaling) or use real-valued visible units "
                            "(model.visible=gaussian with data.scale=standard)")


class Gaussian(Units):
    """Real-valued visible units, p(v_i | h) = N(b_i + Wᵀ_i·h, σ_i²), in Cho, Raiko & Ilin's (2011) parameterisation.

    The energy with Bernoulli hidden units is

        E(v, h) = Σ_i (v_i - b_i)² / (2σ_i²) - c·h - Σ_ij h_j W_ji v_i / σ_i²,   σ_i² = exp(z_i),

    so the hidden units see v / σ² (``RBM.hidden_pre`` divides), p(h_j = 1 | v) = sigmoid(c_j + Σ_i W_ji v_i / σ_i²),
    and the visible conditional mean is the pre-activation itself, b + Wᵀh (with the variance only
    in the interaction term, σ² does not scale the mean). ``gaussian`` fixes σ = 1, for standardised
    data (Hinton 2010, section 13.2); ``gaussian_learned`` learns z_i = log σ_i², an ``nn.Parameter``
    of the RBM trained by the same CD loss.

    Args:
        learn_variance: the RBM learns the log-variances (name ``gaussian_learned``).
    """

    can_be_hidden = False

    def __init__(self, learn_variance: bool = False) -> None:
        self.learns_variance = bool(learn_variance)
        self.name = "gaussian_learned" if self.learns_variance else "gaussian"

    def __repr__(self) -> str:
        return f"Gaussian(learn_variance={self.learns_variance})"

    def mean(self, pre: Tensor) -> Tensor:
        """E[v | h] = b + Wᵀh, the pre-activation."""
        return pre

    def sample(self, mean: Tensor, generator: torch.Generator | None = None, log_var: Tensor | None = None) -> Tensor:
        """v = mean + σ ε with ε ~ N(0, 1); σ = exp(z / 2), or 1 without ``log_var``."""
        noise = normal(mean, generator)
        if log_var is None:
            return mean + noise
        return torch.addcmul(mean, noise, torch.exp(0.5 * log_var))

    def log_partition(self, pre: Tensor) -> Tensor:
        raise ValueError("Gaussian units are visible-only here; use bernoulli or relu hidden units")

    def energy(self, v: Tensor, bias: Tensor, log_var: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Σ_i m_i (v_i - b_i)² / (2σ_i²), over the observed units (m = 1 without a mask)."""
        d = (v - bias).square()
        if mask is not None:
            d = d * mask
        if log_var is None:
            return 0.5 * d.sum(-1)
        return 0.5 * (d @ torch.exp(-log_var))

    def mean_energy_grad(self, v: Tensor, bias: Tensor, log_var: Tensor | None = None,
                         mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Means of ∂E/∂b_i = -m_i (v_i - b_i) / σ_i² and ∂E/∂z_i = -m_i (v_i - b_i)² / (2σ_i²), σ_i² = exp(z_i)."""
        acc = torch.promote_types(v.dtype, torch.float32)
        d = v - bias
        if mask is not None:
            d = d * mask
        if log_var is None:
            return -d.mean(0, dtype=acc), None
        inv_var = torch.exp(-log_var)
        return -d.mean(0, dtype=acc) * inv_var, -0.5 * d.square().mean(0, dtype=acc) * inv_var

    def bias_for_mean(self, mean: Tensor) -> Tensor:
        """b = the data mean (E[v | h = 0] = b)."""
        return mean.clone()

    def check(self, x: Tensor, what: str = "data") -> None:
        """Refuse data that are obviously not standardised (a feature with |mean| > 4 or std > 4)."""
        super().check(x, what)
        if len(x) < 2:
            return
        mean, std = x.mean(0), x.std(0)
        j = int(torch.argmax(torch.maximum(mean.abs() / UNSCALED_MEAN, std / UNSCALED_STD)))
        if abs(float(mean[j])) > UNSCALED_MEAN or float(std[j]) > UNSCALED_STD:
            raise ValueError(
                f"{what} does not look standardised: feature {j} has mean {float(mean[j]):.4g} and std "
                f"{float(std[j]):.4g}, but Gaussian visible units (σ = 1 to start with) expect mean 0 and std 1; "
                "set data.scale=standard (training-split mean and std) or standardise the features yourself"
            )


class ReLU(Units):
    """Noisy rectified linear units (Nair & Hinton 2010): the continuum of tied binary units.

    Nair & Hinton's stepped sigmoid unit (SSU) is an infinite set of binary units with the same
    input x and biases offset by -1/2, -3/2, -5/2, ...; their summed state has mean
    Σ_{n≥1} sigmoid(x - n + ½) ≈ softplus(x) and its exact log-partition is

        S(x) = Σ_{n≥1} softplus(x - n + ½).

    These units are the continuum version of that sum (the midpoint rule turned into the integral):

        mean(x) = softplus(x) = log(1 + eˣ),
        log_partition(x) = A(x) = ∫_0^∞ softplus(x - t) dt = ∫_{-∞}^x softplus = -Li₂(-eˣ),

    a convex log-partition whose derivative is exactly the mean, so the CD gradient through the
    free energy is <softplus(x) v>_data - <softplus(x) v>_model. By Euler-Maclaurin for midpoint
    sums, S(x) = A(x) - sigmoid(x)/24 + 7 sigmoid''(x)/5760 - ...: A exceeds the SSU's exact
    log-partition by at most 1/24 nats per unit (and softplus exceeds the SSU mean by
    sigmoid'(x)/24 + O(1.6e-4), at most 0.0106); the tests check both against the brute-force sums.

    Sampling is Nair & Hinton's NReLU approximation, u = max(0, x + N(0, sigmoid(x))), with x
    recovered from the mean (x = softplus⁻¹(mean)). Its mean, x Φ(x/s) + s φ(x/s) with s² = sigmoid(x),
    is below softplus(x) for small x (0.28 vs 0.69 at x = 0): the approximation of the paper.

    As visible units (the data layer above a ReLU layer) the energy is -b·v; the base measure of
    the continuum has no parameters, so it is left out (it cancels in the CD gradient).
    """

    name = "relu"

    def mean(self, pre: Tensor) -> Tensor:
        """E[u | x] = softplus(x), Nair & Hinton's approximation of the SSU's mean Σ_n sigmoid(x - n + ½)."""
        return softplus(pre)

    def sample(self, mean: Tensor, generator: torch.Generator | None = None, log_var: Tensor | None = None) -> Tensor:
        """u = max(0, x + sqrt(sigmoid(x)) ε), ε ~ N(0, 1), with x = softplus⁻¹(mean)."""
        x = softplus_inverse(mean)
        noise = normal(mean, generator)
        return torch.addcmul(x, noise, torch.sigmoid(x).sqrt()).clamp_min(0.0)

    def log_partition(self, pre: Tensor) -> Tensor:
        """Σ_j A(x_j), A(x) = ∫_{-∞}^x softplus(t) dt = -Li₂(-eˣ) (see the class docstring)."""
        return softplus_integral(pre).sum(dim=-1)

    def energy(self, v: Tensor, bias: Tensor, log_var: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """-b·v (the base measure carries no parameter and is left out)."""
        return -(v @ bias)

    def mean_energy_grad(self, v: Tensor, bias: Tensor, log_var: Tensor | None = None,
                         mask: Tensor | None = None) -> tuple[Tensor, None]:
        """mean ∂(-b·v)/∂b = -mean(v)."""
        return -v.mean(0, dtype=torch.promote_types(v.dtype, torch.float32)), None

    def bias_for_mean(self, mean: Tensor) -> Tensor:
        """b = softplus⁻¹(m), m clipped below at 1e-3."""
        return softplus_inverse(mean.clamp_min(1e-3))

    def check(self, x: Tensor, what: str = "data") -> None:
        super().check(x, what)
        lo = float(x.min())
        if lo < 0.0:
            raise ValueError(f"{what} has values down to {lo:g} but ReLU visible units need values >= 0")


class Softmax(Units):
    """K-way softmax visible units: consecutive groups of K binary units with exactly one on (a K-level rating).

    Each group g of units i = gK .. gK+K-1 is one categorical variable with
    p(v_i = 1 | h) = exp(x_i) / Σ_{i' in g} exp(x_i'), x = b + Wᵀh (Salakhutdinov, Mnih & Hinton 2007).
    The energy is -b·v as for Bernoulli units; a missing rating is a group of zeros with mask 0.
    Visible-only here; registered as ``softmax2``, ``softmax5``, ... (any K >= 2).

    Args:
        k: the number of levels K.
    """

    can_be_hidden = False

    def __init__(self, k: int) -> None:
        if int(k) < 2:
            raise ValueError(f"softmax units need K >= 2 levels, got {k}")
        self.group = int(k)
        self.name = f"softmax{self.group}"

    def __repr__(self) -> str:
        return f"Softmax(k={self.group})"

    def mean(self, pre: Tensor) -> Tensor:
        """p(v_i = 1 | x) = softmax of x within each group of K."""
        return pre.unflatten(-1, (-1, self.group)).softmax(-1).flatten(-2)

    def sample(self, mean: Tensor, generator: torch.Generator | None = None, log_var: Tensor | None = None) -> Tensor:
        """One unit on per group, unit i with probability ``mean[i]``."""
        probs = mean.reshape(-1, self.group)
        idx = torch.multinomial(probs, 1, generator=generator)
        return torch.zeros_like(probs).scatter_(1, idx, 1.0).reshape(mean.shape)

    def log_partition(self, pre: Tensor) -> Tensor:
        raise ValueError("softmax units are visible-only here; use bernoulli or relu hidden units")

    def encode(self, ratings: Tensor) -> Tensor:
        """Ratings 1..K -> one-hot groups; a NaN (missing) rating gives a group of NaN.  (n, d) -> (n, d*K)"""
        ratings = torch.as_tensor(ratings)
        seen = ~torch.isnan(ratings) if ratings.is_floating_point() else torch.ones_like(ratings, dtype=torch.bool)
        values = ratings[seen]
        if len(values) and (not torch.equal(values, values.round()) or values.min() < 1 or values.max() > self.group):
            raise ValueError(f"{self.name} units encode integer ratings 1..{self.group} (NaN for missing), "
                             f"found values in [{float(values.min()):g}, {float(values.max()):g}]")
        levels = torch.arange(1, self.group + 1, dtype=torch.float64)
        hot = (ratings.to(torch.float64).unsqueeze(-1) == levels).to(torch.float32)
        hot[~seen] = float("nan")
        return hot.flatten(-2)

    def decode(self, mean: Tensor) -> Tensor:
        """Expected rating Σ_k k·p_k of each group.  (n, d*K) -> (n, d)"""
        levels = torch.arange(1, self.group + 1, dtype=mean.dtype, device=mean.device)
        return mean.unflatten(-1, (-1, self.group)) @ levels

    def energy(self, v: Tensor, bias: Tensor, log_var: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """-b·v."""
        return -(v @ bias)

    def mean_energy_grad(self, v: Tensor, bias: Tensor, log_var: Tensor | None = None,
                         mask: Tensor | None = None) -> tuple[Tensor, None]:
        """mean ∂(-b·v)/∂b = -mean(v) (zero at missing entries, which are zero-filled)."""
        return -v.mean(0, dtype=torch.promote_types(v.dtype, torch.float32)), None

    def bias_for_mean(self, mean: Tensor) -> Tensor:
        """b = log p, p clipped below at 1e-3: the softmax of log p is p when each group's p sums to 1."""
        return torch.log(mean.clamp_min(1e-3))

    def check(self, x: Tensor, what: str = "data") -> None:
        """Values in [0, 1], each group summing to 1 (a rating) or 0 (a missing one, zero-filled)."""
        super().check(x, what)
        if x.shape[-1] % self.group:
            raise ValueError(f"{what} has {x.shape[-1]} features, not a multiple of K = {self.group} "
                             f"for {self.name} units")
        lo, hi = float(x.min()), float(x.max())
        sums = x.unflatten(-1, (-1, self.group)).sum(-1)
        bad = ((sums - 1).abs() > 1e-4) & (sums.abs() > 1e-4)
        if lo < 0.0 or hi > 1.0 or bad.any():
            raise ValueError(
                f"{what} is not one-hot in groups of {self.group} (values in [{lo:g}, {hi:g}], {int(bad.sum())} groups "
                f"summing to neither 1 nor 0); give ratings 1..{self.group} with data.one_hot={self.group}"
            )


UNITS: dict[str, Units] = {
    "bernoulli": Bernoulli(),
    "gaussian": Gaussian(),
    "gaussian_learned": Gaussian(learn_variance=True),
    "relu": ReLU(),
}


def get_units(name: str | Units) -> Units:
    """Look a unit type up by name (case-insensitive); instances pass through."""
    if isinstance(name, Units):
        return name
    key = str(name).lower()
    match = re.fullmatch(r"softmax(\d+)", key)
    if key not in UNITS and match and int(match.group(1)) >= 2:
        UNITS[key] = Softmax(int(match.group(1)))
    if key not in UNITS:
        raise ValueError(f"unknown unit type {name!r}; choose one of {sorted(UNITS)} or softmaxK (K >= 2)")
    return UNITS[key]
