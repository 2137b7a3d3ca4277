"""``RBMTransformer``: scikit-learn's ``BernoulliRBM`` on dbn's torch RBM.

References:
    Tieleman (2008), "Training RBMs using approximations to the likelihood gradient" (PCD);
    scikit-learn's ``sklearn.neural_network.BernoulliRBM``.
"""

from __future__ import annotations

import time
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils import check_random_state, gen_even_slices
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import Tensor

from dbn.eval.likelihood import pseudo_log_likelihood
from dbn.rbm import RBM
from dbn.sklearn._common import (CHUNK, FLOATS, TORCH_DTYPES, check_unit_interval, dense, map_rows, tensor,
                                 torch_device, torch_seed)


@torch.no_grad()
def _pcd_update(rbm: RBM, v_pos: Tensor, h_chains: Tensor, learning_rate: float, k: int,
                generator: torch.Generator) -> Tensor:
    """One stochastic-maximum-likelihood (PCD-k) SGD step, in place; returns the new hidden chains.

    With h_pos = p(h | v_pos), the chains run k sweeps v_neg ~ p(v | h), h_neg = p(h | v_neg), and

        W += lr / n · (h_posᵀ v_pos - h_negᵀ v_neg)
        c += lr / n · Σ (h_pos - h_neg)
        b += lr / n · Σ (v_pos - v_neg)

    with n = len(v_pos), as in scikit-learn's ``BernoulliRBM._fit`` (for k = 1, step for step).
    The new chains are h ~ p(h | v_neg).  v_pos: (n, n_visible); h_chains: (n_chains, n_hidden).
    """
    h_pos = rbm.hidden_mean(v_pos)
    h = h_chains
    for sweep in range(k):
        _, v_neg = rbm.sample_visible(h, generator)
        h_neg = rbm.hidden_mean(v_neg)
        if sweep < k - 1:
            h = rbm.hidden.sample(h_neg, generator)
    step = learning_rate / len(v_pos)
    rbm.weight.addmm_(h_pos.t(), v_pos, alpha=step).addmm_(h_neg.t(), v_neg, alpha=-step)
    rbm.hidden_bias.add_(h_pos.sum(0) - h_neg.sum(0), alpha=step)
    rbm.visible_bias.add_(v_pos.sum(0) - v_neg.sum(0), alpha=step)
    return rbm.hidden.sample(h_neg, generator)


class RBMTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Bernoulli RBM trained by persistent CD: ``sklearn.neural_network.BernoulliRBM`` on dbn's torch RBM.

    Parameters, fitted attributes and updates are BernoulliRBM's; the random numbers come
    from torch generators seeded by ``random_state``, so results equal BernoulliRBM's in
    distribution, not draw for draw. ``score_samples`` draws its corrupted bits as BernoulliRBM does.

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

    _parameter_constraints: dict = {
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
        """Fit to X, (n_samples, n_features) in [0, 1], dense or sparse, in ``n_iter`` sweeps of minibatches."""
        X = self._validate(X, reset=True, dtype=FLOATS)
        rbm, generator = self._init(X, check_random_state(self.random_state))
        chains = torch.zeros(self.batch_size, self.n_components, dtype=rbm.weight.dtype, device=rbm.weight.device)
        n_batches = int(np.ceil(X.shape[0] / self.batch_size))
        slices = list(gen_even_slices(n_batches * self.batch_size, n_batches, n_samples=X.shape[0]))
        data = X if sp.issparse(X) else tensor(X).to(rbm.weight.device)
        begin = time.time()
        for iteration in range(1, self.n_iter + 1):
            for batch in slices:
                v = dense(data[batch], rbm.weight) if sp.issparse(data) else data[batch]
                chains = _pcd_update(rbm, v, chains, self.learning_rate, self.k, generator)
            if self.verbose:
                self._store(rbm, chains)
                end = time.time()
                print(f"[{type(self).__name__}] Iteration {iteration}, pseudo-likelihood = "
                      f"{self.score_samples(X).mean():.2f}, time = {end - begin:.2f}s")
                begin = end
        self._store(rbm, chains)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """One update on X taken as a single minibatch (the first call initialises the model)."""
        first = not hasattr(self, "components_")
        X = self._validate(X, reset=first, dtype=FLOATS if first else self.components_.dtype)
        if not hasattr(self, "random_state_"):
            self.random_state_ = check_random_state(self.random_state)
        if first:
            rbm, generator = self._init(X, self.random_state_)
            chains = torch.zeros(self.batch_size, self.n_components, dtype=rbm.weight.dtype, device=rbm.weight.device)
        else:
            rbm, generator = self._to_rbm(), self._generator(self.random_state_)
            chains = torch.as_tensor(self.h_samples_).to(rbm.weight)
        v = dense(X, rbm.weight)
        self._store(rbm, _pcd_update(rbm, v, chains, self.learning_rate, self.k, generator))
        return self

    def _init(self, X, rng: np.random.RandomState) -> tuple[RBM, torch.Generator]:
        """A fresh RBM with W ~ N(0, 0.01²) and zero biases (BernoulliRBM's start), and the call's generator."""
        generator = self._generator(rng)
        init = generator if generator.device.type == "cpu" else torch.Generator().manual_seed(generator.initial_seed())
        rbm = RBM(X.shape[1], self.n_components, init_std=0.01, generator=init)
        self._n_features_out = self.n_components
        return rbm.to(device=generator.device, dtype=TORCH_DTYPES[np.dtype(X.dtype)]).requires_grad_(False), generator

    def _generator(self, rng: np.random.RandomState) -> torch.Generator:
        device = torch_device(self.device)
        return torch.Generator(device=device).manual_seed(torch_seed(rng))

    def _store(self, rbm: RBM, chains: Tensor) -> None:
        """The RBM's parameters as the fitted numpy attributes (the attributes are the model of record)."""
        self.components_ = rbm.weight.detach().cpu().numpy()
        self.intercept_hidden_ = rbm.hidden_bias.detach().cpu().numpy()
        self.intercept_visible_ = rbm.visible_bias.detach().cpu().numpy()
        self.h_samples_ = chains.cpu().numpy()

    def _to_rbm(self, dtype: np.dtype | None = None) -> RBM:
        """The fitted attributes (as they are now: users may edit them) as an RBM on ``device``."""
        n_components, n_features = self.components_.shape
        dtype = self.components_.dtype if dtype is None else np.result_type(self.components_.dtype, dtype)
        rbm = RBM(n_features, n_components, init_std=0.0).requires_grad_(False)
        rbm = rbm.to(device=torch_device(self.device), dtype=TORCH_DTYPES.get(dtype, torch.float64))
        for param, value in ((rbm.weight, self.components_), (rbm.hidden_bias, self.intercept_hidden_),
                             (rbm.visible_bias, self.intercept_visible_)):
            param.copy_(torch.as_tensor(np.asarray(value)))
        return rbm

    def _validate(self, X, reset: bool, dtype=FLOATS):
        X = validate_data(self, X, accept_sparse="csr", reset=reset, dtype=dtype)
        check_unit_interval(X)
        return X

    # --- inference ------------------------------------------------------------------------------------
    def transform(self, X):
        """p(h = 1 | v = X) = sigmoid(X @ components_.T + intercept_hidden_), (n_samples, n_components)."""
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        rbm = self._to_rbm(X.dtype)
        return map_rows(X, rbm.hidden_mean, rbm.weight.dtype, rbm.weight.device)

    def gibbs(self, v):
        """One Gibbs sweep h ~ p(h | v), v' ~ p(v | h); returns v' as a boolean array like BernoulliRBM."""
        check_is_fitted(self)
        v = self._validate(v, reset=False)
        if not hasattr(self, "random_state_"):
            self.random_state_ = check_random_state(self.random_state)
        generator, rbm = self._generator(self.random_state_), self._to_rbm(v.dtype)
        return map_rows(v, lambda x: rbm.gibbs(x, 1, generator), rbm.weight.dtype, rbm.weight.device).astype(bool)

    def score_samples(self, X):
        """Pseudo-likelihood n_features · log sigmoid(F(ṽ) - F(v)), ṽ = v with one random bit per row flipped.

        The flipped positions are drawn from ``random_state`` exactly as BernoulliRBM draws them,
        so with equal parameters and an int ``random_state`` the scores equal BernoulliRBM's.
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
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
