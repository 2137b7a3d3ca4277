"""In-memory tensor data modules.

Every data set here fits in memory, so it is held as whole tensors and served
in batches by indexing them (``__getitems__``): no per-sample Python calls, no
collation. Batches are tuples ``(x,)`` or ``(x, y)``; pretraining batches of data with
missing values are ``(x, mask)``.

Missing values: with ``missing=True`` a NaN in the features marks a missing entry. The
data module replaces it by 0 and keeps a mask (1 = observed) beside each split
(``train_mask``, ``val_mask``, ``test_mask``; None when nothing is missing). Zero-filled,
a missing entry adds nothing to the hidden units' input, which is what an RBM over the
observed entries computes; pretraining also leaves it out of the CD statistics.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import Tensor
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from dbn.errors import DataError


class TensorBatches(Dataset):
    """Tensors of equal length served a whole batch at a time."""

    def __init__(self, *tensors: Tensor) -> None:
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError("TensorBatches needs tensors of equal length")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        return tuple(t[i] for t in self.tensors)

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, ...]:
        idx = torch.as_tensor(indices, device=self.tensors[0].device)
        return tuple(t[idx] for t in self.tensors)


def _whole_batch(batch):
    return batch


def batch_loader(*tensors: Tensor, batch_size: int, shuffle: bool = False, drop_last: bool = False) -> DataLoader:
    """A DataLoader over in-memory tensors; Lightning can still swap in a DistributedSampler."""
    return DataLoader(
        TensorBatches(*tensors), batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, collate_fn=_whole_batch
    )


def eval_loader(*tensors: Tensor, batch_size: int, trainer: L.Trainer | None = None) -> DataLoader:
    """An evaluation loader; under several processes each rank gets its own rows, none repeated.

    Lightning's default for evaluation under DDP is a ``DistributedSampler``, which pads the
    ranks to equal length by repeating rows, so validation and test metrics would count some
    rows twice. Here every row is seen exactly once across ranks (rank r takes rows r, r + W, ...),
    and the modules sum their statistics over ranks, so an epoch's value is the whole set's.
    """
    if trainer is None or trainer.world_size == 1:
        return batch_loader(*tensors, batch_size=batch_size)
    dataset = TensorBatches(*tensors)
    sampler = UnrepeatedDistributedSampler(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=_whole_batch)


def as_features(x, what: str, allow_missing: bool = False) -> Tensor:
    """Data as a float32 (n, d) tensor, images flattened; rejects empty or infinite data, NaN unless ``allow_missing``."""
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    if x.ndim == 1:
        raise DataError(f"{what} is 1-D (shape {tuple(x.shape)}); features need shape (n_samples, n_features)")
    x = x.flatten(1).to(torch.float32)
    if len(x) == 0 or x.shape[1] == 0:
        raise DataError(f"{what} is empty (shape {tuple(x.shape)}); check the data path and filters")
    bad = ~torch.isfinite(x)
    if allow_missing:
        bad &= ~torch.isnan(x)
    if bad.any():
        hint = "" if allow_missing else ", or mark missing entries as NaN and set data.missing=true"
        raise DataError(f"{what} holds {int(bad.sum())} {'infinite' if allow_missing else 'NaN or infinite'} values; "
                        f"remove or impute them before training{hint}")
    return x


def observed_mean(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-feature mean over the observed entries (all of them without a mask).  (n, d) -> (d,)"""
    if mask is None:
        return x.mean(0)
    return (x * mask).sum(0) / mask.sum(0).clamp_min(1.0)


def fill_missing(x: Tensor) -> tuple[Tensor, Tensor | None]:
    """NaN -> 0, with the mask of observed entries (1.0) in x's dtype; the mask is None when nothing is missing."""
    missing = torch.isnan(x)
    if not missing.any():
        return x, None
    return x.masked_fill(missing, 0.0), (~missing).to(x.dtype)


def as_labels(y, n: int, what: str) -> Tensor:
    """Labels as an int64 (n,) tensor of class indices."""
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y).reshape(-1)
    if len(y) != n:
        raise DataError(f"{what} has {len(y)} labels for {n} samples; they must match one to one")
    if y.is_floating_point():
        if not torch.isfinite(y).all() or not torch.equal(y, y.round()):
            raise DataError(f"{what} must hold integer class labels 0..C-1, found non-integer values")
    y = y.to(torch.int64)
    if len(y) and int(y.min()) < 0:
        raise DataError(f"{what} must hold class labels 0..C-1, found {int(y.min())}")
    return y


