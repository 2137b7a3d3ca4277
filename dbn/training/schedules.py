"""Learning-rate and momentum schedules as plain functions of the epoch."""

from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "linear", "cosine", "exponential")


def lr_factor(schedule: str, epoch: int, epochs: int, final: float) -> float:
    """Multiplier of the base learning rate at ``epoch`` (0-based) of ``epochs``, ending at ``final``.

    constant: 1; linear: 1 -> final; cosine: 1 -> final along half a cosine;
    exponential: final ** (epoch / (epochs - 1)).
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {schedule!r}; choose one of {LR_SCHEDULES}")
    t = epoch / max(epochs - 1, 1)
    t = min(max(t, 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return 1.0 + (final - 1.0) * t
    if schedule == "cosine":
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t))
    return final**t


def momentum_at(epoch: int, initial: float, final: float, switch_epoch: int) -> float:
    """Momentum ``initial`` for the first ``switch_epoch`` epochs, ``final`` after (Hinton 2010, section 9)."""
    return initial if epoch < switch_epoch else final
