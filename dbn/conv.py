"""Convolutional RBM: hidden feature maps from filters shared across positions, with optional probabilistic max-pooling.

Visible maps v (C x H x W) and K hidden maps h_k ((H-k+1) x (W-k+1)) from K filters W_k (C x k x k):

    E(v, h) = E_vis(v; b) - Σ_k c_k Σ_pos h_k,pos - Σ_k h_k · (W_k ⋆ v)

with ⋆ the valid cross-correlation (``conv2d``), one hidden bias c_k per map and one visible bias b_c per
channel. It is an RBM whose weight matrix is the Toeplitz matrix of the filters, so every formula of
:class:`~dbn.rbm.RBM` holds with W·v = conv2d(v, W) and Wᵀ·h = conv_transpose2d(h, W) (``tests/test_conv.py``
checks free energies and conditionals against the dense RBM with that matrix). States travel as flat rows,
(batch, C·H·W) and (batch, K·H'·W'), so the data pipeline, the CD chain and its closed-form gradient
(:func:`~dbn.sampling.cd_gradients`, through :meth:`ConvRBM.weight_gradient`) are the dense layer's.

Probabilistic max-pooling (Lee et al. 2009, section 3.3): the hidden units of each map are grouped in
p x p blocks of which at most one is on; a pooling unit is on when one of its block is. Given v, with
I = c + W ⋆ v, each block is a softmax over its p² units and "all off":

    p(h_a = 1 | v) = exp(I_a) / (1 + Σ_{a' in block} exp(I_a')),     p(pool on | v) = 1 - 1 / (1 + Σ exp(I_a')),

and the free energy sums log(1 + Σ_block exp(I)) over the blocks in place of softplus over the units. The
visible conditional is unchanged. The pooling units' probabilities are what the next layer sees.

Noisy rectified hidden units (``hidden="relu"``, Nair & Hinton 2010; :class:`~dbn.units.ReLU`): each map's units
are the continuum of tied binary units, with mean softplus(I) and log-partition -Li₂(-exp(I)) per unit, so the
fine-tuned net is a CNN with softplus units; deterministic max-pooling (``pooling="max"``) then passes on the
largest mean of each block, and the layer above takes ``visible="relu"``.

References:
    Lee, Grosse, Ranganath & Ng (2009), "Convolutional deep belief networks for scalable unsupervised
    learning of hierarchical representations"; Norouzi, Ranjbar & Mori (2009), "Stacks of convolutional
    restricted Boltzmann machines for shift-invariant feature learning"; Nair & Hinton (2010), "Rectified
    linear units improve restricted Boltzmann machines".
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dbn.draws import uniform
from dbn.rbm import RBM
from dbn.units import Units, get_units

#: hidden-layer pooling of a ConvRBM: none, probabilistic max-pooling (in the model), deterministic max-pooling
#: of the hidden probabilities (only in what the next layer sees)
POOLING = (None, "probabilistic", "max")


class ProbMaxPool(Units):
    """Binary hidden units in p x p blocks per map, at most one on per block (Lee et al. 2009, section 3.3).

    Works on flat rows (batch, K·p²·P) in the block-major layout of :class:`ConvRBM` with pooling: per map, the p²
    positions within a block, then the P = (H/p)·(W/p) blocks; unit (k, i, j, Y, X) is the hidden unit at row
    p·Y + i, column p·X + j of map k. Every block operation is then a reduction over one short axis of a
    (batch, K, p², P) view with contiguous rows of P, one pass over the units each (the p² strided slices of the
    maps' own layout needed many more, and strided copies to put them back: ``benchmarks/results/conv_cd.md``).
    """

    name = "probmaxpool"

    def __init__(self, maps: int, height: int, width: int, pool: int) -> None:
        if height % pool or width % pool:
            raise ValueError(f"probabilistic max-pooling of size {pool} needs hidden maps whose sides are multiples "
                             f"of {pool}, got {height}x{width}; change the kernel or the pool size")
        self.maps, self.height, self.width, self.pool = maps, height, width, pool
        self.blocks = (height // pool) * (width // pool)

    def _view(self, x: Tensor) -> Tensor:
        """(batch, K, p², P): the block axis second to last."""
        return x.reshape(-1, self.maps, self.pool * self.pool, self.blocks)

    def _blocks(self, pre: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """exp(I - m) per unit, m = max(0, max_block I) and s = Σ_block exp(I - m) + exp(-m), so that
        s·exp(m) = 1 + Σ_block exp(I), without overflow; (batch, K, p², P), (batch, K, 1, P), (batch, K, 1, P).

        m only shifts the exponents: the quantities built from e and s do not depend on it, so it carries no gradient.
        """
        x = self._view(pre)
        m = x.detach().amax(2, keepdim=True).clamp_min_(0)
        e = (x - m).exp_()
        s = e.sum(2, keepdim=True).add_(m.neg().exp_())
        return e, m, s

    def mean(self, pre: Tensor) -> Tensor:
        """p(h_a = 1 | v) = exp(I_a) / (1 + Σ_block exp(I)).  (batch, K·p²·P) -> same."""
        e, _, s = self._blocks(pre)
        mean = e / s if torch.is_grad_enabled() and pre.requires_grad else e.div_(s)
        return mean.view(pre.shape)

    def pooled(self, pre: Tensor) -> Tensor:
        """p(pool unit on | v) = 1 - 1 / (1 + Σ_block exp(I)).  (batch, K·p²·P) -> (batch, K·P)"""
        _, m, s = self._blocks(pre)
        return (1 - torch.exp(-m) / s).flatten(1)

    def sample(self, mean: Tensor, generator: torch.Generator | None = None, log_var: Tensor | None = None) -> Tensor:
        """One unit on per block with its probability, or none with 1 - Σ_block p (one uniform r per block).

        Unit a of a block is on iff it is the first whose running sum C_a = p_1 + ... + p_a exceeds r, i.e. iff
        exactly a of the block's C are <= r (a = p² when none: all off).
        """
        dtype = torch.promote_types(mean.dtype, torch.float32)
        p = self._view(mean).to(dtype)
        running = p[:, :, 0].clone()
        r = uniform(running, generator)
        chosen = (running <= r).to(torch.int16)  # running sums slice by slice: about half the time of cumsum(2)
        for a in range(1, self.pool * self.pool):
            chosen += running.add_(p[:, :, a]) <= r
        index = torch.arange(self.pool * self.pool, device=mean.device, dtype=torch.int16).view(-1, 1)
        return (chosen.unsqueeze(2) == index).to(mean.dtype).view(mean.shape)

    def log_partition(self, pre: Tensor) -> Tensor:
        """Σ_blocks log(1 + Σ_{a in block} exp(I_a)).  (batch, K·p²·P) -> (batch,)"""
        _, m, s = self._blocks(pre)
        return (m + torch.log(s)).flatten(1).sum(1)

    def maps_of(self, h: Tensor) -> Tensor:
        """Hidden values in the block-major layout as maps.  (batch, K·p²·P) -> (batch, K, H, W)"""
        p = self.pool
        x = h.reshape(-1, self.maps, p, p, self.height // p, self.width // p)
        return x.permute(0, 1, 4, 2, 5, 3).reshape(-1, self.maps, self.height, self.width)

    def __repr__(self) -> str:
        return f"ProbMaxPool(pool={self.pool})"


class ConvRBM(RBM):
    """An RBM with convolutional weights, on flat rows of C x H x W images.

    Args:
        in_shape: (channels, height, width) of the visible maps.
        n_filters: K, the number of hidden maps (filters).
        kernel: side k of the square filters; hidden maps are (H - k + 1) x (W - k + 1).
        visible: ``"bernoulli"``, ``"gaussian"`` (unit variance: standardise the data) or ``"relu"`` (the
            non-negative outputs of a ReLU layer below).
        hidden: ``"bernoulli"`` or ``"relu"`` (noisy rectified units, :class:`~dbn.units.ReLU`: the maps' mean is
            softplus of the pre-activations); probabilistic max-pooling is for binary units only.
        pooling: None, ``"probabilistic"`` (max-pooling in the model, Lee et al. 2009) or ``"max"``
            (deterministic max-pooling of the hidden probabilities, only in what the next layer sees).
        pool: the pooling block side p.
        init_std: standard deviation of the initial filters.
        generator: random generator for the initial filters.
    """

    convolutional = True

    def __init__(self, in_shape: tuple[int, int, int], n_filters: int, kernel: int, visible: str | Units = "bernoulli",
                 pooling: str | None = None, pool: int = 2, init_std: float = 0.01,
                 generator: torch.Generator | None = None, hidden: str | Units = "bernoulli") -> None:
        nn.Module.__init__(self)
        shape = tuple(in_shape)
        if len(shape) != 3 or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in shape):
            raise ValueError(f"in_shape must be (channels, height, width) of positive integers, got {in_shape}")
        channels, height, width = (int(s) for s in shape)
        for name, value in (("n_filters", n_filters), ("kernel", kernel), ("pool", pool)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if kernel > min(height, width):
            raise ValueError(f"kernel {kernel} is larger than the {height}x{width} input maps; use kernel <= "
                             f"{min(height, width)}")
        if pooling not in POOLING:
            raise ValueError(f"pooling must be one of {POOLING}, got {pooling!r}")
        if init_std < 0:
            raise ValueError(f"init_std must be >= 0, got {init_std}")
        self.visible = get_units(visible)
        if self.visible.name not in ("bernoulli", "gaussian", "relu"):
            raise ValueError(f"ConvRBM visible units are bernoulli, gaussian or relu, got {self.visible.name}")
        hidden_units = get_units(hidden)
        if hidden_units.name not in ("bernoulli", "relu"):
            raise ValueError(f"ConvRBM hidden units are bernoulli or relu, got {hidden_units.name}")
        if pooling == "probabilistic" and hidden_units.name != "bernoulli":
            raise ValueError(f"probabilistic max-pooling is defined for binary hidden units, not {hidden_units.name}; "
                             "use pooling=max (deterministic max-pooling of the maps' means) or bernoulli hidden units")
        hh, hw = height - kernel + 1, width - kernel + 1
        self.in_shape, self.hidden_shape = (channels, height, width), (int(n_filters), hh, hw)
        self.kernel, self.pooling, self.pool = int(kernel), pooling, int(pool)
        self.n_visible, self.n_hidden = channels * height * width, int(n_filters) * hh * hw
        self.hidden = ProbMaxPool(int(n_filters), hh, hw, self.pool) if pooling == "probabilistic" else hidden_units
        if pooling == "max" and (hh % pool or hw % pool):
            raise ValueError(f"max-pooling of size {pool} needs hidden maps whose sides are multiples of {pool}, got "
                             f"{hh}x{hw}; change the kernel or the pool size")
        shape = (int(n_filters), channels, self.kernel, self.kernel)
        self.weight = nn.Parameter(torch.randn(shape, generator=generator) * init_std if init_std > 0 else torch.zeros(shape))
        self.visible_bias = nn.Parameter(torch.zeros(channels))
        self.hidden_bias = nn.Parameter(torch.zeros(int(n_filters)))
        self.register_parameter("log_variance", None)

    def extra_repr(self) -> str:
        return (f"in_shape={self.in_shape}, hidden_shape={self.hidden_shape}, kernel={self.kernel}, "
                f"visible={self.visible.name}, hidden={self.hidden_units}, pooling={self.pooling}, pool={self.pool}")

    @property
    def hidden_units(self) -> str:
        """The hidden units' type: ``bernoulli`` (also under probabilistic max-pooling) or ``relu``."""
        return "bernoulli" if self.pooling == "probabilistic" else self.hidden.name

    # --- shapes -----------------------------------------------------------------------------------------
    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(maps, height, width) of what the next layer sees: the hidden maps, pooled when there is pooling."""
        k, h, w = self.hidden_shape
        return (k, h // self.pool, w // self.pool) if self.pooling else (k, h, w)

    @property
    def n_output(self) -> int:
        k, h, w = self.output_shape
        return k * h * w

    def unit_visible_bias(self) -> Tensor:
        """The visible bias of every visible unit, b_c repeated over its channel's positions.  -> (C·H·W,)"""
        _, h, w = self.in_shape
        return self.visible_bias.repeat_interleave(h * w)

    # --- the products W⋆v and Wᵀh -------------------------------------------------------------------------
    # With probabilistic pooling the product is computed in the block-major layout of ProbMaxPool: the strided
    # convolution (stride p) with K·p² filters of side k + p - 1, filter (k, i, j) being W_k shifted by (i, j),
    # gives unit (k, i, j, Y, X) = hidden unit (p·Y + i, p·X + j) of map k directly. On one-channel images the
    # products are matrix products on the unfolded patches (``F.unfold``/``F.fold``): at 28x28, 32 filters 3x3,
    # batch 100, one thread, 2-4x faster than oneDNN's conv2d, conv_transpose2d and weight gradient, whose
    # direct kernels suit many channels (benchmarks/conv_cd.py).

    @property
    def _stride(self) -> int:
        return self.pool if self.pooling == "probabilistic" else 1

    @property
    def _grid(self) -> tuple[int, int, int]:
        """(channels, height, width) of the product's output: K·p² maps of the blocks, or the K hidden maps."""
        k, h, w = self.hidden_shape
        s = self._stride
        return k * s * s, h // s, w // s

    @property
    def _unfolded(self) -> bool:
        return self.in_shape[0] == 1

    @property
    def _side(self) -> int:
        """Side of the product's filters: k, or k + p - 1 for the shifted copies of probabilistic pooling."""
        return self.kernel + self._stride - 1

    def _weight_of_product(self) -> Tensor:
        """The filters of the product: W, or with probabilistic pooling the K·p² shifted copies (differentiable)."""
        if self.pooling != "probabilistic":
            return self.weight
        n, c, k, _ = self.weight.shape
        p, side = self.pool, self._side
        shifted = self.weight.new_zeros(n, p, p, c, side, side)
        for i in range(p):
            for j in range(p):
                shifted[:, i, j, :, i:i + k, j:j + k] = self.weight
        return shifted.view(n * p * p, c, side, side)

    def _fold_weight_gradient(self, grad: Tensor) -> Tensor:
        """The gradient of the shifted copies summed back onto W (the adjoint of :meth:`_weight_of_product`)."""
        if self.pooling != "probabilistic":
            return grad
        n, c, k, _ = self.weight.shape
        p = self.pool
        shifted = grad.view(n, p, p, c, self._side, self._side)
        return sum(shifted[:, i, j, :, i:i + k, j:j + k] for i in range(p) for j in range(p))

    def _product_bias(self) -> Tensor:
        return self.hidden_bias.repeat_interleave(self._stride ** 2)

    def hidden_pre(self, v: Tensor) -> Tensor:
        """c_k + (W_k ⋆ v) at every position.  (batch, C·H·W) -> (batch, n_hidden), the hidden layout."""
        self._check(v, self.n_visible, "visible states")
        weight, bias, images = self._weight_of_product(), self._product_bias(), v.view(-1, *self.in_shape)
        if self._unfolded:
            patches = F.unfold(images, weight.shape[-1], stride=self._stride)
            return torch.matmul(weight.flatten(1), patches).add_(bias[:, None]).flatten(1)
        return F.conv2d(images, weight, bias, stride=self._stride).flatten(1)

    def visible_pre(self, h: Tensor) -> Tensor:
        """b + Σ_k W_k * h_k (the full convolution, the transpose of :meth:`hidden_pre`).  -> (batch, C·H·W)"""
        self._check(h, self.n_hidden, "hidden states")
        weight, grid = self._weight_of_product(), self._grid
        channels, height, width = self.in_shape
        if self._unfolded:
            patches = torch.matmul(weight.flatten(1).t(), h.view(-1, grid[0], grid[1] * grid[2]))
            images = F.fold(patches, (height, width), weight.shape[-1], stride=self._stride)
            return images.flatten(1).add_(self.visible_bias.view(channels, 1).expand(channels, height * width).flatten())
        return F.conv_transpose2d(h.view(-1, *grid), weight, self.visible_bias, stride=self._stride).flatten(1)

    def hidden_maps(self, h: Tensor) -> Tensor:
        """Hidden values (batch, n_hidden) in the layer's layout as maps (batch, K, H', W')."""
        if self.pooling == "probabilistic":
            return self.hidden.maps_of(h)
        return h.reshape(-1, *self.hidden_shape)

    # --- conditionals -----------------------------------------------------------------------------------
    def output(self, v: Tensor, norm: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """What the next layer sees: p(pool on | v), the max-pooled p(h | v), or p(h | v).  -> (batch, n_output)

        ``norm``: applied to the hidden pre-activations (in the hidden layout, maps outermost) first.
        """
        pre = self.hidden_pre(v)
        if norm is not None:
            pre = norm(pre)
        if self.pooling == "probabilistic":
            return self.hidden.pooled(pre)
        mean = self.hidden.mean(pre)
        if self.pooling == "max":
            return F.max_pool2d(mean.view(-1, *self.hidden_shape), self.pool).flatten(1)
        return mean

    # --- energies ---------------------------------------------------------------------------------------
    def energy(self, v: Tensor, h: Tensor) -> Tensor:
        """E(v, h) = E_vis(v; b) - h·(c + W ⋆ v).  (batch, C·H·W), (batch, K·H'·W') -> (batch,)"""
        return self.visible.energy(v, self.unit_visible_bias()) - (h * self.hidden_pre(v)).sum(-1)

    def free_energy(self, v: Tensor, hidden_pre: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """F(v) = E_vis(v; b) - log Σ_h exp(h·(c + W ⋆ v)) (softplus per unit, or log(1 + Σ exp) per pooling block)."""
        pre = self.hidden_pre(v) if hidden_pre is None else hidden_pre
        return self.visible.energy(v, self.unit_visible_bias(), None, mask) - self.hidden.log_partition(pre)

    # --- gradients of a loss Σ_r w_r F(v_r), given G = ∂L/∂pre (see dbn.sampling.cd_gradients) ----------------
    def weight_gradient(self, g: Tensor, seen: Tensor, out: Tensor | None = None) -> Tensor:
        """∂L/∂W = Σ_r G_r ⋆ v_r per filter.  (rows, n_hidden), (rows, C·H·W) -> (K, C, k, k)"""
        grid = self._grid
        shape = (grid[0], self.in_shape[0], self._side, self._side)
        images = seen.view(-1, *self.in_shape)
        if self._unfolded:
            patches = F.unfold(images, shape[-1], stride=self._stride)  # (rows, C·s², P)
            grad = torch.bmm(g.view(len(g), grid[0], -1), patches.transpose(1, 2)).sum(0).view(shape)
        else:
            grad = torch.nn.grad.conv2d_weight(images, shape, g.view(-1, *grid), stride=self._stride)
        grad = self._fold_weight_gradient(grad)
        return grad if out is None else out.copy_(grad)

    def hidden_bias_gradient(self, g: Tensor, dtype: torch.dtype) -> Tensor:
        """∂L/∂c_k = Σ_r Σ_pos G_r,k,pos.  -> (K,)"""
        return g.view(len(g), self.hidden_shape[0], -1).sum((0, 2), dtype=dtype)

    def visible_bias_gradient(self, per_unit: Tensor) -> Tensor:
        """A per-visible-unit bias gradient summed over each channel's positions.  (C·H·W,) -> (C,)"""
        return per_unit.view(self.in_shape[0], -1).sum(1)

    @torch.no_grad()
    def init_visible_bias(self, data_mean: Tensor) -> None:
        """b_c so that each channel starts at its data's mean over positions (Hinton 2010, section 8.1)."""
        channel_mean = data_mean.to(self.visible_bias).view(self.in_shape[0], -1).mean(1)
        self.visible_bias.copy_(self.visible.bias_for_mean(channel_mean))
