"""What the scikit-learn estimators share: seeds, input checks, rows to tensors and back, quiet Lightning."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from dbn.units import check_probabilities

FLOATS = (np.float64, np.float32)
CHUNK = 4096  # rows per device batch when mapping a whole data set


# --- shared helpers ---------------------------------------------------------------------------------
def torch_seed(rng: np.random.RandomState) -> int:
    """One draw from scikit-learn's random state seeds the torch generators of a call."""
    return int(rng.randint(np.iinfo(np.int32).max))


def check_unit_interval(X, what: str = "X") -> None:
    """ValueError naming the range unless every value of X (dense or sparse, already finite) lies in [0, 1]."""
    values = X.data if sp.issparse(X) else X
    if values.size:
        check_probabilities(float(values.min()), float(values.max()), what,
                            "scale X first, e.g. with MinMaxScaler(clip=True) in a Pipeline")


def tensor(rows) -> Tensor:
    """Dense or sparse rows as a CPU tensor, sharing memory where it can (read-only arrays are copied)."""
    rows = np.ascontiguousarray(rows.toarray() if sp.issparse(rows) else rows)
    return torch.from_numpy(rows if rows.flags.writeable else rows.copy())


def row_chunks(X, dtype: torch.dtype, device: torch.device, chunk: int = CHUNK) -> Iterator[Tensor]:
    """Dense (rows, n_features) tensors of X on ``device``; sparse rows are densified one chunk at a time."""
    for start in range(0, X.shape[0], chunk):
        yield tensor(X[start:start + chunk]).to(device=device, dtype=dtype)


def dense(rows, like: Tensor) -> Tensor:
    """A (sparse or dense) block of rows as a dense tensor with ``like``'s dtype and device."""
    return tensor(rows).to(like)


def map_rows(X, fn: Callable[[Tensor], Tensor], dtype: torch.dtype, device: torch.device) -> np.ndarray:
    """``fn`` applied to X chunk by chunk, concatenated as one numpy array."""
    return torch.cat([fn(rows).cpu() for rows in row_chunks(X, dtype, device)]).numpy()


TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


@contextlib.contextmanager
def quiet_lightning(verbose: int) -> Iterator[None]:
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
