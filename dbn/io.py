"""Crash-safe writes: a file is either the old version or the complete new one, never half of each."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    The rename is atomic on POSIX file systems, so a process killed mid-write
    (SIGKILL, pre-emption, a full disk) leaves the previous file intact. The
    temporary file sits in the same directory because a rename across file
    systems is a copy, which is not atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
