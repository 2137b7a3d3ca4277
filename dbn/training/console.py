"""What a person reads while ``dbn-train`` runs: one progress display per stage, then a summary table.

On a terminal each stage (a layer's pretraining, fine-tuning) gets one live bar
that stays on screen when the stage ends, with the epoch and the stage's key
monitors. When stdout is not a terminal (a log file, SLURM, CI) there are no redraws:
one plain line per epoch. Lightning's own banners (device availability, tips) are
left out; the run's header says which devices it uses.
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
from typing import TextIO

import lightning as L
from lightning.pytorch.callbacks import ProgressBar
from tqdm import tqdm

#: Lightning's info messages (device banner, tips, "`Trainer.fit` stopped") go through these loggers
LIGHTNING_INFO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


#: the live bar: the stage and its monitors first, so a narrow terminal cuts the timing, not the numbers
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar:16}| [{elapsed}<{remaining}]"


def quiet_lightning() -> None:
    """Drop Lightning's per-fit info banners (a run is several fits); its warnings still show."""
    for name in LIGHTNING_INFO_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def format_value(value: float) -> str:
    """Four significant digits, or the plain word for NaN and infinities."""
    return f"{value:.4g}" if math.isfinite(value) else str(value)


class StageProgress(ProgressBar):
    """One progress display for one stage: a live bar on a terminal, else one plain line per epoch.

    Every rank reads the metrics at the same hooks (the start of the next epoch and the end of
    training, when the epoch's values are final); only global rank zero prints. Reading the
    metrics on every rank keeps any lazy cross-rank sync of a logged value at the same point
    on every rank, whoever logged it.

    Args:
        label: the stage's name on screen, e.g. ``pretrain/layer0 [1/2] 64->256``.
        monitors: short name on screen -> logged metric name; missing metrics are left out.
        stream: where to write (default: ``sys.stdout`` at the time of writing).
        live: a redrawn bar (True) or plain lines (False); None: a bar only when ``stream`` is a terminal.
    """

    def __init__(self, label: str, monitors: dict[str, str], stream: TextIO | None = None, live: bool | None = None) -> None:
        super().__init__()
        self.label, self.monitors = label, dict(monitors)
        self._stream, self._live = stream, live
        self._enabled = True
        self._bar: tqdm | None = None
        self._pending: int | None = None  # the epoch that ended and awaits its line
        self._epoch_start = 0.0

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    @property
    def live(self) -> bool:
        return is_terminal(self.stream) if self._live is None else bool(self._live)

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        if self._enabled and self.live:
            per_epoch = trainer.num_training_batches
            total = None if math.isinf(per_epoch) else int(per_epoch) * int(trainer.max_epochs)
            done = None if total is None else int(per_epoch) * trainer.current_epoch
            # the terminal's size when it says (a bare pseudo-terminal reports 0 x 0, and tqdm hides its bars then)
            size = shutil.get_terminal_size((100, 24))
            self._bar = tqdm(total=total, initial=done or 0, file=self.stream, ncols=size.columns or 100,
                             nrows=size.lines or 24, leave=True, bar_format=BAR_FORMAT,
                             desc=f"{self.label} {self._epoch_text(trainer, trainer.current_epoch, {})}")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._bar is not None:
            self._bar.update(1)  # tqdm itself limits redraws to ten a second

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer)
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the module logs its epoch means after the callbacks' epoch-end hooks: the line waits for them
        self._pending = trainer.current_epoch

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer)
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _report(self, trainer: L.Trainer) -> None:
        if self._pending is None:
            return
        epoch, self._pending = self._pending, None
        values = self._values(trainer)  # on every rank: see the class docstring
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.set_description_str(f"{self.label} {self._epoch_text(trainer, epoch + 1, values)}", refresh=True)
            return
        seconds = time.perf_counter() - self._epoch_start
        print(f"{self.label} {self._epoch_text(trainer, epoch + 1, values)} ({seconds:.1f}s)", file=self.stream, flush=True)

    def _values(self, trainer: L.Trainer) -> dict[str, float]:
        metrics = trainer.callback_metrics
        return {short: float(metrics[name]) for short, name in self.monitors.items() if name in metrics}

    @staticmethod
    def _epoch_text(trainer: L.Trainer, epochs_done: int, values: dict[str, float]) -> str:
        width = len(str(trainer.max_epochs))
        parts = [f"epoch {epochs_done:>{width}}/{trainer.max_epochs}"]
        parts += [f"{name} {format_value(v)}" for name, v in values.items()]
        return "  ".join(parts)


def summary_table(results: dict, run_dir: str) -> str:
    """The finished run in a few aligned lines: one row per pretrained layer, then fine-tuning and the run directory."""
    lines = []
    layers = results.get("pretrain") or []
    if layers:
        rows = [("layer", "size", "epochs", "recon error", "free-energy gap", "seconds")]
        for layer in layers:
            recon = layer.get("val/recon_error", layer.get("train/recon_error", float("nan")))
            rows.append((str(layer["layer"]), f"{layer['n_visible']}->{layer['n_hidden']}", str(layer["epochs"]),
                         format_value(recon), format_value(layer.get("free_energy_gap", float("nan"))),
                         f"{layer['seconds']:.1f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    elif results.get("pretrained_from"):
        lines.append(f"pretrained layers loaded from {results['pretrained_from']}")
    ft = results.get("finetune")
    if ft:
        parts = [f"fine-tuning: {ft['epochs']} epochs"]
        if "best_score" in ft:
            parts.append(f"best {ft['best_monitor']} {format_value(ft['best_score'])}")
        parts.append(f"{ft['seconds']:.1f}s")
        lines.append(", ".join(parts))
        if "test_acc" in ft:
            lines.append(f"fine-tuned test accuracy: {ft['test_acc']:.4f} (test loss {ft['test_loss']:.4f})")
    lines.append(f"run directory: {run_dir}  (wall time {results.get('wall_time_s', 0):.1f}s)")
    return "\n".join(lines)
