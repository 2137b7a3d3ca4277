"""``DBNClassifier``: greedy CD pretraining and fine-tuning with a softmax head, as ``dbn-train`` does, behind ``fit``/``predict``.

References:
    Hinton, Osindero & Teh (2006), "A fast learning algorithm for deep belief nets".
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from functools import partial
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import Tensor

from dbn.dbn import DBN
from dbn.device import resolve_device
from dbn.sklearn._common import FLOATS, check_unit_interval, map_rows, quiet_lightning, tensor, torch_seed


#: optimizer steps per Lightning batch in both stages (dbn-train's default: pretrain/finetune.steps_per_batch)
STEPS_PER_BATCH = 10
#: a smaller training set is repeated (and reshuffled) up to this many rows a Lightning epoch, so that
#: Lightning's per-epoch bookkeeping (about 10 ms) does not dominate the fit of a data set of a few hundred rows
EPOCH_ROWS = 2048


class DBNClassifier(ClassNamePrefixFeaturesOutMixin, ClassifierMixin, TransformerMixin, BaseEstimator):
    """A DBN pretrained greedily (CD-k per layer) and fine-tuned with a softmax head by backprop.

    Each layer is one ``Trainer.fit`` of :class:`~dbn.training.RBMModule` (SGD, momentum
    ``pretrain_momentum`` then ``pretrain_final_momentum`` from epoch 5, L2 on the weights);
    fine-tuning is :class:`~dbn.training.FineTuneModule` with Adam (cosine-annealed to 0 by default),
    dropout and cross-entropy. With ``pretrain=False`` the same net starts from a Glorot initialisation
    (the baseline). ``*_epochs`` count passes over the data: a set of fewer than ``EPOCH_ROWS`` rows is
    repeated within a Lightning epoch (see :func:`_epoch_plan`), which changes the cost, not the passes.
    The defaults were chosen on held-out splits against ``MLPClassifier``; see ``experiments/sklearn_defaults``.

    Args:
        hidden_layer_sizes: hidden layer sizes, bottom to top.
        pretrain: pretrain the stack before fine-tuning.
        pretrain_epochs, pretrain_lr, pretrain_k, pretrain_batch_size: CD-k schedule shared by all layers.
        pretrain_momentum, pretrain_final_momentum, pretrain_weight_decay: SGD momentum schedule and L2 cost.
        finetune_epochs, finetune_lr, finetune_batch_size: Adam fine-tuning.
        finetune_schedule: ``"cosine"`` (the learning rate falls from ``finetune_lr`` towards 0 along half a
            cosine, once a Lightning epoch) or ``"constant"``.
        dropout: dropout on every hidden layer's output while fine-tuning.
        label_smoothing: fine-tune against targets with this much of each one-hot label spread over all classes
            (Szegedy et al. 2016); the training loss only (early stopping watches the plain cross-entropy).
        early_stopping: hold out ``validation_fraction`` of the rows (stratified), stop fine-tuning after
            ``n_iter_no_change`` passes without a lower validation cross-entropy, and keep the best weights,
            as ``MLPClassifier(early_stopping=True)`` does (which watches accuracy); pretraining still sees every row.
        validation_fraction, n_iter_no_change: the held-out share and the patience, in passes, of ``early_stopping``.
        device: Lightning accelerator and device: ``"cpu"``, ``"gpu"``/``"cuda"``, ``"cuda:N"``, ``"mps"``, ``"auto"``.
        random_state: seeds the weights, the minibatch order and the Gibbs chains.
        verbose: show Lightning's progress bars and messages.

    Attributes:
        dbn_: the fine-tuned :class:`~dbn.DBN` with its head (on the CPU).
        classes_: the class labels, in the order of ``predict_proba``'s columns.
        pretrain_metrics_: per-layer final metrics of pretraining (None without it).
        n_iter_: passes of fine-tuning over the (training part of the) data, fewer than ``finetune_epochs`` when
            early stopping stopped it.
        best_validation_loss_: with ``early_stopping``, the held-out cross-entropy of the kept weights (else None).
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
        "finetune_schedule": [StrOptions({"constant", "cosine"})],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "label_smoothing": [Interval(Real, 0, 1, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, hidden_layer_sizes=(128, 128), *, pretrain=True, pretrain_epochs=5, pretrain_lr=0.05,
                 pretrain_k=1, pretrain_batch_size=64, pretrain_momentum=0.5, pretrain_final_momentum=0.9,
                 pretrain_weight_decay=2e-4, finetune_epochs=70, finetune_lr=1.5e-2, finetune_batch_size=64,
                 finetune_schedule="cosine", dropout=0.2, label_smoothing=0.1, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, device="cpu", random_state=None, verbose=0):
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
        self.finetune_schedule = finetune_schedule
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Pretrain (unless ``pretrain=False``) and fine-tune on X in [0, 1], (n_samples, n_features), labels y."""
        X, y = validate_data(self, X, y, dtype=FLOATS)
        check_classification_targets(y)
        check_unit_interval(X)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in y, "
                             f"got 1 class: {self.classes_[0]!r}")
        sizes = self._sizes(X.shape[1])
        rng = check_random_state(self.random_state)
        seed = torch_seed(rng)
        x, codes = tensor(X).to(torch.float32), torch.as_tensor(codes.reshape(-1), dtype=torch.int64)
        forked = [] if resolve_device(self.device).type == "cpu" else None
        # the global torch RNG drives Lightning's shuffling and the CD chains: seed it, then put it back
        with quiet_lightning(self.verbose), torch.random.fork_rng(devices=forked):
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed)
            model = DBN(sizes, generator=generator)
            self.pretrain_metrics_ = self._pretrain(model, x) if self.pretrain else None
            if not self.pretrain:
                model.reset_for_backprop(generator)
            model.add_head(len(self.classes_), generator=generator)
            self._finetune(model, x, codes, rng)
        self.dbn_ = model.cpu().eval()
        self._n_features_out = sizes[-1]
        return self

    def _sizes(self, n_features: int) -> list[int]:
        hidden = self.hidden_layer_sizes
        hidden = [hidden] if isinstance(hidden, Integral) else list(hidden)
        if not hidden or any(not isinstance(h, Integral) or h < 1 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be one or more integers >= 1, got {self.hidden_layer_sizes!r}")
        return [n_features, *(int(h) for h in hidden)]

    def _trainer(self, epochs: int, callbacks: list | None = None, validate: bool = False):
        import lightning as L

        device = resolve_device(self.device) if self.device != "auto" else None
        if device is None:
            accelerator, devices = "auto", 1
        elif device.type == "cuda":
            accelerator, devices = "gpu", [device.index or 0]
        else:
            accelerator, devices = device.type, 1
        return L.Trainer(max_epochs=int(epochs), accelerator=accelerator, devices=devices, logger=False,
                         enable_checkpointing=False, enable_progress_bar=bool(self.verbose), enable_model_summary=False,
                         limit_val_batches=None if validate else 0, num_sanity_val_steps=0, callbacks=callbacks)

    def _pretrain(self, model: DBN, x: Tensor) -> list[dict]:
        from dbn.training.pretrain import greedy_pretrain, layer_schedules

        epochs, repeats = _epoch_plan(len(x), self.pretrain_epochs)
        # momentum switches after 5 passes over the data, as with one pass an epoch
        shared = {"epochs": epochs, "lr": self.pretrain_lr, "k": self.pretrain_k,
                  "batch_size": self.pretrain_batch_size, "momentum": self.pretrain_momentum,
                  "final_momentum": self.pretrain_final_momentum, "momentum_switch_epoch": math.ceil(5 / repeats),
                  "weight_decay": self.pretrain_weight_decay, "steps_per_batch": STEPS_PER_BATCH}
        schedules = layer_schedules(shared, None, len(model.layers))
        return greedy_pretrain(model, x.repeat(repeats, 1), None, schedules,
                               lambda i, schedule: self._trainer(schedule["epochs"]))

    def _finetune(self, model: DBN, x: Tensor, codes: Tensor, rng: np.random.RandomState) -> None:
        from dbn.data.base import batch_loader
        from dbn.training.finetune import FineTuneModule

        callbacks, val_loader = [], None
        if self.early_stopping:  # stratified like MLPClassifier's split, with the estimator's random state
            train, val = train_test_split(np.arange(len(x)), test_size=self.validation_fraction,
                                          random_state=rng, stratify=codes.numpy())
            x, codes, x_val, codes_val = x[train], codes[train], x[val], codes[val]
            val_loader = batch_loader(x_val, codes_val, batch_size=4096)
        epochs, repeats = _epoch_plan(len(x), self.finetune_epochs)
        if self.early_stopping:
            callbacks = _early_stopping(patience=math.ceil(self.n_iter_no_change / repeats))
        scheduler = _cosine(epochs) if self.finetune_schedule == "cosine" else None
        module = FineTuneModule(model, optimizer=partial(torch.optim.Adam, lr=self.finetune_lr, fused=True),
                                scheduler=scheduler, dropout=self.dropout, label_smoothing=self.label_smoothing,
                                batch_size=self.finetune_batch_size,
                                steps_per_batch=STEPS_PER_BATCH)
        loader = batch_loader(x.repeat(repeats, 1), codes.repeat(repeats), batch_size=module.loader_batch_size,
                              shuffle=True)
        trainer = self._trainer(epochs, callbacks, validate=val_loader is not None)
        trainer.fit(module, train_dataloaders=loader, val_dataloaders=val_loader)
        self.n_iter_ = trainer.current_epoch * repeats  # passes over the (training part of the) data
        self.best_validation_loss_ = None
        if callbacks:
            stopper, best = callbacks
            self.best_validation_loss_ = float(stopper.best_score)
            best.restore(model)

    # --- inference ------------------------------------------------------------------------------------
    def _apply(self, X, fn: Callable[[DBN, Tensor], Tensor]) -> np.ndarray:
        """``fn(model, x)`` on validated X, on ``device``, returned in X's float dtype."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=FLOATS)
        check_unit_interval(X)
        device = resolve_device(self.device)
        model = self.dbn_ if device.type == "cpu" else copy.deepcopy(self.dbn_).to(device)
        return map_rows(X, partial(fn, model), torch.float32, device).astype(X.dtype, copy=False)

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


def _epoch_plan(n_rows: int, passes: int) -> tuple[int, int]:
    """``(epochs, repeats)``: Lightning epochs of ``repeats`` copies of the data each, ``epochs × repeats ≈ passes``.

    A copy is repeated until an epoch holds ``EPOCH_ROWS`` rows, never beyond ``passes`` copies; the total
    differs from ``passes`` by less than half an epoch's copies (100 passes over 142 rows: 7 epochs of 14).
    """
    most = max(1, min(passes, math.ceil(EPOCH_ROWS / max(n_rows, 1))))
    epochs = math.ceil(passes / most)
    return epochs, max(1, round(passes / epochs))


def _cosine(epochs: int):
    """A partial ``LambdaLR`` at ``(1 + cos(pi e / epochs)) / 2`` in epoch e: the last epoch still learns (a
    small set has only a few Lightning epochs, see :func:`_epoch_plan`)."""
    from dbn.training.schedules import lr_factor

    factor = partial(lr_factor, "cosine", epochs=epochs + 1, final=0.0)
    return partial(torch.optim.lr_scheduler.LambdaLR, lr_lambda=factor)


def _early_stopping(patience: int) -> list:
    """Lightning's ``EarlyStopping`` on the held-out cross-entropy, and a callback that keeps the weights of its
    best epoch in memory (``restore(model)`` puts them back; Lightning's ``ModelCheckpoint`` would write files)."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping

    stopper = EarlyStopping(monitor="finetune/val/loss", mode="min", patience=patience, min_delta=0.0)

    class KeepBest(L.Callback):
        state: dict | None = None

        def on_validation_end(self, trainer, pl_module):  # after EarlyStopping's check (it comes first in the list)
            if stopper.wait_count == 0:  # the monitored loss just improved
                self.state = {k: v.detach().clone() for k, v in pl_module.dbn.state_dict().items()}

        def restore(self, model: DBN) -> None:
            if self.state is not None:
                model.load_state_dict(self.state)

    return [stopper, KeepBest()]
