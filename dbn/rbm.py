"""Restricted Boltzmann Machine as a plain ``nn.Module``.

Energy of a joint state:

    E(v, h) = E_vis(v; b, σ) - c·h - h·W·(v / σ²)

with ``weight`` W of shape (n_hidden, n_visible) like ``nn.Linear``,
``visible_bias`` b and ``hidden_bias`` c. For Bernoulli (and ReLU) visible units
E_vis = -b·v and σ = 1; for Gaussian visible units E_vis = Σ_i (v_i - b_i)² / (2σ_i²)
with σ_i² = exp(z_i), z the RBM's ``log_variance`` when learned, else σ = 1
(Cho, Raiko & Ilin 2011). Summing the hidden units out gives the free energy
F(v) = E_vis(v) - Σ_j log Σ_{h_j} exp(h_j (c_j + W_j·(v / σ²))), so that p(v) = exp(-F(v)) / Z.

Missing visible entries: a ``mask`` (1 = observed) with ``v`` zero-filled where it is 0
leaves those units out of the model (Salakhutdinov, Mnih & Hinton 2007).

References:
    Smolensky (1986); Hinton (2002), "Training products of experts by minimizing
    contrastive divergence"; Hinton (2010), "A practical guide to training RBMs";
    Cho, Raiko & Ilin (2011), "Improved learning of Gaussian-Bernoulli RBMs".
"""

from __future__ import annotations

import copy
import numbers
import weakref
from collections.abc import Callable

import torch
from torch import Tensor, nn

from dbn.units import Units, get_units

