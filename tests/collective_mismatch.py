"""Test-only callback: a collective that rank 0 alone starts, the bug that used to hang DDP runs for good."""

from __future__ import annotations

import lightning as L
import torch
import torch.distributed as dist


class RankZeroAllReduce(L.Callback):
    """After training epoch ``epoch`` of the fit, rank 0 (only) all-reduces a tensor that no other rank sends."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch and trainer.is_global_zero and dist.is_initialized():
            dist.all_reduce(torch.ones(7))
