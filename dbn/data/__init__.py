"""Lightning DataModules holding whole data sets as tensors."""

from dbn.data.arrays import ArraysDataModule
from dbn.data.base import TensorDataModule, batch_loader
from dbn.data.digits import DigitsDataModule
from dbn.data.idx import IdxDataModule, read_idx, scale_pixels
from dbn.data.pretrain import PretrainDataModule
from dbn.errors import DataError  # re-exported: `from dbn.data import DataError`

__all__ = [
    "ArraysDataModule",
    "DataError",
    "DigitsDataModule",
    "IdxDataModule",
    "PretrainDataModule",
    "TensorDataModule",
    "batch_loader",
    "read_idx",
    "scale_pixels",
]