#: each RBM's low-precision working copy with its parameter table, kept between updates (see RBM.working_copy);
#: weak keys: a copy goes with its RBM, and none enters a state dict, a pickle or a deepcopy of the RBM
_WORKING_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class RBM(nn.Module):
    """A bipartite undirected model of visible and hidden units.

    Args:
        n_visible: number of visible units.
        n_hidden: number of hidden units.
        visible: visible unit type, by name (``"bernoulli"``, ``"gaussian"``, ``"gaussian_learned"``, ``"relu"``,
            ``"softmaxK"``) or instance; ``gaussian_learned`` gives the RBM a ``log_variance`` parameter z
            (σ² = exp(z), starting at 1).
        hidden: hidden unit type, by name (``"bernoulli"``, ``"relu"``) or instance.
        init_std: standard deviation of the initial weights (Hinton 2010: 0.01).
        generator: random generator for the initial weights.
    """

    #: weights shared across positions (:class:`~dbn.conv.ConvRBM`); the estimators written for dense weights refuse it
    convolutional = False

    def __init__(
        self,
        n_visible: int,
        n_hidden: int,
        visible: str | Units = "bernoulli",
        hidden: str | Units = "bernoulli",
        init_std: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, n in (("n_visible", n_visible), ("n_hidden", n_hidden)):
            if isinstance(n, bool) or not isinstance(n, numbers.Integral):
                raise TypeError(f"{name} must be an integer, got {n!r} ({type(n).__name__})")
        if int(n_visible) < 1:
            raise ValueError(f"n_visible must be >= 1, got {n_visible}")
        if int(n_hidden) < 1:
            raise ValueError(f"n_hidden must be >= 1, got {n_hidden}")
        if init_std < 0:
            raise ValueError(f"init_std must be >= 0, got {init_std}")
        self.n_visible, self.n_hidden = int(n_visible), int(n_hidden)
        self.visible, self.hidden = get_units(visible), get_units(hidden)
        if not self.hidden.can_be_hidden:
            raise ValueError(f"{self.hidden.name} units can only be visible units (the data layer); "
                             "choose bernoulli or relu hidden units")
        # init_std=0 draws nothing: copies and loaded models must not move the global random stream
        shape = (self.n_hidden, self.n_visible)
        self.weight = nn.Parameter(torch.randn(shape, generator=generator) * init_std if init_std > 0 else torch.zeros(shape))
        self.visible_bias = nn.Parameter(torch.zeros(self.n_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(self.n_hidden))
        # z = log σ² of Gaussian visible units with learned variances; None (no work at all) for every other type
        log_var = nn.Parameter(torch.zeros(self.n_visible)) if self.visible.learns_variance else None
        self.register_parameter("log_variance", log_var)

    def extra_repr(self) -> str:
        return f"n_visible={self.n_visible}, n_hidden={self.n_hidden}, visible={self.visible.name}, hidden={self.hidden.name}"

    # --- pre-activations and conditionals -------------------------------------------------
    def _check(self, x: Tensor, n: int, name: str) -> None:
        """Shape and type of a batch, checked without a host sync (microseconds; no effect on the data)."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (batch, {n}), got {type(x).__name__}; "
                            "wrap arrays with torch.as_tensor")
        if x.ndim != 2 or x.shape[1] != n:
            raise ValueError(f"{name} must have shape (batch, {n}), got {tuple(x.shape)}")
        ref = self.weight.dtype
        if x.dtype != ref and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"{name} has dtype {x.dtype} but the RBM's parameters are {ref}; "
                            f"convert with x.to({ref}) (or the RBM with .to(x.dtype))")

    def hidden_pre(self, v: Tensor) -> Tensor:
        """Total input to the hidden units, c + W·(v / σ²).  (batch, n_visible) -> (batch, n_hidden)"""
        self._check(v, self.n_visible, "visible states")
        if self.log_variance is not None:
            v = v * torch.exp(-self.log_variance)
        return torch.addmm(self.hidden_bias, v, self.weight.t())

    def visible_pre(self, h: Tensor) -> Tensor:
        """Total input to the visible units, b + Wᵀ·h.  (batch, n_hidden) -> (batch, n_visible)"""
        self._check(h, self.n_hidden, "hidden states")
        return torch.addmm(self.visible_bias, h, self.weight)

    def hidden_mean(self, v: Tensor) -> Tensor:
        """E[h | v], i.e. p(h_j = 1 | v) = sigmoid(c_j + W_j·v) for Bernoulli units."""
        return self.hidden.mean(self.hidden_pre(v))

    def visible_mean(self, h: Tensor) -> Tensor:
        """E[v | h]: p(v_i = 1 | h) = sigmoid(b_i + Wᵀ_i·h) for Bernoulli units, b + Wᵀh for Gaussian ones."""
        return self.visible.mean(self.visible_pre(h))

    def sample_hidden(self, v: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw h ~ p(h | v); returns (mean, sample)."""
        mean = self.hidden_mean(v)
        return mean, self.hidden.sample(mean, generator)

    def sample_visible(self, h: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw v ~ p(v | h); returns (mean, sample)."""
        mean = self.visible_mean(h)
        return mean, self.visible.sample(mean, generator, self.log_variance)

    @property
    def n_output(self) -> int:
        """Size of what the next layer of a stack sees (:meth:`output`): n_hidden."""
        return self.n_hidden

    def output(self, v: Tensor, norm: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """What the next layer of a stack sees: E[h | v] (a convolutional layer may pool it).  -> (batch, n_output)

        ``norm``: applied to the hidden pre-activations first (fine-tuning's batch normalisation).
        """
        pre = self.hidden_pre(v)
        return self.hidden.mean(pre if norm is None else norm(pre))

    # --- energies ---------------------------------------------------------------------------
    def energy(self, v: Tensor, h: Tensor) -> Tensor:
        """E(v, h) = E_vis(v; b, σ) - c·h - h·W·(v / σ²).  (batch, n_visible), (batch, n_hidden) -> (batch,)

        For binary h; for ReLU hidden units the free energy is defined through their log-partition only.
        """
        scaled = v if self.log_variance is None else v * torch.exp(-self.log_variance)
        e_vis = self.visible.energy(v, self.visible_bias, self.log_variance)
        return e_vis - h @ self.hidden_bias - ((h @ self.weight) * scaled).sum(-1)

    def free_energy(self, v: Tensor, hidden_pre: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """F(v) = E_vis(v) - Σ_j log Σ_{h_j} exp(h_j (c_j + W_j·(v / σ²))).  (batch, n_visible) -> (batch,)

        For Bernoulli units this is F(v) = -b·v - Σ_j softplus(c_j + W_j·v); for Gaussian visible
        units E_vis(v) = Σ_i (v_i - b_i)² / (2σ_i²).

        Args:
            v: visible states, zero where ``mask`` is 0.
            hidden_pre: ``hidden_pre(v)`` when the caller already has it (saves a matrix product).
            mask: observed entries (1) of ``v``; the others are left out of the model.
        """
        pre = self.hidden_pre(v) if hidden_pre is None else hidden_pre
        return self.visible.energy(v, self.visible_bias, self.log_variance, mask) - self.hidden.log_partition(pre)

    # --- gradients of a loss Σ_r w_r F(v_r), given G = ∂L/∂pre (see dbn.sampling.cd_gradients) ----------
    def unit_visible_bias(self) -> Tensor:
        """The bias of every visible unit.  -> (n_visible,)"""
        return self.visible_bias

    def weight_gradient(self, g: Tensor, seen: Tensor, out: Tensor | None = None) -> Tensor:
        """∂L/∂W = Gᵀ ṽ, one product (written into ``out`` when given).  (rows, n_hidden), (rows, n_visible) -> W's shape"""
        return g.t() @ seen if out is None else torch.mm(g.t(), seen, out=out)

    def hidden_bias_gradient(self, g: Tensor, dtype: torch.dtype) -> Tensor:
        """∂L/∂c = Σ_r G_r, summed in ``dtype``.  -> (n_hidden,)"""
        return g.sum(0, dtype=dtype)

    def visible_bias_gradient(self, per_unit: Tensor) -> Tensor:
        """The visible bias gradient from its per-unit value (the identity here: one bias per unit)."""
        return per_unit

    # --- sampling ---------------------------------------------------------------------------
    def gibbs(self, v: Tensor, steps: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """Run ``steps`` full Gibbs sweeps v -> h -> v from ``v``; returns the sampled visible states."""
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        for _ in range(steps):
            _, h = self.sample_hidden(v, generator)
            _, v = self.sample_visible(h, generator)
        return v

    @torch.no_grad()
    def sample(self, n: int = 64, steps: int = 1000, v0: Tensor | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """Model samples: ``steps`` Gibbs sweeps from ``v0`` (data) or from Bernoulli(0.5) noise.

        Returns the visible means p(v | h) of the last sweep (smoother to look at than binary states).
        """
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        ref = self.weight
        if v0 is None:
            v0 = (torch.rand(n, self.n_visible, generator=generator, device=ref.device, dtype=ref.dtype) < 0.5).to(ref.dtype)
        v = self.gibbs(v0.to(ref), steps - 1, generator)
        _, h = self.sample_hidden(v, generator)
        return self.visible_mean(h)

    def reconstruct(self, v: Tensor) -> Tensor:
        """Mean-field reconstruction E[v | h = E[h | v]].

        With missing entries zero-filled in ``v``, this is the prediction of every entry (the missing
        ones too) from the observed ones: the hidden units see only the observed entries.
        """
        return self.visible_mean(self.hidden_mean(v))

    def working_copy(self, dtype: torch.dtype) -> RBM:
        """This RBM with detached parameters cast to ``dtype`` (itself when they already are): mixed precision's
        low-precision copy, refreshed once per update so that every product of the step reuses one cast of W.

        One copy per RBM is kept and refreshed in place (``copy_`` rounds as ``.to`` does): no allocation per
        update, and the same object at every update, so that a compiled step that takes it as an input keeps its
        graph (making a new module inside the step broke dynamo's graph in four). It is made afresh when the
        parameters change dtype, device, shape or set; its other attributes follow the RBM's at every call.
        """
        if dtype == self.weight.dtype:
            return self
        params = self._parameters
        kept = _WORKING_COPIES.get(self)
        if kept is None or not _same_layout(kept[1], params, dtype):
            kept = (copy.copy(self), {k: None if p is None else p.detach().to(dtype) for k, p in params.items()})
            _WORKING_COPIES[self] = kept
        else:
            for k, p in params.items():
                if p is not None:
                    kept[1][k].copy_(p.detach())
        twin, low = kept
        twin.__dict__.update(self.__dict__)  # shares the unit types, sizes, buffers and flags of this moment
        twin.__dict__["_parameters"] = low
        return twin

    def is_finite(self) -> Tensor:
        """A 0-d bool tensor: every parameter is free of NaN and Inf (no host sync until read)."""
        return torch.stack([torch.isfinite(p).all() for p in self.parameters()]).all()

    @torch.no_grad()
    def init_visible_bias(self, data_mean: Tensor) -> None:
        """Set b so that the visible units start at the data's mean (Hinton 2010, section 8.1)."""
        self.visible_bias.copy_(self.visible.bias_for_mean(data_mean.to(self.visible_bias)))


def _same_layout(low: dict[str, Tensor | None], params: dict[str, Tensor | None], dtype: torch.dtype) -> bool:
    """Whether a kept low-precision parameter table still matches ``params`` (names, shapes, device) in ``dtype``."""
    if low.keys() != params.keys():
        return False
    for k, p in params.items():
        q = low[k]
        if (p is None) != (q is None):
            return False
        if p is not None and (q.dtype != dtype or q.shape != p.shape or q.device != p.device):
            return False
    return True