def balanced_subset(y: Tensor | None, n: int, generator: torch.Generator) -> Tensor:
    """Indices of ``n`` rows with the classes as equal in number as ``n`` allows (random within a class)."""
    if y is None:
        raise DataError("labelled=N needs labels to draw the labelled subset from; give data.labels=FILE")
    classes = torch.unique(y)
    if n < len(classes) or n > len(y):
        raise DataError(f"labelled={n} must be between the number of classes ({len(classes)}) and the "
                        f"number of training images ({len(y)})")
    per_class = [torch.nonzero(y == c).flatten() for c in classes]
    per_class = [rows[torch.randperm(len(rows), generator=generator)] for rows in per_class]
    quota = [n // len(classes) + (i < n % len(classes)) for i in range(len(classes))]
    if any(q > len(rows) for q, rows in zip(quota, per_class)):
        raise DataError(f"labelled={n}: some class has fewer than {max(quota)} training images")
    return torch.cat([rows[:q] for q, rows in zip(quota, per_class)]).sort().values


def _outside_unit_interval(x: Tensor) -> tuple[float, float] | None:
    """(min, max) of x where some value lies outside [0, 1], else None (one pass over x)."""
    lo, hi = (float(v) for v in torch.aminmax(x)) if x.numel() else (0.0, 0.0)
    return (lo, hi) if lo < 0 or hi > 1 else None


class TensorDataModule(L.LightningDataModule):
    """A labelled (or unlabelled) data set held in memory, split into train / val / test.

    Subclasses implement :meth:`load`. The validation split is cut from the
    training data with a seeded permutation; the test split is the source's own.

    Args:
        batch_size: batch size of every loader (the pipeline sets it per stage).
        val_fraction: share of the training data held out for validation (0 for none).
        binarize: None, ``"threshold"`` (x > 0.5) or ``"sample"`` (x ~ Bernoulli(x), drawn once with ``seed``).
        seed: seed of the split and of the binarisation.
        missing: NaN features mark missing entries (zero-filled, with masks) instead of being rejected.
        labelled: fine-tune on only this many labelled training images (the same number of each
            class, drawn with ``seed``); pretraining still sees every training image. None: all.
        invert: x -> 1 - x for every observed value, after binarisation (so the inverted images are the exact
            complements of the plain ones, draw for draw); values must be in [0, 1]. The "flipped" data sets of
            Melchior, Fischer & Wiskott (2016): a centered RBM is invariant to the flip, a plain one is not.
    """

    def __init__(self, batch_size: int = 64, val_fraction: float = 0.1, binarize: str | None = None, seed: int = 0,
                 missing: bool = False, labelled: int | None = None, invert: bool = False) -> None:
        super().__init__()
        if int(batch_size) < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= float(val_fraction) < 1.0:
            raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if binarize not in (None, False, "threshold", "sample"):
            raise DataError(f"binarize must be null, 'threshold' or 'sample', got {binarize!r}")
        self.batch_size, self.val_fraction, self.binarize, self.seed = int(batch_size), float(val_fraction), binarize or None, seed
        self.missing, self.invert = bool(missing), bool(invert)
        if labelled is not None and (isinstance(labelled, bool) or int(labelled) < 1):
            raise DataError(f"labelled must be a number of labelled training images >= 1 or null, got {labelled}")
        self.labelled = None if labelled is None else int(labelled)
        self.labelled_idx: Tensor | None = None  # rows of train_x/train_y that fine-tuning sees
        self.train_x = self.train_y = self.val_x = self.val_y = self.test_x = self.test_y = None
        self.train_mask = self.val_mask = self.test_mask = None

    # subclasses ------------------------------------------------------------------------------------
    def load(self) -> dict:
        """Return ``{"x_train", "y_train", "x_test", "y_test"}`` (labels and test may be None)."""
        raise NotImplementedError

    # Lightning hooks ---------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.train_x is not None:
            return
        raw = self.load()
        x = as_features(raw["x_train"], "training data", self.missing)
        y = None if raw.get("y_train") is None else as_labels(raw["y_train"], len(x), "training labels")
        x, mask = fill_missing(x)
        if raw.get("x_test") is not None:
            self.test_x = as_features(raw["x_test"], "test data", self.missing)
            if self.test_x.shape[1] != x.shape[1]:
                raise DataError(f"test data has {self.test_x.shape[1]} features but training data has {x.shape[1]}")
            self.test_x, self.test_mask = fill_missing(self.test_x)
            if raw.get("y_test") is not None:
                self.test_y = as_labels(raw["y_test"], len(self.test_x), "test labels")
        if self.invert:
            for name, values in (("training data", x), ("test data", self.test_x)):
                if values is not None and (outside := _outside_unit_interval(values)):
                    raise DataError(f"invert=true needs {name} in [0, 1], found values in [{outside[0]:g}, "
                                    f"{outside[1]:g}]; scale the data into [0, 1] or drop invert")
        gen = torch.Generator().manual_seed(int(self.seed))
        x = self._inverted(self._binarized(x, gen), mask)
        if self.test_x is not None:
            self.test_x = self._inverted(self._binarized(self.test_x, gen), self.test_mask)
        n_val = int(round(self.val_fraction * len(x)))
        if n_val and len(x) - n_val < 1:
            raise DataError(f"val_fraction={self.val_fraction} leaves no training data out of {len(x)} samples")
        perm = torch.randperm(len(x), generator=gen)
        train_idx, val_idx = perm[n_val:], perm[:n_val]
        self.train_x = x[train_idx]
        self.train_y = None if y is None else y[train_idx]
        self.train_mask = None if mask is None else mask[train_idx]
        if n_val:
            self.val_x = x[val_idx]
            self.val_y = None if y is None else y[val_idx]
            self.val_mask = None if mask is None else mask[val_idx]
        if self.labelled is not None:
            self.labelled_idx = balanced_subset(self.train_y, self.labelled, gen)

    def train_dataloader(self) -> DataLoader:
        if self.labelled_idx is None:
            return self._loader(self.train_x, self.train_y, shuffle=True)
        return self._loader(self.train_x[self.labelled_idx], self.train_y[self.labelled_idx], shuffle=True)

    def _binarized(self, x: Tensor, gen: torch.Generator) -> Tensor:
        if self.binarize == "threshold":
            return (x > 0.5).to(x.dtype)
        if self.binarize == "sample":
            if _outside_unit_interval(x):
                raise DataError("binarize='sample' needs values in [0, 1]; scale the data first")
            return torch.bernoulli(x, generator=gen)
        return x

    def _inverted(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """1 - x where observed; missing entries stay 0-filled."""
        if not self.invert:
            return x
        return 1 - x if mask is None else (1 - x) * mask

    def _loader(self, x: Tensor | None, y: Tensor | None, shuffle: bool) -> DataLoader | list:
        if x is None:
            return []
        tensors = (x,) if y is None else (x, y)
        if shuffle:
            return batch_loader(*tensors, batch_size=self.batch_size, shuffle=True)
        return eval_loader(*tensors, batch_size=self.batch_size, trainer=self.trainer)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_x, self.val_y, shuffle=False)

    def test_dataloader(self) -> DataLoader | list:
        return self._loader(self.test_x, self.test_y, shuffle=False)

    # facts ---------------------------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def n_classes(self) -> int | None:
        if self.train_y is None:
            return None
        ys = [t for t in (self.train_y, self.val_y, self.test_y) if t is not None]
        return int(max(int(t.max()) for t in ys)) + 1

    @property
    def scaling(self) -> dict | None:
        """The feature scaling fitted on the training split (see ArraysDataModule), or None."""
        return None

    def describe(self) -> dict:
        out = {
            "name": type(self).__name__,
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "n_train": len(self.train_x),
            "n_val": 0 if self.val_x is None else len(self.val_x),
            "n_test": 0 if self.test_x is None else len(self.test_x),
        }
        if self.labelled_idx is not None:
            out["n_labelled"] = len(self.labelled_idx)
        masks = [m for m in (self.train_mask, self.val_mask, self.test_mask) if m is not None]
        if masks:
            observed = sum(float(m.sum()) for m in masks)
            out["missing_fraction"] = 1.0 - observed / sum(m.numel() for m in masks)
        if self.scaling is not None:  # the statistics themselves travel with the model (DBN.input_scaling)
            out["scale"] = self.scaling["kind"]
        return out
