"""scikit-learn estimators on dbn's torch code: ``RBMTransformer`` and ``DBNClassifier``.

``RBMTransformer`` is a drop-in for ``sklearn.neural_network.BernoulliRBM``: the same
parameters, attributes and algorithm (persistent CD-1 with plain SGD on the mean
gradient), computed by :class:`dbn.rbm.RBM` on a selectable torch device.
``DBNClassifier`` pretrains a DBN greedily with Lightning and fine-tunes it with a
softmax head by backprop, as ``dbn-train`` does, behind ``fit``/``predict``.

Both reject values outside [0, 1]: Bernoulli visible units model probabilities
(BernoulliRBM does not check). Scale first, e.g. with ``MinMaxScaler(clip=True)``.

References:
    Tieleman (2008), "Training RBMs using approximations to the likelihood gradient" (PCD);
    Hinton, Osindero & Teh (2006), "A fast learning algorithm for deep belief nets".
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils import check_random_state, gen_even_slices
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import Tensor

from dbn.dbn import DBN
from dbn.rbm import RBM

FLOATS = (np.float64, np.float32)
_CHUNK = 4096  # rows per device batch when mapping a whole data set


# --- shared helpers ---------------------------------------------------------------------------------
def _torch_device(device: str | torch.device) -> torch.device:
    """``"auto"`` (CUDA when present), ``"gpu"`` (= ``"cuda"``) or any torch device string."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device("cuda" if device == "gpu" else device)


def _torch_seed(rng: np.random.RandomState) -> int:
    """One draw from scikit-learn's random state seeds the torch generators of a call."""
    return int(rng.randint(np.iinfo(np.int32).max))


def _check_unit_interval(X, what: str = "X") -> None:
    """ValueError naming the range unless every value of X (dense or sparse, already finite) lies in [0, 1]."""
    values = X.data if sp.issparse(X) else X
    if values.size == 0:
        return
    lo, hi = float(values.min()), float(values.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{what} has values in [{lo:g}, {hi:g}] but Bernoulli visible units need values in "
                         "[0, 1] (probabilities or binary data); scale X first, e.g. with MinMaxScaler(clip=True) "
                         "in a Pipeline")


def _tensor(rows) -> Tensor:
    """Dense or sparse rows as a CPU tensor, sharing memory where it can (read-only arrays are copied)."""
    rows = np.ascontiguousarray(rows.toarray() if sp.issparse(rows) else rows)
    return torch.from_numpy(rows if rows.flags.writeable else rows.copy())


def _row_chunks(X, dtype: torch.dtype, device: torch.device, chunk: int = _CHUNK) -> Iterator[Tensor]:
    """Dense (rows, n_features) tensors of X on ``device``; sparse rows are densified one chunk at a time."""
    for start in range(0, X.shape[0], chunk):
        yield _tensor(X[start:start + chunk]).to(device=device, dtype=dtype)


def _dense(rows, like: Tensor) -> Tensor:
    """A (sparse or dense) block of rows as a dense tensor with ``like``'s dtype and device."""
    return _tensor(rows).to(like)


def _map_rows(X, fn: Callable[[Tensor], Tensor], dtype: torch.dtype, device: torch.device) -> np.ndarray:
    """``fn`` applied to X chunk by chunk, concatenated as one numpy array."""
    return torch.cat([fn(rows).cpu() for rows in _row_chunks(X, dtype, device)]).numpy()


_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


