"""The user's own arrays: features (and optional labels) from .npy / .npz / .pt files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dbn.data.base import DataError, TensorDataModule, as_features, as_labels


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


class ArraysDataModule(TensorDataModule):
    """Features from files; a stratified, seeded test split is cut unless test files are given.

    Args:
        features: (n, d) feature file.
        labels: optional (n,) integer class labels.
        test_features: optional test features (then no test split is cut).
        test_labels: optional test labels.
        test_fraction: share held out for test when no test files are given.
        scale: None, or ``"minmax"`` to map each feature to [0, 1] with the training split's min and max.
        **kwargs: batch_size, val_fraction, binarize, seed (see :class:`TensorDataModule`).
    """

    def __init__(self, features: str, labels: str | None = None, test_features: str | None = None,
                 test_labels: str | None = None, test_fraction: float = 0.2, scale: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if features is None:
            raise DataError("data=arrays needs data.features=FILE.npy")
        if scale not in (None, "minmax"):
            raise DataError(f"scale must be null or 'minmax', got {scale!r}")
        if test_labels is not None and test_features is None:
            raise DataError("data.test_labels given without data.test_features")
        self.features, self.labels, self.test_features, self.test_labels = features, labels, test_features, test_labels
        self.test_fraction, self.scale = float(test_fraction), scale
        self.scale_min = self.scale_max = None

    def load(self) -> dict:
        # checked before any splitting: empty, 1-D, NaN or infinite features fail here with the reason
        x = load_array(self.features, "features")
        as_features(x, "features")
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
        if self.scale == "minmax":
            x_train, x_test = self._minmax(x_train, x_test)
        return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}

    def _minmax(self, x_train: np.ndarray, x_test: np.ndarray | None):
        # checked first: the reshape below would accept 1-D data and the clip would hide infinite test values
        as_features(x_train, "training data")
        if x_test is not None:
            as_features(x_test, "test data")
        x_train = np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1)
        lo, hi = x_train.min(0), x_train.max(0)
        span = np.where(hi > lo, hi - lo, 1.0)
        self.scale_min, self.scale_max = lo, hi
        scale = lambda a: np.clip((np.asarray(a, dtype=np.float64).reshape(len(a), -1) - lo) / span, 0.0, 1.0)  # noqa: E731
        return scale(x_train), None if x_test is None else scale(x_test)
