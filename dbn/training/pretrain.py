"""Greedy layer-wise pretraining: each RBM trained by its own ``Trainer.fit`` on the layer below's hidden probabilities.

References:
    Hinton, Osindero & Teh (2006), "A fast learning algorithm for deep belief nets".
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from dbn.data.base import observed_mean
from dbn.data.pretrain import PretrainDataModule
from dbn.dbn import DBN
from dbn.rbm import RBM
from dbn.training import resume
from dbn.training.distributed import identical_across_ranks, naming_stage
from dbn.training.rbm_module import RBMModule, check_schedule

#: keys a layer schedule may set: RBMModule's arguments (the batch size and updates per loader batch among them)
SCHEDULE_KEYS = tuple(p for p in inspect.signature(RBMModule).parameters if p not in ("rbm", "log_prefix", "layer_index"))


def layer_schedules(shared: Mapping, per_layer: Mapping | None, n_layers: int) -> list[dict]:
    """One schedule per layer: the shared keys, overridden by ``per_layer[i]`` for layer i.

    Raises:
        ValueError: an unknown key or a layer index out of range, naming the fix.
    """
    unknown = sorted(set(shared) - set(SCHEDULE_KEYS))
    if unknown:
        raise ValueError(f"pretrain: unknown keys {unknown}; a layer schedule takes {sorted(SCHEDULE_KEYS)}")
    per_layer = dict(per_layer or {})
    schedules = [dict(shared) for _ in range(n_layers)]
    seen: dict[int, object] = {}
    for key, override in per_layer.items():
        try:
            i = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"pretrain.layers keys are layer indices 0..{n_layers - 1}, got {key!r}") from None
        if i in seen:  # a YAML integer key 0 and the command line's string key "0" are two keys to OmegaConf
            raise ValueError(f"pretrain.layers: layer {i} is given twice, as {seen[i]!r} and {key!r}; quote the "
                             f"index in YAML ('{i}': {{...}}), so that pretrain.layers.{i}.<key>=... overrides it")
        seen[i] = key
        if not 0 <= i < n_layers:
            raise ValueError(f"pretrain.layers.{key}: the model has {n_layers} layers (indices 0..{n_layers - 1})")
        bad = sorted(set(override or {}) - set(SCHEDULE_KEYS))
        if bad:
            raise ValueError(f"pretrain.layers.{key}: unknown keys {bad}; a layer schedule takes {sorted(SCHEDULE_KEYS)}")
        schedules[i].update(override or {})
    for i, s in enumerate(schedules):
        if int(s.get("batch_size", 1)) < 1:
            raise ValueError(f"layer {i}: batch_size must be >= 1, got {s['batch_size']}")
        try:
            check_schedule(**s)
        except ValueError as e:
            raise ValueError(f"layer {i}: {e}") from None
    return schedules


@torch.no_grad()
def hidden_probabilities(rbm: RBM, x: Tensor, batch_size: int = 4096) -> Tensor:
    """The layer's output for a whole data set (E[h | v], pooled for a pooling conv layer), on ``x``'s device and in
    its dtype, in batches: the next layer's data. (A layer fitted under ``trainer.precision=64-true`` is float64.)"""
    rbm = rbm.to(x.device)
    dtype = rbm.weight.dtype
    return torch.cat([rbm.output(chunk.to(dtype)).to(x.dtype) for chunk in x.split(batch_size)])


