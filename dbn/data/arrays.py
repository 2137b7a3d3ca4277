"""The user's own arrays: features (and optional labels) from .npy / .npz / .pt files.

Scaling statistics come from the training split only (everything but the test split)
and are applied unchanged to the validation and test data; ``scaling`` reports them
(written to ``results.json`` and saved with the DBN, see :meth:`dbn.DBN.preprocess`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dbn.data.base import TensorDataModule, as_features, as_labels
from dbn.errors import DataError
from dbn.units import Softmax


def load_array(path: str | Path, what: str) -> np.ndarray:
    """Load one array from .npy, .npz (its only array) or .pt (a tensor)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist; pass an existing .npy/.npz/.pt file")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if len(z.files) != 1:
                raise DataError(f"{what} file {path} holds arrays {z.files}; save exactly one array per file")
            return z[z.files[0]]
    if path.suffix in (".pt", ".pth"):
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(obj, torch.Tensor):
            raise DataError(f"{what} file {path} holds a {type(obj).__name__}, expected a tensor")
        return obj.numpy()
    raise DataError(f"{what} file {path}: unsupported type {path.suffix!r}; use .npy, .npz or .pt")


#: feature scalings: per feature, from the training split
SCALES = (None, "minmax", "standard")


class ArraysDataModule(TensorDataModule):
    """Features from files; a stratified, seeded test split is cut unless test files are given.

    Args:
        features: (n, d) feature file.
        labels: optional (n,) integer class labels.
        test_features: optional test features (then no test split is cut).
        test_labels: optional test labels.
        test_fraction: share held out for test when no test files are given.
        scale: None; ``"minmax"`` maps each feature to [0, 1] with the training split's min and max (test
            values outside are clipped); ``"standard"`` to mean 0, std 1 with the training split's mean and
            std, for Gaussian visible units. Missing (NaN) entries are left out of the statistics.
        one_hot: K: the features are ratings 1..K (NaN = missing with ``missing=True``), each encoded as K
            one-hot columns for ``softmaxK`` visible units (Salakhutdinov, Mnih & Hinton 2007); no scaling.
        **kwargs: batch_size, val_fraction, binarize, seed, missing (see :class:`TensorDataModule`).
    """

    def __init__(self, features: str, labels: str | None = None, test_features: str | None = None,
                 test_labels: str | None = None, test_fraction: float = 0.2, scale: str | None = None,
                 one_hot: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if features is None:
            raise DataError("data=arrays needs data.features=FILE.npy")
        if scale not in SCALES:
            raise DataError(f"scale must be null, 'minmax' or 'standard', got {scale!r}")
        if test_labels is not None and test_features is None:
            raise DataError("data.test_labels given without data.test_features")
        if one_hot is not None and (int(one_hot) < 2 or scale is not None):
            raise DataError(f"one_hot must be a number of rating levels K >= 2 and comes without scale, "
                            f"got one_hot={one_hot}, scale={scale!r}")
        self.features, self.labels, self.test_features, self.test_labels = features, labels, test_features, test_labels
        self.test_fraction, self.scale = float(test_fraction), scale
        self.scale_min = self.scale_max = self.scale_mean = self.scale_std = None
        self._scaling: dict | None = None
        self.one_hot = None if one_hot is None else int(one_hot)

    def load(self) -> dict:
        # checked before any splitting: empty, 1-D, NaN or infinite features fail here with the reason
        x = load_array(self.features, "features")
        as_features(x, "features", self.missing)
        y = None if self.labels is None else load_array(self.labels, "labels")
        if y is not None and len(y) != len(x):
            raise DataError(f"features have {len(x)} rows but labels have {len(y)}; they must match one to one")
        if y is not None:  # checked before the stratified split, which fails obscurely on non-integer labels
            y = as_labels(y, len(x), "labels").numpy()
        if self.test_features is not None:
            x_test = load_array(self.test_features, "test features")
            y_test = None if self.test_labels is None else load_array(self.test_labels, "test labels")
            x_train, y_train = x, y
        elif self.test_fraction > 0:
            from sklearn.model_selection import train_test_split

            try:
                parts = train_test_split(x, *([] if y is None else [y]), test_size=self.test_fraction,
                                         stratify=y, random_state=int(self.seed))
            except ValueError as e:  # e.g. a class with a single sample cannot be stratified
                raise DataError(f"cannot cut a stratified test split ({e}); give data.test_features and "
                                "data.test_labels, or more samples per class") from None
            x_train, x_test = parts[0], parts[1]
            y_train, y_test = (parts[2], parts[3]) if y is not None else (None, None)
        else:
            x_train, y_train, x_test, y_test = x, y, None, None
        if self.scale is not None:
            x_train, x_test = self._scaled(x_train, x_test)
        if self.one_hot is not None:
            x_train, x_test = self._encoded(x_train), None if x_test is None else self._encoded(x_test)
        return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}

    def _scaled(self, x_train: np.ndarray, x_test: np.ndarray | None):
        """(x - offset) / scale with per-feature statistics of ``x_train``; NaN (missing) entries stay NaN."""
        # checked first: the reshape below would accept 1-D data and the clip would hide infinite test values
        as_features(x_train, "training data", self.missing)
        if x_test is not None:
            as_features(x_test, "test data", self.missing)
        x_train = np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1)
        with np.errstate(all="ignore"):  # a feature missing in every row has no statistics: it stays unscaled
            if self.scale == "minmax":
                lo, hi = np.nanmin(x_train, 0), np.nanmax(x_train, 0)
                lo, hi = np.nan_to_num(lo), np.nan_to_num(hi)
                self.scale_min, self.scale_max = lo, hi
                offset, scale = lo, np.where(hi > lo, hi - lo, 1.0)
            else:
                mean, std = np.nanmean(x_train, 0), np.nanstd(x_train, 0)
                mean, std = np.nan_to_num(mean), np.nan_to_num(std)
                self.scale_mean, self.scale_std = mean, std
                offset, scale = mean, np.where(std > 0, std, 1.0)
        self._scaling = {"kind": self.scale, "offset": offset.tolist(), "scale": scale.tolist()}

        def apply(a):
            a = (np.asarray(a, dtype=np.float64).reshape(len(a), -1) - offset) / scale
            return np.clip(a, 0.0, 1.0) if self.scale == "minmax" else a

        return apply(x_train), None if x_test is None else apply(x_test)

    def _encoded(self, ratings) -> torch.Tensor:
        try:
            hot = Softmax(self.one_hot).encode(torch.as_tensor(np.asarray(ratings, dtype=np.float64)))
        except ValueError as e:
            raise DataError(str(e)) from None
        self._scaling = {"kind": "one_hot", "levels": self.one_hot}
        return hot

    @property
    def scaling(self) -> dict | None:
        """``{"kind", "offset", "scale"}``: features are mapped to (x - offset) / scale (then clipped to [0, 1]
        for ``minmax``); ``{"kind": "one_hot", "levels": K}``; None without either or before ``setup``."""
        return self._scaling