# --- RBMTransformer -----------------------------------------------------------------------------------
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
        data = X if sp.issparse(X) else _tensor(X).to(rbm.weight.device)
        begin = time.time()
        for iteration in range(1, self.n_iter + 1):
            for batch in slices:
                v = _dense(data[batch], rbm.weight) if sp.issparse(data) else data[batch]
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
        v = _dense(X, rbm.weight)
        self._store(rbm, _pcd_update(rbm, v, chains, self.learning_rate, self.k, generator))
        return self

    def _init(self, X, rng: np.random.RandomState) -> tuple[RBM, torch.Generator]:
        """A fresh RBM with W ~ N(0, 0.01²) and zero biases (BernoulliRBM's start), and the call's generator."""
        generator = self._generator(rng)
        init = generator if generator.device.type == "cpu" else torch.Generator().manual_seed(generator.initial_seed())
        rbm = RBM(X.shape[1], self.n_components, init_std=0.01, generator=init)
        self._n_features_out = self.n_components
        return rbm.to(device=generator.device, dtype=_TORCH_DTYPES[np.dtype(X.dtype)]).requires_grad_(False), generator

    def _generator(self, rng: np.random.RandomState) -> torch.Generator:
        device = _torch_device(self.device)
        return torch.Generator(device=device).manual_seed(_torch_seed(rng))

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
        rbm = rbm.to(device=_torch_device(self.device), dtype=_TORCH_DTYPES.get(dtype, torch.float64))
        for param, value in ((rbm.weight, self.components_), (rbm.hidden_bias, self.intercept_hidden_),
                             (rbm.visible_bias, self.intercept_visible_)):
            param.copy_(torch.as_tensor(np.asarray(value)))
        return rbm

    def _validate(self, X, reset: bool, dtype=FLOATS):
        X = validate_data(self, X, accept_sparse="csr", reset=reset, dtype=dtype)
        _check_unit_interval(X)
        return X

    # --- inference ------------------------------------------------------------------------------------
    def transform(self, X):
        """p(h = 1 | v = X) = sigmoid(X @ components_.T + intercept_hidden_), (n_samples, n_components)."""
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        rbm = self._to_rbm(X.dtype)
        return _map_rows(X, rbm.hidden_mean, rbm.weight.dtype, rbm.weight.device)

    def gibbs(self, v):
        """One Gibbs sweep h ~ p(h | v), v' ~ p(v | h); returns v' as a boolean array like BernoulliRBM."""
        check_is_fitted(self)
        v = self._validate(v, reset=False)
        if not hasattr(self, "random_state_"):
            self.random_state_ = check_random_state(self.random_state)
        generator, rbm = self._generator(self.random_state_), self._to_rbm(v.dtype)
        return _map_rows(v, lambda x: rbm.gibbs(x, 1, generator), rbm.weight.dtype, rbm.weight.device).astype(bool)

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
        chunks = iter(flip.split(_CHUNK))

        def score(v: Tensor) -> Tensor:
            cols = next(chunks).to(v.device)
            rows = torch.arange(len(v), device=v.device)
            corrupted = v.clone()
            corrupted[rows, cols] = 1 - corrupted[rows, cols]
            gap = rbm.free_energy(corrupted) - rbm.free_energy(v)
            return -v.shape[1] * torch.nn.functional.softplus(-gap)  # log sigmoid(x) = -softplus(-x)

        return _map_rows(X, score, rbm.weight.dtype, rbm.weight.device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


# --- DBNClassifier --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_lightning(verbose: int) -> Iterator[None]:
    """Silence Lightning's banners ("GPU available: ...") and hints unless ``verbose``."""
    if verbose:
        yield
        return
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PossibleUserWarning)
        # torch's notice about Lightning's own use of a deprecated pytree API: nothing the caller can act on
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


