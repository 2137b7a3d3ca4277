"""Several processes without deadlocks: explicit syncs, plain logged values, strategies with a collective timeout.

The rule that keeps DDP from hanging on logging: a value that needs data from every
rank is reduced **explicitly, in the module's own hooks**, which run at the same point on
every rank; what is then handed to ``self.log`` is a plain tensor that Lightning must
never sync again. Lightning's own lazy sync (``sync_dist=True``, or a torchmetrics object
passed to ``self.log``) runs whenever somebody first reads the metrics, and a progress
bar that lives on rank 0 only reads them on rank 0 only (Lightning issue #21264): the
collectives of the ranks then stop matching and the run hangs.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import lightning as L
import torch
from lightning.pytorch.strategies import StrategyRegistry
from torch import Tensor

from dbn.errors import CollectiveError

#: words of the errors that gloo and NCCL raise as plain RuntimeErrors when a collective fails
COLLECTIVE_FAILURE_WORDS = ("gloo", "nccl", "timed out", "connection closed", "connection reset", "processgroup")

#: Lightning's default pick for ``strategy="auto"`` on several CPU or CUDA devices in a script
AUTO_MULTI_DEVICE = "ddp"


def log_synced(module: L.LightningModule, name: str, value: Tensor | float, **kwargs) -> None:
    """``module.log`` for a value that is already the same on every rank (reduced by the caller, or a constant).

    ``sync_dist=True`` says the value is meant across ranks, so Lightning does not warn that
    it is rank-local; ``rank_zero_only=True`` turns Lightning's own sync of it into a no-op,
    so reading the metric (a progress bar, a callback, on any subset of ranks) never starts
    a collective. Every rank still calls this, so monitors (early stopping, checkpoints)
    see the same value on every rank and decide alike.
    """
    module.log(name, value, sync_dist=True, rank_zero_only=True, **kwargs)


def all_ranks_sum(trainer: L.Trainer | None, x: Tensor) -> Tensor:
    """Σ over ranks of ``x`` (itself in one process).  Every rank must call it at the same point."""
    if trainer is None or trainer.world_size == 1:
        return x
    return trainer.strategy.reduce(x.clone(), reduce_op="sum")


def identical_across_ranks(module: torch.nn.Module, trainer: L.Trainer) -> bool:
    """Whether every rank holds bitwise the same parameters: max over ranks == min over ranks, entry by entry."""
    flat = torch.cat([p.detach().reshape(-1).float() for p in module.parameters()]).to(trainer.strategy.root_device)
    if trainer.world_size == 1:
        return True
    high = trainer.strategy.reduce(flat.clone(), reduce_op="max")
    low = trainer.strategy.reduce(flat.clone(), reduce_op="min")
    return bool(torch.equal(high, low))


def resolve_strategy(strategy, timeout_s: float, devices=1, num_nodes: int = 1):
    """A strategy name or object as given in ``trainer.strategy``, with the collective timeout applied.

    Names of process-group strategies (``ddp``, ``ddp_spawn``, ``fsdp``, ...) become their
    Lightning strategy object built with ``timeout=timeout_s``: a collective that one rank
    never joins then fails the run after ``timeout_s`` seconds instead of hanging it.
    ``auto`` on several devices or nodes is Lightning's own choice in a script, ``ddp``.
    Other names (``auto`` on one device, ``single_device``, ...) and objects pass through.

    Raises:
        ValueError: ``timeout_s`` is not a positive number of seconds.
    """
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(f"trainer.collective_timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if not isinstance(strategy, str):
        return strategy
    name = strategy
    if name == "auto" and _several(devices, num_nodes):
        name = AUTO_MULTI_DEVICE
    if name not in StrategyRegistry:
        return strategy
    entry = StrategyRegistry[name]
    cls, params = entry["strategy"], dict(entry["init_params"])
    if "timeout" not in inspect.signature(cls).parameters:
        return strategy
    return cls(**params, timeout=timedelta(seconds=float(timeout_s)))


def _several(devices, num_nodes) -> bool:
    """Whether an explicit device count asks for more than one process (``auto``, ``-1`` or lists: Lightning decides)."""
    n = devices if isinstance(devices, int) and not isinstance(devices, bool) else None
    if isinstance(devices, str) and devices.isdigit():
        n = int(devices)
    return (n is not None and n > 1) or int(num_nodes or 1) > 1


def is_collective_failure(error: BaseException) -> bool:
    """Whether ``error`` is a collective that timed out or lost its peers (gloo and NCCL raise RuntimeError)."""
    dist_error = getattr(torch.distributed, "DistError", None)
    if dist_error is not None and isinstance(error, dist_error):
        return True
    return type(error) is RuntimeError and any(word in str(error).lower() for word in COLLECTIVE_FAILURE_WORDS)


@contextmanager
def naming_stage(stage: str) -> Iterator[None]:
    """Turn a failed collective inside ``stage`` into a :class:`~dbn.errors.CollectiveError` that names the stage."""
    try:
        yield
    except RuntimeError as e:
        if not is_collective_failure(e):
            raise
        raise CollectiveError(
            f"{stage}: a collective operation across processes failed ({str(e).strip().splitlines()[0]}). A rank "
            "stopped answering or started a collective the others did not; trainer.collective_timeout_s bounds "
            "the wait. The last finished epoch is in the run directory's resume/ folder"
        ) from e
