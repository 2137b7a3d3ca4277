"""TensorBoard pictures of an RBM layer during greedy pretraining: filters, reconstructions, model samples, histograms.

Histograms of the weights and biases are what Hinton (2010) suggests watching
during learning; the weights of each hidden unit drawn as an image (a
"filter"), the reconstructions of held-out data and the model's fantasies
show at a glance what a layer has learnt when its inputs are pixels.

References:
    Hinton (2010), "A practical guide to training restricted Boltzmann machines", section 15.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor
from torchvision.utils import make_grid

from dbn.rbm import RBM

#: grey lines between the tiles, so black and white tiles stay apart
PAD_VALUE = 0.5


def square_side(n: int) -> int | None:
    """The side s of an s x s image with ``n`` pixels, or None when ``n`` is not a perfect square."""
    s = math.isqrt(n)
    return s if s * s == n else None


def image_grid(images: Tensor, side: int, nrow: int | None = None) -> Tensor:
    """Tile flat images as one picture.  (n, side*side) -> (3, H, W) with values in [0, 1].

    Args:
        images: one flattened image a row.
        side: the images' height and width.
        nrow: tiles a row; by default ``ceil(sqrt(n))``, the squarest grid.
    """
    n = len(images)
    nrow = nrow or math.ceil(math.sqrt(n))
    # clamp: only Bernoulli means are sure to lie in [0, 1], and add_image needs that range
    tiles = images.detach().float().clamp(0, 1).reshape(n, 1, side, side)
    return make_grid(tiles, nrow=nrow, padding=1, pad_value=PAD_VALUE)


def filter_grid(weight: Tensor, side: int, n_filters: int = 64) -> Tensor:
    """The first ``n_filters`` hidden units' weights as images, each min-max scaled to [0, 1].

    w' = (w - min w) / (max w - min w), per filter.  weight: (n_hidden, side*side) -> (3, H, W)
    """
    w = weight.detach()[:n_filters].float()
    lo, hi = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    return image_grid((w - lo) / (hi - lo).clamp_min(1e-12), side)


def reconstruction_grid(v: Tensor, recon: Tensor, side: int) -> Tensor:
    """Inputs in the top rows, their reconstructions in as many rows below.  (n, side*side) x 2 -> (3, H, W)

    Each half is padded with blank tiles to whole rows, so a reconstruction sits
    under its input's position in the same column.
    """
    n = len(v)
    nrow = math.ceil(math.sqrt(2 * n))  # about square overall
    blank = v.new_full((-n % nrow, v.shape[1]), PAD_VALUE)
    return image_grid(torch.cat([v, blank, recon.to(v), blank]), side, nrow)


@torch.no_grad()
def layer_pictures(rbm: RBM, monitor: Tensor | None, n_filters: int = 64, n_images: int = 32, gibbs_steps: int = 1000,
                   generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Filters, reconstructions of ``monitor[:n_images]`` and model samples as (3, H, W) grids, keyed by name.

    Empty when the visible units do not form a square image; no reconstructions without ``monitor``.
    A convolutional layer on one-channel images shows its k x k filters and, as ``hidden_maps``, the hidden
    maps p(h | v) of the first four monitor images (a row of maps per image).
    """
    if rbm.convolutional:
        channels, side, width = rbm.in_shape
        if channels != 1 or side != width:
            return {}
        filters = filter_grid(rbm.weight[:, 0].flatten(1), rbm.kernel, n_filters)
    else:
        side = square_side(rbm.n_visible)
        if side is None:
            return {}
        filters = filter_grid(rbm.weight, side, n_filters)
    pictures = {"filters": filters}
    if monitor is not None:
        v = monitor[:n_images].to(rbm.weight)
        pictures["reconstructions"] = reconstruction_grid(v, rbm.reconstruct(v), side)
        if rbm.convolutional and rbm.hidden_shape[1] == rbm.hidden_shape[2]:
            pictures["hidden_maps"] = hidden_map_grid(rbm, v[:4])
    pictures["samples"] = image_grid(rbm.sample(n_images, gibbs_steps, generator=generator), side)
    return pictures


