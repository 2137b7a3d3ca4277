"""Deep Belief Network: a stack of RBMs, each trained on the hidden activities of the one below.

The DBN is a plain ``nn.Module``: ``transform`` gives top-layer features,
``forward`` the logits of an optional softmax head (the stack used as a
feed-forward net with weights W_l and hidden biases c_l), ``generate`` samples
(Gibbs in the top RBM, then one top-down pass), and ``save``/``load`` keep it, with
its unit types, any learned variances and the input scaling of its training data.

References:
    Hinton, Osindero & Teh (2006), "A fast learning algorithm for deep belief nets";
    Hinton & Salakhutdinov (2006), "Reducing the dimensionality of data with neural networks".
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from dbn.conv import ConvRBM
from dbn.io import atomic_save
from dbn.rbm import RBM
from dbn.units import get_units

FORMAT = "dbn/1"
from dbn.rundir import MODEL as MODEL_FILE  # noqa: E402  the file DBN.load looks for in a directory


def _hidden_types(hidden: str | Sequence[str], n_layers: int) -> list[str]:
    types = [hidden] * n_layers if isinstance(hidden, str) else list(hidden)
    if len(types) != n_layers:
        raise ValueError(f"hidden unit types: got {len(types)} for {n_layers} layers; give one name or one per layer")
    return [get_units(t).name for t in types]


class DBN(nn.Module):
    """A stack of RBMs with sizes ``[n_visible, h_1, ..., h_L]`` and an optional classifier head.

    Args:
        sizes: layer sizes, the data dimension first; at least two entries.
        visible: unit type of the data layer.
        hidden: hidden unit type, one name for all layers or one per layer (``bernoulli``, ``relu``).
        n_classes: add a softmax head with this many classes on top.
        init_std: standard deviation of the RBMs' initial weights.
        generator: random generator for the initial weights.

    A stack with convolutional layers (:class:`~dbn.conv.ConvRBM`) is built from its layers with
    :meth:`from_layers`; each layer sees the layer below's :meth:`~dbn.rbm.RBM.output` (pooled maps,
    flattened), and the fine-tuned net is the CNN with the pretrained filters.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        visible: str = "bernoulli",
        hidden: str | Sequence[str] = "bernoulli",
        n_classes: int | None = None,
        init_std: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2:
            raise ValueError(f"sizes needs the data dimension and at least one hidden layer, got {sizes}")
        bad = [s for s in sizes if s < 1]
        if bad:
            raise ValueError(f"layer sizes must be >= 1, got {sizes}")
        hidden_types = _hidden_types(hidden, len(sizes) - 1)
        visible_types = [get_units(visible).name] + hidden_types[:-1]
        self.layers = nn.ModuleList(
            RBM(n_v, n_h, visible=vt, hidden=ht, init_std=init_std, generator=generator)
            for n_v, n_h, vt, ht in zip(sizes[:-1], sizes[1:], visible_types, hidden_types)
        )
        self.head: nn.Linear | None = None
        #: the feature scaling of the training data, ``{"kind", "offset", "scale"}`` (see :meth:`preprocess`), or None
        self.input_scaling: dict | None = None
        if n_classes is not None:
            self.add_head(n_classes, generator=generator)

    @classmethod
    def from_layers(cls, layers: Sequence[RBM], n_classes: int | None = None,
                    generator: torch.Generator | None = None) -> DBN:
        """A stack of given layers (dense :class:`~dbn.rbm.RBM` or :class:`~dbn.conv.ConvRBM`), bottom first.

        Raises:
            ValueError: a layer's visible size differs from the output size of the layer below.
        """
        layers = list(layers)
        if not layers:
            raise ValueError("a DBN needs at least one layer")
        for i, (below, above) in enumerate(itertools.pairwise(layers)):
            if above.n_visible != below.n_output:
                raise ValueError(f"layer {i + 1} has {above.n_visible} visible units but layer {i} outputs "
                                 f"{below.n_output} values (its pooled maps, flattened); make them agree")
        with torch.random.fork_rng(devices=[]):  # the placeholder stack's throwaway init must not move the global stream
            model = cls([layers[0].n_visible, layers[0].n_output], init_std=0.0)
        model.layers = nn.ModuleList(layers)
        if n_classes is not None:
            model.add_head(n_classes, generator=generator)
        return model

    # --- structure ----------------------------------------------------------------------------
    @property
    def sizes(self) -> list[int]:
        """The data dimension, then each layer's output size (its hidden units, or pooled maps for conv layers)."""
        return [self.layers[0].n_visible] + [rbm.n_output for rbm in self.layers]

    @property
    def convolutional(self) -> bool:
        return any(rbm.convolutional for rbm in self.layers)

    @property
    def n_classes(self) -> int | None:
        return None if self.head is None else self.head.out_features

    def add_head(self, n_classes: int, generator: torch.Generator | None = None) -> nn.Linear:
        """Put a fresh softmax (linear + cross-entropy) head with ``n_classes`` outputs on top."""
        if int(n_classes) < 2:
            raise ValueError(f"a classifier needs n_classes >= 2, got {n_classes}")
        head = nn.Linear(self.sizes[-1], int(n_classes))
        if generator is not None:
            _glorot_(head.weight, generator)
            head.bias.data.zero_()
        self.head = head.to(self.layers[0].weight)
        return self.head

    @torch.no_grad()
    def reset_for_backprop(self, generator: torch.Generator | None = None) -> None:
        """Random-initialise the stack as a sigmoid MLP (Glorot uniform, zero biases).

        This is the ``pretrain=none`` baseline: the same architecture without pretraining,
        initialised the standard way for sigmoid nets rather than with the tiny weights RBMs start from.
        """
        for rbm in self.layers:
            _glorot_(rbm.weight, generator)
            rbm.hidden_bias.zero_()
            rbm.visible_bias.zero_()
        if self.head is not None:
            _glorot_(self.head.weight, generator)
            self.head.bias.zero_()

    # --- recognition (bottom-up) ----------------------------------------------------------------
    def up(self, x: Tensor, n_layers: int | None = None, dropout: float = 0.0,
           centers: list[Tensor] | None = None, norms: Sequence[Callable[[Tensor], Tensor]] | None = None) -> Tensor:
        """Propagate E[h | below] through the first ``n_layers`` RBMs (all by default).

        Dropout (on each layer's output, only in training mode) is for fine-tuning. With ``centers`` (one
        tensor per layer, broadcastable to its output) a dropped unit takes its center instead of 0:
        h ← μ + dropout(h - μ), dropout of the centered outputs (see ``FineTuneModule(centering=True)``).
        ``norms`` (one a layer) transform each layer's hidden pre-activations (see ``FineTuneModule(batch_norm=...)``).
        """
        layers = self.layers if n_layers is None else self.layers[:n_layers]
        h = x
        for i, rbm in enumerate(layers):
            h = rbm.output(h) if norms is None else rbm.output(h, norms[i])
            if dropout > 0 and self.training:
                h = _dropout(h, dropout) if centers is None else centers[i] + _dropout(h - centers[i], dropout)
        return h

    def forward(self, x: Tensor, dropout: float = 0.0, centers: list[Tensor] | None = None,
                norms: Sequence[Callable[[Tensor], Tensor]] | None = None) -> Tensor:
        """Class logits if the DBN has a head, else top-layer features (``dropout``, ``centers``, ``norms``: see
        :meth:`up`)."""
        h = self.up(x, dropout=dropout, centers=centers, norms=norms)
        return h if self.head is None else self.head(h)

    @torch.no_grad()
    def transform(self, x: Tensor, batch_size: int = 4096, n_layers: int | None = None) -> Tensor:
        """Features E[h | x] of the top layer (or of the first ``n_layers`` RBMs), in batches, on the model's device.

        ``x`` is checked and prepared as for :meth:`predict` (NaN = missing, zero-filled).
        """
        if n_layers is not None and not 1 <= int(n_layers) <= len(self.layers):
            raise ValueError(f"n_layers must be in 1..{len(self.layers)} for this DBN, got {n_layers}")
        x = self._as_input(x)
        if not len(x):
            return self.up(x, n_layers)
        return torch.cat([self.up(chunk, n_layers) for chunk in x.split(batch_size)])

    @torch.no_grad()
    def predict_proba(self, x: Tensor, batch_size: int = 4096) -> Tensor:
        """Class probabilities softmax(head(features))."""
        if self.head is None:
            raise RuntimeError("this DBN has no classifier head; fine-tune it (finetune=...) or call add_head first")
        x = self._as_input(x)
        return torch.cat([self.head(self.up(chunk)).softmax(-1) for chunk in x.split(batch_size)])

    def predict(self, x: Tensor, batch_size: int = 4096) -> Tensor:
        """Most probable class per row."""
        return self.predict_proba(x, batch_size).argmax(-1)

    def _as_input(self, x) -> Tensor:
        """A (n, n_visible) tensor on the model's device; NaN entries are missing values and become 0.

        A zero-filled entry adds nothing to the first hidden layer's input: the features are
        those of the RBM over the observed entries (as in training with missing values).
        """
        ref = self.layers[0].weight
        x = torch.as_tensor(x)
        if x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"expected real-valued input, got dtype {x.dtype}")
        x = x.to(device=ref.device, dtype=ref.dtype)
        if x.ndim > 2:
            x = x.flatten(1)
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"expected input of shape (n, {self.sizes[0]}), got {tuple(x.shape)}")
        if torch.isinf(x).any():
            raise ValueError(f"input holds {int(torch.isinf(x).sum())} infinite values; remove or clip them "
                             "(NaN marks a missing entry, infinity is not a value)")
        return torch.nan_to_num(x, nan=0.0)

    def preprocess(self, x) -> Tensor:
        """Raw features -> the model's input space, with the training data's scaling (``input_scaling``).

        (x - offset) / scale per feature, then clipped to [0, 1] for ``minmax``, or ratings 1..K one-hot
        encoded for softmax units; NaN (missing) stays NaN.
        Without a stored scaling, x is returned as a tensor. ``model.predict(model.preprocess(x_raw))``
        classifies new raw data the way the training data were seen.
        """
        x = torch.as_tensor(x)
        if self.input_scaling is None:
            return x
        if self.input_scaling["kind"] == "one_hot":  # ratings 1..K -> K one-hot columns each (softmaxK units)
            return get_units(f"softmax{self.input_scaling['levels']}").encode(x).to(self.layers[0].weight.dtype)
        offset = torch.as_tensor(self.input_scaling["offset"], dtype=torch.float64)
        scale = torch.as_tensor(self.input_scaling["scale"], dtype=torch.float64)
        if x.ndim != 2 or x.shape[1] != len(offset):
            raise ValueError(f"expected raw input of shape (n, {len(offset)}), got {tuple(x.shape)}")
        out = (x.to(torch.float64) - offset) / scale
        if self.input_scaling["kind"] == "minmax":
            out = out.clamp(0.0, 1.0)
        return out.to(self.layers[0].weight.dtype)

    # --- generation (top-down) -------------------------------------------------------------------
    @torch.no_grad()
    def down(self, h: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Top-down pass from the states of the top RBM's visible layer to data space (means at the bottom)."""
        if any(rbm.convolutional and rbm.pooling for rbm in self.layers[:-1]):
            raise ValueError("a top-down pass cannot undo pooling: this stack's convolutional layers pool their "
                             "maps; sample from one layer instead (dbn-sample layer=0, or model.layers[0].sample(n))")
        for i, rbm in enumerate(reversed(self.layers[:-1])):
            mean = rbm.visible_mean(h)
            bottom = i == len(self.layers) - 2
            h = rbm.visible.sample(mean, generator, rbm.log_variance) if (sample and not bottom) else mean
        return h

    @torch.no_grad()
    def generate(self, n: int, steps: int = 1000, generator: torch.Generator | None = None) -> Tensor:
        """Sample ``n`` data vectors: ``steps`` Gibbs sweeps in the top RBM from noise, then a top-down pass."""
        top = self.layers[-1]
        ref = top.weight
        v = (torch.rand(n, top.n_visible, generator=generator, device=ref.device, dtype=ref.dtype) < 0.5).to(ref.dtype)
        v = top.gibbs(v, steps, generator)
        return self.down(v, sample=True, generator=generator)

    # --- persistence ---------------------------------------------------------------------------------
    def spec(self) -> dict:
        return {
            "format": FORMAT,
            "sizes": self.sizes,
            "layers": [layer_spec(rbm) for rbm in self.layers],
            "visible": self.layers[0].visible.name,
            "hidden": [rbm.hidden.name for rbm in self.layers],
            "n_classes": self.n_classes,
            "input_scaling": self.input_scaling,
        }

    def save(self, path: str | Path) -> Path:
        """Write the DBN (structure and weights) to ``path``; a directory gets ``dbn.pt`` inside it."""
        path = Path(path)
        if path.is_dir():
            path = path / MODEL_FILE
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        return atomic_save({**self.spec(), "state_dict": state}, path)  # a crash mid-write keeps the old file

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> DBN:
        """Restore a DBN from a file written by :meth:`save` or from a run directory (its ``dbn.pt``)."""
        path = Path(path)
        if path.is_dir():
            path = path / MODEL_FILE
        if not path.exists():
            raise FileNotFoundError(f"no saved DBN at {path}; pass a run directory of dbn-train or a .pt file")
        blob = torch.load(path, map_location=map_location, weights_only=True)
        if blob.get("format") != FORMAT:
            raise ValueError(f"{path} is not a saved DBN (format {blob.get('format')!r}, expected {FORMAT!r})")
        with torch.random.fork_rng(devices=[]):  # the head's throwaway init must not move the global stream
            if any(spec.get("type") == "conv" for spec in blob.get("layers") or []):
                model = cls.from_layers([layer_from_spec(spec) for spec in blob["layers"]], n_classes=blob["n_classes"])
            else:  # dense stacks (and files written before layer specs were stored)
                model = cls(blob["sizes"], visible=blob["visible"], hidden=blob["hidden"], n_classes=blob["n_classes"],
                            init_std=0.0)
        model.load_state_dict(blob["state_dict"])
        model.input_scaling = blob.get("input_scaling")  # files saved before scaling was stored have none
        return model


def layer_spec(rbm: RBM) -> dict:
    """What rebuilds a layer (its sizes and unit types; the tensors are in the state dict)."""
    if rbm.convolutional:
        return {"type": "conv", "in_shape": list(rbm.in_shape), "n_filters": rbm.hidden_shape[0], "kernel": rbm.kernel,
                "visible": rbm.visible.name, "hidden": rbm.hidden_units, "pooling": rbm.pooling, "pool": rbm.pool}
    return {"type": "dense", "n_visible": rbm.n_visible, "n_hidden": rbm.n_hidden, "visible": rbm.visible.name,
            "hidden": rbm.hidden.name}


def layer_from_spec(spec: dict) -> RBM:
    """The layer of :func:`layer_spec`, with zero weights."""
    if spec["type"] == "conv":
        return ConvRBM(tuple(spec["in_shape"]), spec["n_filters"], spec["kernel"], visible=spec["visible"],
                       pooling=spec["pooling"], pool=spec["pool"], init_std=0.0,
                       hidden=spec.get("hidden", "bernoulli"))  # files from before ReLU maps have no "hidden"
    return RBM(spec["n_visible"], spec["n_hidden"], visible=spec["visible"], hidden=spec["hidden"], init_std=0.0)


def _glorot_(weight: Tensor, generator: torch.Generator | None) -> None:
    """W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010), in place; W is (out, in) or a conv
    filter bank (out, in, k, k), whose fans count the kernel's positions."""
    with torch.no_grad():
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        weight.copy_(torch.rand(weight.shape, generator=generator) * 2 * bound - bound)


def _dropout(h: Tensor, p: float) -> Tensor:
    """Inverted dropout, h · 1[r ≥ p] / (1 - p) with r ~ U(0, 1): ``F.dropout``'s distribution.

    torch's CPU dropout draws its mask with ``bernoulli_``, about twice the time of a uniform draw and
    a compare (1.5 ms against 0.7 ms for a 100 x 2000 batch on 2 cores), a seventh of a fine-tuning
    step of the 784-500-500-2000 net.
    """
    return h * keep_mask(h, p)


def keep_mask(h: Tensor, p: float) -> Tensor:
    """The inverted-dropout factors of :func:`_dropout`, 1[r ≥ p] / (1 - p) with r ~ U(0, 1), shaped like ``h``."""
    return torch.rand(h.shape, dtype=h.dtype, device=h.device).ge_(p).mul_(1.0 / (1.0 - p))
