"""Device names as users type them (``cpu``, ``cuda``, ``cuda:1``, ``gpu``, ``mps``, ``auto``), checked against this
machine before any work: torch and Lightning otherwise fail later with messages that name neither the setting nor the
fix ("Found no NVIDIA driver on your system", "Attempting to deserialize object on a CUDA device")."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device, key: str = "device") -> torch.device:
    """``"auto"`` (CUDA when present, else the CPU), ``"gpu"`` (= ``"cuda"``) or any torch device this machine has.

    Raises:
        ValueError: naming ``key`` and the fix, for a string torch does not know or a device that is not here.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device("cuda" if device == "gpu" else device)
    except RuntimeError as e:
        raise ValueError(f"{key}={device!r} is not a device: use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto' "
                         f"({e})") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (resolved.index or 0) >= count:
            raise ValueError(f"{key}={device!r}, but this machine has {count} usable CUDA device(s); use "
                             f"{key}='cpu', or 'auto' to take a GPU where there is one")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{key}={device!r}, but MPS is not available here; use {key}='cpu' or 'auto'")
    return resolved
