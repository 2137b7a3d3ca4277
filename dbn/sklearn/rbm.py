"""``RBMTransformer``: scikit-learn's ``BernoulliRBM`` on dbn's torch RBM, draw for draw on the CPU.

References:
    Tieleman (2008), "Training RBMs using approximations to the likelihood gradient" (PCD);
    scikit-learn's ``sklearn.neural_network.BernoulliRBM``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils import check_random_state, gen_even_slices
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import Tensor

from dbn.device import resolve_device
from dbn.eval.likelihood import pseudo_log_likelihood
from dbn.rbm import RBM
from dbn.sklearn._common import CHUNK, FLOATS, TORCH_DTYPES, dense, map_rows, tensor, torch_seed
from dbn.units import Bernoulli

#: p -> a Bernoulli(p) draw of the same shape and dtype
Sampler = Callable[[Tensor], Tensor]
_FITTED = ("components_", "intercept_hidden_", "intercept_visible_", "h_samples_")


# --- randomness ------------------------------------------------------------------------------------------
def numpy_sampler(rng: np.random.RandomState) -> Sampler:
    """s = 1[u < p] with u = ``rng.uniform(size=p.shape)``: BernoulliRBM's draws, bit for bit.

    The uniforms fill p's shape in C order and the comparison is numpy's (float64 u against p widened
    to float64), so the same stream and the same p give BernoulliRBM's samples. p must be on the CPU.
    """
    def sample(p: Tensor) -> Tensor:
        u = torch.from_numpy(rng.uniform(size=tuple(p.shape)))
        return (u < p.to(torch.float64)).to(p.dtype)

    return sample


def torch_sampler(generator: torch.Generator) -> Sampler:
    """s = 1[r < p] with r ~ U(0, 1) from a torch generator on p's device (no host round trip)."""
    return lambda p: Bernoulli().sample(p, generator)


# --- one update ------------------------------------------------------------------------------------------
@torch.no_grad()
def _pcd_update(rbm: RBM, v_pos: Tensor, h_chains: Tensor, learning_rate: float, k: int, sample: Sampler) -> Tensor:
    """One stochastic-maximum-likelihood (PCD-k) SGD step, in place; returns the new hidden chains.

    With h_pos = p(h | v_pos), the chains run k sweeps v_neg ~ p(v | h), h_neg = p(h | v_neg), and

        W += lr / n · (h_posᵀ v_pos - h_negᵀ v_neg)
        c += lr / n · Σ (h_pos - h_neg)
        b += lr / n · Σ (v_pos - v_neg)

    with n = len(v_pos), as in scikit-learn's ``BernoulliRBM._fit`` (for k = 1 step for step, drawing
    v_neg then the new chains h ~ p(h | v_neg)).  v_pos: (n, n_visible); h_chains: (n_chains, n_hidden).
    """
    h_pos = rbm.hidden_mean(v_pos)
    h = h_chains
    for sweep in range(k):
        v_neg = sample(rbm.visible_mean(h))
        h_neg = rbm.hidden_mean(v_neg)
        if sweep < k - 1:
            h = sample(h_neg)
    step = learning_rate / len(v_pos)
    rbm.weight.add_(h_pos.t() @ v_pos - h_neg.t() @ v_neg, alpha=step)
    rbm.hidden_bias.add_(h_pos.sum(0) - h_neg.sum(0), alpha=step)
    rbm.visible_bias.add_(v_pos.sum(0) - v_neg.sum(0), alpha=step)
    return sample(h_neg)


class RBMTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Bernoulli RBM trained by persistent CD: ``sklearn.neural_network.BernoulliRBM`` on dbn's torch RBM.

    Parameters, fitted attributes, accepted inputs and updates are BernoulliRBM's. On the CPU
    (``device="cpu"``, or ``"auto"`` without CUDA) every random number comes from ``random_state``'s
    numpy ``RandomState`` in BernoulliRBM's order (initial weights, Gibbs uniforms compared as ``u < p``,
    the bits ``score_samples`` flips), so with an equal ``random_state`` the fitted attributes and every
    output equal BernoulliRBM's to rounding. On another device the initial weights and flipped bits
    still come from ``random_state``, but the Gibbs uniforms come from a torch generator on that device
    seeded by one draw from it: the same algorithm, equal in distribution, not draw for draw.

    Args:
        n_components: number of binary hidden units.
        learning_rate: SGD step on the minibatch-mean gradient.
        batch_size: examples per minibatch, and number of persistent chains.
        n_iter: sweeps over the training data.
        verbose: print the pseudo-likelihood after each sweep.
        random_state: int, ``RandomState`` or None (see scikit-learn's glossary).
        device: torch device of the computation (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"``).
        k: Gibbs sweeps of the persistent chains per update (BernoulliRBM: 1).

    Attributes:
        components_: (n_components, n_features) weights.
        intercept_hidden_, intercept_visible_: (n_components,), (n_features,) biases.
        h_samples_: (batch_size, n_components) states of the persistent hidden chains.
        n_features_in_: number of features seen in ``fit``.

    References:
        Tieleman (2008), PCD; scikit-learn's ``BernoulliRBM``.
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_iter": [Interval(Integral, 0, None, closed="left")],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
        "device": [str, torch.device],
        "k": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_components=256, *, learning_rate=0.1, batch_size=10, n_iter=10, verbose=0,
                 random_state=None, device="cpu", k=1):
        self.n_components = n_components
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.verbose = verbose
        self.random_state = random_state
        self.device = device
        self.k = k

    # --- fitting ------------------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit to X, (n_samples, n_features) real values, dense or sparse, in ``n_iter`` sweeps of minibatches.

        Like BernoulliRBM, the random stream is ``check_random_state(random_state)`` (a fresh one for an
        int) and ``random_state_`` (``gibbs``, ``partial_fit``) is left as it is.
        """
        X = validate_data(self, X, accept_sparse="csr", dtype=FLOATS)
        rng = check_random_state(self.random_state)
        rbm = self._new_rbm(X.shape[1], X.dtype, rng)
        sample = self._sampler(rng)
        chains = torch.zeros(self.batch_size, self.n_components, dtype=rbm.weight.dtype, device=rbm.weight.device)
        n_batches = int(np.ceil(X.shape[0] / self.batch_size))
        slices = list(gen_even_slices(n_batches * self.batch_size, n_batches, n_samples=X.shape[0]))
        data = X if sp.issparse(X) else tensor(X).to(rbm.weight.device)
        begin = time.time()
        for iteration in range(1, self.n_iter + 1):
            for batch in slices:
                v = dense(data[batch], rbm.weight) if sp.issparse(data) else data[batch]
                chains = _pcd_update(rbm, v, chains, self.learning_rate, self.k, sample)
            if self.verbose:
                self._store(rbm, chains)
                begin = self._report(iteration, X, begin)
        self._store(rbm, chains)
        return self

    def _report(self, iteration: int, X, begin: float) -> float:
        """BernoulliRBM's progress line, with this class's name; returns the new start time.

        ``score_samples`` draws from ``check_random_state(random_state)``, as BernoulliRBM's does: an
        independent stream for an int, the fit's own stream for a ``RandomState`` or None.
        """
        end = time.time()
        print(f"[{type(self).__name__}] Iteration {iteration:d}, pseudo-likelihood = "
              f"{self.score_samples(X).mean():.2f}, time = {end - begin:.2f}s")
        return end

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """One update on X taken as a single minibatch; the first call initialises the model.

        As in BernoulliRBM, X is taken as float64, the random stream is ``random_state_`` (kept across
        calls), missing attributes start as BernoulliRBM's do (float64), and existing ones keep their dtype.
        """
        first = not hasattr(self, "components_")
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float64, reset=first)
        if not hasattr(self, "random_state_"):
            self.random_state_ = check_random_state(self.random_state)
        self._init_missing(X.shape[1], self.random_state_)
        dtypes = {name: np.asarray(getattr(self, name)).dtype for name in _FITTED}
        rbm = self._to_rbm(X.dtype)
        chains = torch.as_tensor(np.asarray(self.h_samples_)).to(rbm.weight)
        sample = self._sampler(self.random_state_)
        self._store(rbm, _pcd_update(rbm, dense(X, rbm.weight), chains, self.learning_rate, self.k, sample), dtypes)
        return self

    def _init_missing(self, n_features: int, rng: np.random.RandomState) -> None:
        """BernoulliRBM's start for each attribute not set yet: W ~ N(0, 0.01²) from ``rng``, zero biases and chains."""
        if not hasattr(self, "components_"):
            self.components_ = rng.normal(0, 0.01, (self.n_components, n_features))
            self._n_features_out = self.n_components
        for name, shape in (("intercept_hidden_", self.n_components), ("intercept_visible_", n_features),
                            ("h_samples_", (self.batch_size, self.n_components))):
            if not hasattr(self, name):
                setattr(self, name, np.zeros(shape))

    def _new_rbm(self, n_features: int, dtype: np.dtype, rng: np.random.RandomState) -> RBM:
        """An RBM on ``device`` with BernoulliRBM's start: W = rng.normal(0, 0.01) cast to ``dtype``, zero biases."""
        weight = rng.normal(0, 0.01, (self.n_components, n_features)).astype(dtype)
        rbm = RBM(n_features, self.n_components, init_std=0.0).requires_grad_(False)
        rbm = rbm.to(device=resolve_device(self.device), dtype=TORCH_DTYPES[np.dtype(dtype)])
        rbm.weight.copy_(torch.from_numpy(weight))
        self._n_features_out = self.n_components
        return rbm

    def _sampler(self, rng: np.random.RandomState) -> Sampler:
        """Draws from ``rng`` itself on the CPU; elsewhere, from a device generator seeded by one draw of ``rng``."""
        device = resolve_device(self.device)
        if device.type == "cpu":
            return numpy_sampler(rng)
        return torch_sampler(torch.Generator(device=device).manual_seed(torch_seed(rng)))

    def _store(self, rbm: RBM, chains: Tensor, dtypes: dict | None = None) -> None:
        """The RBM's parameters as the fitted numpy attributes (the model of record), in ``dtypes`` if given."""
        values = (rbm.weight, rbm.hidden_bias, rbm.visible_bias, chains)
        for name, value in zip(_FITTED, values):
            array = value.detach().cpu().numpy()
            setattr(self, name, array if dtypes is None else array.astype(dtypes[name], copy=False))

    def _to_rbm(self, dtype: np.dtype | None = None) -> RBM:
        """The fitted attributes (as they are now: users may edit them) as an RBM on ``device``."""
        n_components, n_features = np.shape(self.components_)
        weights = np.asarray(self.components_).dtype
        dtype = weights if dtype is None else np.result_type(weights, dtype)
        rbm = RBM(n_features, n_components, init_std=0.0).requires_grad_(False)
        rbm = rbm.to(device=resolve_device(self.device), dtype=TORCH_DTYPES.get(dtype, torch.float64))
        for param, value in ((rbm.weight, self.components_), (rbm.hidden_bias, self.intercept_hidden_),
                             (rbm.visible_bias, self.intercept_visible_)):
            param.copy_(torch.as_tensor(np.asarray(value)))
        return rbm

    # --- inference ------------------------------------------------------------------------------------
    def transform(self, X):
        """p(h = 1 | v = X) = sigmoid(X @ components_.T + intercept_hidden_), (n_samples, n_components)."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", reset=False, dtype=FLOATS)
        rbm = self._to_rbm(X.dtype)
        return map_rows(X, rbm.hidden_mean, rbm.weight.dtype, rbm.weight.device)

    def gibbs(self, v):
        """One Gibbs sweep h ~ p(h | v), v' ~ p(v | h); returns v' as a boolean array like BernoulliRBM.

        The draws come from ``random_state_`` (made from ``random_state`` on first use), all hidden
        units of all rows first, then all visible ones, as in BernoulliRBM. A 1-D ``v`` is one row.
        """
        check_is_fitted(self)
        one_row = not sp.issparse(v) and np.ndim(v) == 1
        v = validate_data(self, np.reshape(v, (1, -1)) if one_row else v, accept_sparse="csr", reset=False,
                          dtype=FLOATS)
        if not hasattr(self, "random_state_"):
            self.random_state_ = check_random_state(self.random_state)
        rbm, sample = self._to_rbm(v.dtype), self._sampler(self.random_state_)
        dtype, device = rbm.weight.dtype, rbm.weight.device
        # row chunks in order draw the uniforms of one (n, units) draw, so chunking keeps the stream
        h = map_rows(v, lambda x: sample(rbm.hidden_mean(x)), dtype, device)
        v_new = map_rows(h, lambda x: sample(rbm.visible_mean(x)), dtype, device).astype(bool)
        return v_new[0] if one_row else v_new

    def score_samples(self, X):
        """Pseudo-likelihood n_features · log sigmoid(F(ṽ) - F(v)), ṽ = v with one random bit per row flipped.

        F(v) = -b·v - Σ_j softplus(c_j + W_j·v) and log sigmoid are evaluated stably in float64, so even
        huge inputs give finite scores. The flipped positions are ``check_random_state(random_state)``'s
        ``randint(0, n_features, n_samples)``, exactly as BernoulliRBM draws them.
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", reset=False, dtype=FLOATS)
        rng = check_random_state(self.random_state)
        flip = torch.as_tensor(rng.randint(0, X.shape[1], X.shape[0]))
        rbm = self._to_rbm(X.dtype)
        chunks = iter(flip.split(CHUNK))
        return map_rows(X, lambda v: pseudo_log_likelihood(rbm, v, flip=next(chunks)).to(v.dtype),
                        rbm.weight.dtype, rbm.weight.device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
