"""Checkpoints that survive a kill: atomic writes, one rolling checkpoint per stage, SIGTERM handling.

A ``dbn-train`` run is a chain of fits (one per RBM layer, then fine-tuning).
Each fit gets a :class:`EpochCheckpoint`, which overwrites ``<stage>-last.ckpt``
after every epoch and, when the run is stopped by SIGTERM (what SLURM sends before
it kills a job), once more before the process exits. The global torch random
state goes into the checkpoint too: the data order of the next epoch is drawn
from it, so a run resumed from an epoch boundary continues exactly as the
uninterrupted run would have (on CPU, in one process).

SIGTERM is handled by :class:`GracefulStop`, not by Lightning's own handler, which
starts a collective inside the signal handler (a broadcast from rank 0), wherever each
rank happens to be: under DDP that collective can pair with an unrelated one and hang
the run. Here the handler only sets a flag; every rank looks at the flags of all ranks
at the start of each training batch (one small all-reduce, the same point on every
rank), and all ranks stop together at that batch boundary.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from dbn.io import atomic_save
from dbn.rundir import RunDir

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but with a temporary file in the target directory and a rename.

    Lightning's own writer stages the file in the system temporary directory and
    moves it, which is a non-atomic copy when that is another file system.
    Loading is unchanged (and ``weights_only`` is passed through).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}")
        atomic_save(checkpoint, path)


class EpochCheckpoint(L.Callback):
    """Keep ``path`` holding the state after the last finished epoch; save on SIGTERM too.

    Args:
        path: the checkpoint file, overwritten each epoch (atomically, with :class:`AtomicCheckpointIO`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.sigterm_saved = False

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # runs before the module's own epoch-end hook, where the divergence guard sits: never
        # replace the last good checkpoint with NaN weights
        if all(bool(torch.isfinite(p).all()) for p in pl_module.parameters()):
            trainer.save_checkpoint(self.path, weights_only=False)
        else:
            log.error("epoch %d ended with NaN or infinite weights: %s keeps the previous epoch", trainer.current_epoch, self.path)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            # Lightning stops at a batch boundary; the partial epoch is saved as well, and a
            # resumed fit restarts that epoch's data pass from these weights
            trainer.save_checkpoint(self.path, weights_only=False)  # every rank: the save ends with a barrier
            self.sigterm_saved = True
            if trainer.is_global_zero:  # the one rank that writes
                log.warning("SIGTERM: checkpoint saved to %s", self.path)

    def state_dict(self) -> dict[str, Any]:
        return {"torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "torch_rng" in state_dict:
            torch.set_rng_state(state_dict["torch_rng"])


def attach(trainer: L.Trainer, path: str | Path) -> dict[str, Any]:
    """Give ``trainer`` an :class:`EpochCheckpoint` at ``path``, :class:`GracefulStop` and atomic checkpoint writes.

    Returns:
        The keyword arguments for ``trainer.fit`` that resume from ``path`` when it exists (loaded
        with ``weights_only=True``, so a tampered checkpoint cannot run code), else ``{}``.
    """
    trainer.callbacks.extend([EpochCheckpoint(path), GracefulStop()])
    trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    path = Path(path)
    if path.exists():
        log.info("resuming from %s", path)
        return {"ckpt_path": str(path), "weights_only": True}
    return {}


class Progress:
    """What a run has finished, in one atomically written file (``resume/progress.pt`` in the run directory).

    Holds the pretrained layers' weights, their results, and the global torch random
    state at the moment they finished, so a run resumed between two stages draws
    the same random numbers the uninterrupted run drew.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = RunDir(run_dir).progress

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        return torch.load(self.path, map_location="cpu", weights_only=True)

    def save(self, **state: Any) -> None:
        atomic_save({**self.load(), **state, "torch_rng": torch.get_rng_state()}, self.path)


class _StopRequest:
    """The process's SIGTERM flag; the handler only records the signal (no I/O, no collective)."""

    def __init__(self) -> None:
        self.requested = False
        self.children: list = []  # this rank's launched processes (Lightning's launcher), for a second SIGTERM

    def handle(self, signum, frame) -> None:
        if self.requested:  # a second SIGTERM: the run did not stop (stuck in a collective?): end it now
            for proc in self.children:
                proc.kill()
            os._exit(128 + signal.SIGTERM)
        self.requested = True

    def install(self) -> None:
        """Make :meth:`handle` the SIGTERM handler (signals are only handled by the main thread)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.handle)

    @contextmanager
    def watching(self):
        """SIGTERM recorded for the duration of a run (a fresh flag), the previous handler restored afterwards."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.getsignal(signal.SIGTERM)
        self.requested, self.children = False, []
        self.install()
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)


STOP = _StopRequest()


class GracefulStop(L.Callback):
    """Stop every rank at the same batch boundary after a SIGTERM to any of them; exit through ``SIGTERMException``.

    Lightning registers its own SIGTERM handler when a fit starts; this callback takes
    SIGTERM back once that has happened (at the sanity check and at the start of training),
    and Lightning restores the process handler (:data:`STOP`) when the fit ends, so a
    signal between two fits is not lost: the next fit stops at its first batch. The
    interrupted epoch is saved by :class:`EpochCheckpoint` in ``on_exception``, on every
    rank at the same point (the save ends with a barrier).
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        STOP.install()

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        STOP.install()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        STOP.install()
        STOP.children = list(getattr(trainer.strategy.launcher, "procs", []) or [])

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        STOP.install()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if stop_requested(trainer):
            raise SIGTERMException()


def stop_requested(trainer: L.Trainer) -> bool:
    """Whether any rank got SIGTERM.  Every rank must call it at the same point (an all-reduce under DDP)."""
    if trainer.world_size == 1:
        return STOP.requested
    flag = torch.tensor([float(STOP.requested)], device=trainer.strategy.root_device)
    return bool(trainer.strategy.reduce(flag, reduce_op="max") > 0)