def hidden_map_grid(rbm, v: Tensor, n_maps: int = 16) -> Tensor:
    """The first ``n_maps`` hidden maps E[h | v] of a conv layer, a row per input (ReLU maps scaled by their largest
    value).  v: (n, C·H·W) -> (3, H', W')"""
    maps, h, w = rbm.hidden_shape
    shown = min(maps, n_maps)
    hidden = rbm.hidden_maps(rbm.hidden_mean(v)).reshape(-1, maps, h * w)[:, :shown]
    if rbm.hidden_units == "relu":  # softplus means: the largest shown is white
        hidden = hidden / hidden.max().clamp_min(1e-12)
    return image_grid(hidden.reshape(-1, h * w), h, nrow=shown)


class RBMTensorBoard(L.Callback):
    """Write the trained layer's weight and bias histograms and, for square images, pictures to TensorBoard.

    Every ``every_n_epochs`` epochs and at the end of training, under the
    module's ``prefix`` (e.g. ``pretrain/layer0``): histograms ``weight``,
    ``visible_bias``, ``hidden_bias`` (and ``log_variance`` when learned); when the layer's visible units form
    an s x s image, also ``filters`` (the first weights as images),
    ``reconstructions`` (monitor images over their mean-field reconstructions)
    and ``samples`` (model fantasies). Does nothing without a TensorBoardLogger,
    and only on global rank zero.

    Args:
        every_n_epochs: write after every n-th epoch (and always at the end).
        n_filters: hidden units whose weights are shown.
        n_images: reconstructions and samples shown.
        gibbs_steps: Gibbs sweeps from noise for the samples.
        seed: seed of the samples' generator; the same noise every time, so pictures differ only by the model.
        image_layers: layer indices that get pictures (their inputs are pixels); None: every square layer.
    """

    def __init__(self, every_n_epochs: int = 1, n_filters: int = 64, n_images: int = 32, gibbs_steps: int = 1000,
                 seed: int = 0, image_layers: list[int] | None = (0,)) -> None:
        for name, value in (("every_n_epochs", every_n_epochs), ("n_filters", n_filters), ("n_images", n_images),
                            ("gibbs_steps", gibbs_steps)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.every_n_epochs, self.n_filters, self.n_images = int(every_n_epochs), int(n_filters), int(n_images)
        self.gibbs_steps, self.seed = int(gibbs_steps), int(seed)
        # pictures only where the layer's inputs are pixels (by default the first layer); None: every square layer
        self.image_layers = None if image_layers is None else {int(i) for i in image_layers}
        self._last_step: int | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._write(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # on_train_end, not on_fit_end: the latter runs after the logger is closed
        self._write(trainer, pl_module)

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.global_step == self._last_step:
            return
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        self._last_step = step = trainer.global_step
        rbm, prefix = pl_module.rbm, pl_module.prefix
        if not bool(rbm.is_finite()):
            return  # diverged: RBMModule's own epoch-end check stops the layer with the reason
        for name in ("weight", "visible_bias", "hidden_bias", "log_variance"):
            param = getattr(rbm, name)
            if param is not None:  # log_variance: only Gaussian visible units with learned variances
                writer.add_histogram(f"{prefix}/{name}", param.detach().float().cpu(), global_step=step)
        if self.image_layers is not None and pl_module.layer_index not in self.image_layers:
            return
        generator = torch.Generator(device=rbm.weight.device).manual_seed(self.seed)
        pictures = layer_pictures(rbm, monitor_images(trainer), self.n_filters, self.n_images, self.gibbs_steps,
                                  generator)
        for name, grid in pictures.items():
            writer.add_image(f"{prefix}/{name}", grid.cpu(), global_step=step)


def tensorboard_writer(trainer: L.Trainer):
    """The SummaryWriter of the trainer's TensorBoardLogger, or None when it has none."""
    logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
    return None if logger is None else logger.experiment


def monitor_images(trainer: L.Trainer) -> Tensor | None:
    """The layer's held-out monitor set (the training subset without one), or None for another DataModule."""
    dm = trainer.datamodule
    held_out = getattr(dm, "monitor_val", None)
    return held_out if held_out is not None else getattr(dm, "monitor_train", None)
