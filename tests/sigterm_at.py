"""A callback for the resume tests: the process sends itself SIGTERM at a chosen batch.

An external ``kill -TERM`` lands wherever the clock puts it, sometimes on an epoch's last batch
(then the checkpoint is an epoch-end one); this puts it inside an epoch every time. The signal
is real: dbn's handler (``dbn.training.resume.GracefulStop``) receives it and stops the fit at the next batch boundary.
"""

from __future__ import annotations

import os
import signal

import lightning as L


class SigtermAt(L.Callback):
    """Send this process SIGTERM after batch ``batch`` of epoch ``epoch`` of pretraining layer ``layer``.

    Only in a fit that starts afresh: the resumed run (``dbn-train resume=DIR``, the same saved
    config, so the same callback) passes the same batch without being stopped again.
    """

    def __init__(self, layer: int, epoch: int, batch: int) -> None:
        self.layer, self.epoch, self.batch = layer, epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.ckpt_path is None and (getattr(pl_module, "layer_index", None), trainer.current_epoch, batch_idx) == (self.layer, self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGTERM)


class KillAt(L.Callback):
    """SIGKILL this process as fine-tuning epoch ``epoch`` starts (after the previous epoch's checkpoint was written).

    Only in a fit that starts afresh, as :class:`SigtermAt`; a kill between two epochs, placed exactly.
    """

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.ckpt_path is None and trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