def pretrain_layers(
    dbn: DBN,
    train_x: Tensor,
    val_x: Tensor | None,
    schedules: list[dict],
    make_trainer: Callable[[int, dict], L.Trainer],
    monitor_size: int = 2000,
    init_visible_bias: bool = True,
    start_layer: int = 0,
    checkpoints: list[Path | None] | None = None,
    train_mask: Tensor | None = None,
    val_mask: Tensor | None = None,
) -> Iterator[dict]:
    """Train ``dbn.layers`` bottom-up, yielding each layer's final metrics and wall time as soon as it is trained.

    Each layer's data is computed once, as the previous layer's hidden probabilities on
    the trainer's device, and kept there for the next fit. Between two yields the caller
    can save what is finished (a generator: nothing runs until it is iterated).

    Args:
        dbn: the stack to pretrain (in place).
        train_x, val_x: data of the first layer; ``val_x`` may be None.
        schedules: one dict of RBMModule arguments per layer (``batch_size`` 64 where it has none).
        make_trainer: ``make_trainer(i, schedule) -> Trainer`` for layer i's fit.
        monitor_size: size of the training subset and held-out set whose free energies are compared.
        init_visible_bias: start each layer's visible biases at the data's mean (Hinton 2010, 8.1).
        start_layer: layers below it are already trained (a resumed run): they only compute the data.
        checkpoints: layer i's rolling checkpoint file (or None), written every epoch and on SIGTERM,
            and resumed from when it exists (see :mod:`dbn.training.resume`).
        train_mask, val_mask: observed entries (1) of the first layer's data when values are missing
            (the data zero-filled there); the first RBM trains on the observed entries only.

    Yields:
        ``{"layer", "n_visible", "n_hidden", "epochs", "seconds", <the layer's logged metrics>}`` per trained layer.
    """
    if len(schedules) != len(dbn.layers):
        raise ValueError(f"got {len(schedules)} schedules for {len(dbn.layers)} layers")
    if not 0 <= start_layer <= len(dbn.layers):
        raise ValueError(f"start_layer must be in 0..{len(dbn.layers)}, got {start_layer}")
    checkpoints = checkpoints or [None] * len(dbn.layers)
    for i, (rbm, schedule) in enumerate(zip(dbn.layers, schedules)):
        if i < start_layer:  # trained before: only its output is needed
            train_x = hidden_probabilities(rbm, train_x)
            val_x = None if val_x is None else hidden_probabilities(rbm, val_x)
            continue
        first = i == 0  # missing values belong to the data layer only
        schedule = {"batch_size": 64, **schedule}
        module = RBMModule(rbm, layer_index=i, **schedule)
        if init_visible_bias or module.hparams.centering:
            data_mean = observed_mean(train_x, train_mask if first else None)
            if init_visible_bias:
                rbm.init_visible_bias(data_mean)
            if module.hparams.centering:  # a resumed fit then restores its own offsets from the checkpoint
                module.start_centering(data_mean)
        data = PretrainDataModule(train_x, val_x, batch_size=module.loader_batch_size, monitor_size=monitor_size,
                                  train_mask=train_mask if first else None, val_mask=val_mask if first else None)
        trainer = make_trainer(i, schedule)
        result = fit_layer(module, data, trainer, checkpoints[i])
        if i < len(dbn.layers) - 1:  # the next layer's data (the top layer's output has no reader here)
            device = trainer.strategy.root_device
            train_x = hidden_probabilities(rbm, data.train_x.to(device))
            val_x = None if val_x is None else hidden_probabilities(rbm, val_x.to(device))
        yield result


def fit_layer(module: RBMModule, data: PretrainDataModule, trainer: L.Trainer, checkpoint: Path | None = None) -> dict:
    """One layer's fit (resumed from ``checkpoint`` when it exists); returns its final metrics and wall time."""
    fit_args = resume.attach(trainer, checkpoint) if checkpoint is not None else {}
    rbm, prefix = module.rbm, module.prefix
    start = time.perf_counter()
    with naming_stage(prefix):
        trainer.fit(module, datamodule=data, **fit_args)
    seconds = time.perf_counter() - start
    metrics = {
        name.removeprefix(prefix + "/"): float(value)
        for name, value in trainer.callback_metrics.items()
        if name.startswith(prefix + "/") and not name.endswith(("_step", "_epoch"))
    }
    result = {"layer": module.layer_index, "n_visible": rbm.n_visible, "n_hidden": rbm.n_hidden,
              "epochs": trainer.current_epoch, "seconds": round(seconds, 2), **metrics}
    if fit_args:
        result["resumed_from"] = Path(fit_args["ckpt_path"]).name
    if trainer.world_size > 1:
        with naming_stage(prefix):
            result["identical_across_ranks"] = identical_across_ranks(rbm, trainer)
    return result


def greedy_pretrain(dbn: DBN, train_x: Tensor, val_x: Tensor | None, schedules: list[dict],
                    make_trainer: Callable[[int, dict], L.Trainer], **kwargs) -> list[dict]:
    """Train ``dbn.layers`` bottom-up and return every layer's final metrics: :func:`pretrain_layers` run to the end.

    Example::

        schedules = layer_schedules({"epochs": 10, "lr": 0.05, "batch_size": 64}, None, len(dbn.layers))
        results = greedy_pretrain(dbn, x_train, x_val, schedules,
                                  lambda i, schedule: L.Trainer(max_epochs=schedule["epochs"], logger=False))

    References:
        Hinton, Osindero & Teh (2006), "A fast learning algorithm for deep belief nets".
    """
    return list(pretrain_layers(dbn, train_x, val_x, schedules, make_trainer, **kwargs))
