"""MNIST and Fashion-MNIST from idx files (LeCun's format), gzipped or not.

Files are looked for in ``root`` and in torchvision's layout ``root/<Name>/raw``;
where they are missing and ``download=True``, torchvision fetches them (online only).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from dbn.data.base import TensorDataModule
from dbn.errors import DataError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

DATASETS = {
    "mnist": {"torchvision": "MNIST", "root": "data"},
    "fashion_mnist": {"torchvision": "FashionMNIST", "root": "/usr/share/datasets/fashion-mnist"},
}
_SPLITS = {"train": "train", "test": "t10k"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (optionally .gz): magic 0x0000TTNN, NN big-endian int32 dims, then the data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:  # not gzip, cut-off stream, or damaged data
        raise DataError(f"{path} is a corrupt or truncated gzip file ({e}); fetch it again") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an idx file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated: a header of {ndim} dims needs {4 + 4 * ndim} bytes, found {len(raw)}")
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4).tolist()  # Python ints: messages read (3, 28, 28)
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = raw[4 + 4 * ndim :]
    if len(body) != expected:
        raise DataError(f"{path} is truncated or corrupt: header says {tuple(dims)} ({expected} bytes), found {len(body)}")
    return np.frombuffer(body, dtype=dtype).reshape(tuple(dims)).copy()  # writable, as torch expects


def scale_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 pixels as float32 in [0, 1]: the float32 quotient p / 255, the value ``images.astype(np.float32) / 255``
    gives, in one multi-threaded pass (numpy's two single-threaded passes took 0.9 s of a Fashion-MNIST run's start)."""
    if images.dtype != np.uint8:  # another idx type (big-endian ones torch cannot take): numpy's way
        return torch.from_numpy(images.astype(np.float32) / 255.0)
    return torch.from_numpy(images).to(torch.float32).div_(255.0)


def find_idx(root: Path, stem: str, subdir: str) -> Path | None:
    for folder in (root, root / subdir / "raw", root / subdir):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


class IdxDataModule(TensorDataModule):
    """MNIST-format images (28x28, uint8) scaled to [0, 1], with the official train/test split.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        root: folder with the idx files; defaults to ``data`` (MNIST) or
            ``/usr/share/datasets/fashion-mnist`` (Debian's dataset-fashion-mnist).
        download: fetch missing files with torchvision (needs internet).
        limit: use only the first ``limit`` training images (quick runs).
        **kwargs: batch_size, val_fraction, binarize, seed (see :class:`TensorDataModule`).
    """

    def __init__(self, name: str = "fashion_mnist", root: str | None = None, download: bool = False, limit: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if name not in DATASETS:
            raise DataError(f"unknown idx data set {name!r}; choose one of {sorted(DATASETS)}")
        self.name, self.download, self.limit = name, bool(download), limit
        self.root = Path(root if root is not None else DATASETS[name]["root"]).expanduser()

    def _paths(self) -> dict[str, Path | None]:
        sub = DATASETS[self.name]["torchvision"]
        return {
            f"{kind}_{split}": find_idx(self.root, f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte", sub)
            for split, prefix in _SPLITS.items()
            for kind in ("images", "labels")
        }

    def prepare_data(self) -> None:
        if all(self._paths().values()) or not self.download:
            return
        import torchvision.datasets as tvd

        cls = getattr(tvd, DATASETS[self.name]["torchvision"])
        for train in (True, False):
            try:
                cls(str(self.root), train=train, download=True)
            except (RuntimeError, OSError) as e:  # torchvision's "Error downloading ...", or a URLError
                reason = " ".join(str(e).split())
                raise DataError(
                    f"{self.name}: data.download=true could not fetch the idx files into {self.root} ({reason}); "
                    f"check the internet connection, or copy the four idx files into a folder and set "
                    f"data.root=FOLDER data.download=false"
                ) from e

    def load(self) -> dict:
        self.prepare_data()
        paths = self._paths()
        missing = [k for k, p in paths.items() if p is None]
        if missing:
            sub = DATASETS[self.name]["torchvision"]
            raise DataError(
                f"{self.name}: idx files {missing} not found in {self.root} or {self.root / sub / 'raw'}; "
                f"set data.root=FOLDER to where they are, or data.download=true to fetch them with torchvision"
                + (" (or: apt-get install dataset-fashion-mnist)" if self.name == "fashion_mnist" else "")
            )
        arrays = {k: read_idx(p) for k, p in paths.items()}
        x_train, y_train = arrays["images_train"], arrays["labels_train"]
        if self.limit is not None:
            x_train, y_train = x_train[: int(self.limit)], y_train[: int(self.limit)]
        return {
            "x_train": scale_pixels(x_train),
            "y_train": y_train,
            "x_test": scale_pixels(arrays["images_test"]),
            "y_test": arrays["labels_test"],
        }