class DBNClassifier(ClassNamePrefixFeaturesOutMixin, ClassifierMixin, TransformerMixin, BaseEstimator):
    """A DBN pretrained greedily (CD-k per layer) and fine-tuned with a softmax head by backprop.

    Each layer is one ``Trainer.fit`` of :class:`~dbn.training.RBMModule` (SGD, momentum
    ``pretrain_momentum`` then ``pretrain_final_momentum`` from epoch 5, L2 on the weights);
    fine-tuning is :class:`~dbn.training.FineTuneModule` with Adam, dropout and cross-entropy.
    With ``pretrain=False`` the same net starts from a Glorot initialisation (the baseline).

    Args:
        hidden_layer_sizes: hidden layer sizes, bottom to top.
        pretrain: pretrain the stack before fine-tuning.
        pretrain_epochs, pretrain_lr, pretrain_k, pretrain_batch_size: CD-k schedule shared by all layers.
        pretrain_momentum, pretrain_final_momentum, pretrain_weight_decay: SGD momentum schedule and L2 cost.
        finetune_epochs, finetune_lr, finetune_batch_size: Adam fine-tuning.
        dropout: dropout on every hidden layer's output while fine-tuning.
        device: Lightning accelerator and device: ``"cpu"``, ``"gpu"``/``"cuda"``, ``"cuda:N"``, ``"mps"``, ``"auto"``.
        random_state: seeds the weights, the minibatch order and the Gibbs chains.
        verbose: show Lightning's progress bars and messages.

    Attributes:
        dbn_: the fine-tuned :class:`~dbn.DBN` with its head (on the CPU).
        classes_: the class labels, in the order of ``predict_proba``'s columns.
        pretrain_metrics_: per-layer final metrics of pretraining (None without it).
        n_features_in_: number of features seen in ``fit``.

    References:
        Hinton, Osindero & Teh (2006); Hinton & Salakhutdinov (2006).
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "pretrain": ["boolean"],
        "pretrain_epochs": [Interval(Integral, 1, None, closed="left")],
        "pretrain_lr": [Interval(Real, 0, None, closed="neither")],
        "pretrain_k": [Interval(Integral, 1, None, closed="left")],
        "pretrain_batch_size": [Interval(Integral, 1, None, closed="left")],
        "pretrain_momentum": [Interval(Real, 0, 1, closed="left")],
        "pretrain_final_momentum": [Interval(Real, 0, 1, closed="left")],
        "pretrain_weight_decay": [Interval(Real, 0, None, closed="left")],
        "finetune_epochs": [Interval(Integral, 1, None, closed="left")],
        "finetune_lr": [Interval(Real, 0, None, closed="neither")],
        "finetune_batch_size": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, hidden_layer_sizes=(256, 256), *, pretrain=True, pretrain_epochs=10, pretrain_lr=0.05,
                 pretrain_k=1, pretrain_batch_size=32, pretrain_momentum=0.5, pretrain_final_momentum=0.9,
                 pretrain_weight_decay=2e-4, finetune_epochs=30, finetune_lr=1e-3, finetune_batch_size=32,
                 dropout=0.2, device="cpu", random_state=None, verbose=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.pretrain = pretrain
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_lr = pretrain_lr
        self.pretrain_k = pretrain_k
        self.pretrain_batch_size = pretrain_batch_size
        self.pretrain_momentum = pretrain_momentum
        self.pretrain_final_momentum = pretrain_final_momentum
        self.pretrain_weight_decay = pretrain_weight_decay
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr
        self.finetune_batch_size = finetune_batch_size
        self.dropout = dropout
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Pretrain (unless ``pretrain=False``) and fine-tune on X in [0, 1], (n_samples, n_features), labels y."""
        X, y = validate_data(self, X, y, dtype=FLOATS)
        check_classification_targets(y)
        _check_unit_interval(X)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in y, "
                             f"got 1 class: {self.classes_[0]!r}")
        sizes = self._sizes(X.shape[1])
        seed = _torch_seed(check_random_state(self.random_state))
        x, codes = _tensor(X).to(torch.float32), torch.as_tensor(codes.reshape(-1), dtype=torch.int64)
        forked = [] if _torch_device(self.device).type == "cpu" else None
        # the global torch RNG drives Lightning's shuffling and the CD chains: seed it, then put it back
        with _quiet_lightning(self.verbose), torch.random.fork_rng(devices=forked):
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed)
            model = DBN(sizes, generator=generator)
            self.pretrain_metrics_ = self._pretrain(model, x) if self.pretrain else None
            if not self.pretrain:
                model.reset_for_backprop(generator)
            model.add_head(len(self.classes_), generator=generator)
            self._finetune(model, x, codes)
        self.dbn_ = model.cpu().eval()
        self._n_features_out = sizes[-1]
        return self

    def _sizes(self, n_features: int) -> list[int]:
        hidden = self.hidden_layer_sizes
        hidden = [hidden] if isinstance(hidden, Integral) else list(hidden)
        if not hidden or any(not isinstance(h, Integral) or h < 1 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be one or more integers >= 1, got {self.hidden_layer_sizes!r}")
        return [n_features, *(int(h) for h in hidden)]

    def _trainer(self, epochs: int):
        import lightning as L

        device = _torch_device(self.device) if self.device != "auto" else None
        if device is None:
            accelerator, devices = "auto", 1
        elif device.type == "cuda":
            accelerator, devices = "gpu", [device.index or 0]
        else:
            accelerator, devices = device.type, 1
        return L.Trainer(max_epochs=int(epochs), accelerator=accelerator, devices=devices, logger=False,
                         enable_checkpointing=False, enable_progress_bar=bool(self.verbose), enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0)

    def _pretrain(self, model: DBN, x: Tensor) -> list[dict]:
        from dbn.training.pretrain import greedy_pretrain, layer_schedules

        shared = {"epochs": self.pretrain_epochs, "lr": self.pretrain_lr, "k": self.pretrain_k,
                  "batch_size": self.pretrain_batch_size, "momentum": self.pretrain_momentum,
                  "final_momentum": self.pretrain_final_momentum, "weight_decay": self.pretrain_weight_decay}
        schedules = layer_schedules(shared, None, len(model.layers))
        return greedy_pretrain(dbn=model, train_x=x, val_x=None, schedules=schedules, make_trainer=self._trainer)

    def _finetune(self, model: DBN, x: Tensor, codes: Tensor) -> None:
        from dbn.data.base import batch_loader
        from dbn.training.finetune import FineTuneModule

        module = FineTuneModule(model, optimizer=partial(torch.optim.Adam, lr=self.finetune_lr, fused=True), dropout=self.dropout)
        loader = batch_loader(x, codes, batch_size=self.finetune_batch_size, shuffle=True)
        self._trainer(self.finetune_epochs).fit(module, train_dataloaders=loader)

    # --- inference ------------------------------------------------------------------------------------
    def _apply(self, X, fn: Callable[[DBN, Tensor], Tensor]) -> np.ndarray:
        """``fn(model, x)`` on validated X, on ``device``, returned in X's float dtype."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=FLOATS)
        _check_unit_interval(X)
        device = _torch_device(self.device)
        model = self.dbn_ if device.type == "cpu" else copy.deepcopy(self.dbn_).to(device)
        return _map_rows(X, partial(fn, model), torch.float32, device).astype(X.dtype, copy=False)

    def predict_proba(self, X):
        """Class probabilities, (n_samples, n_classes), columns in the order of ``classes_``."""
        return self._apply(X, DBN.predict_proba)

    def predict(self, X):
        """The most probable class of each row, as labels from ``classes_``."""
        proba = self.predict_proba(X)  # first, so an unfitted model raises NotFittedError
        return self.classes_[proba.argmax(1)]

    def transform(self, X):
        """Top-layer features E[h_L | X] of the fine-tuned stack, (n_samples, hidden_layer_sizes[-1])."""
        return self._apply(X, DBN.transform)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


# --- scikit-learn's estimator checks ------------------------------------------------------------------
_OUT_OF_RANGE = ("the check fits on data outside [0, 1] (blobs, standard normal, shifted or scaled uniform "
                 "values), which Bernoulli visible units reject with a ValueError; "
                 "it passes behind MinMaxScaler(clip=True)")
_RANGE_CHECKS = (
    "check_estimators_overwrite_params", "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
    "check_readonly_memmap_input", "check_n_features_in_after_fitting", "check_positive_only_tag_during_fit",
    "check_estimators_dtypes", "check_pipeline_consistency", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_transformer_data_not_an_array", "check_transformer_general",
    "check_transformer_preserve_dtypes", "check_methods_sample_order_invariance", "check_methods_subset_invariance",
    "check_fit2d_1sample", "check_fit2d_1feature", "check_dict_unchanged", "check_fit_idempotent",
    "check_fit_check_is_fitted", "check_n_features_in", "check_fit2d_predict1d",
)
_CLASSIFIER_RANGE_CHECKS = ("check_classifier_data_not_an_array", "check_classifiers_classes",
                            "check_classifiers_train")
#: checks that fail whatever the data, and why
SCORE_SAMPLES_XFAILS = {
    "check_methods_sample_order_invariance": "score_samples flips one random bit per row, drawn from random_state in "
                                             "row order (as BernoulliRBM does; scikit-learn expects this failure too)",
    "check_methods_subset_invariance": "score_samples flips one random bit per row, drawn from random_state in row "
                                       "order: a subset gets other bits (as BernoulliRBM; scikit-learn expects it too)",
}


def expected_failed_checks(estimator) -> dict[str, str]:
    """scikit-learn's estimator checks that these estimators fail, each with the reason.

    Pass it on: ``parametrize_with_checks([RBMTransformer()], expected_failed_checks=expected_failed_checks)``.
    """
    if isinstance(estimator, RBMTransformer):
        return dict.fromkeys(_RANGE_CHECKS, _OUT_OF_RANGE)
    if isinstance(estimator, DBNClassifier):
        return dict.fromkeys(_RANGE_CHECKS + _CLASSIFIER_RANGE_CHECKS, _OUT_OF_RANGE)
    return {}
