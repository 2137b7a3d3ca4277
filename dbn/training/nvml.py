"""Skip torch's NVML device probe where NVML cannot load, so that an optimizer step does not pay for it every time.

Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` when imported, so that ``torch.cuda.is_available()`` asks NVML
instead of initialising CUDA (which would make forked DataLoader workers unusable). torch's Adam and AdamW call
``torch.accelerator.current_accelerator(check_available=True)`` in every ``step`` (a CUDA-graph capture check),
and a CUDA build of torch on a machine without the NVIDIA driver then tries to ``dlopen("libnvidia-ml.so.1")`` at
every step: the count is only cached once CUDA is initialised, which never happens there. That costs about 40 µs a
step on the 2-core CI machine, 4% of a fine-tuning step of a 64-128-128-10 net at batch 64.

Where NVML cannot be loaded, torch falls back to ``cudaGetDeviceCount`` anyway (``torch.cuda.device_count``), so
asking it directly gives the same answer without the failed ``dlopen``; with no driver there is no CUDA state that
a fork could inherit. Where NVML loads (a machine with the NVIDIA driver), nothing changes.
"""

from __future__ import annotations

import functools
import os

import torch

FLAG = "PYTORCH_NVML_BASED_CUDA_CHECK"


@functools.cache
def skip_failing_nvml_probe() -> bool:
    """Unset Lightning's NVML-based CUDA check (once a process) when NVML cannot load; True when it did so."""
    if os.environ.get(FLAG) != "1" or not torch.cuda._is_compiled() or torch.version.hip:
        return False
    try:
        if torch.cuda._device_count_nvml() >= 0:  # NVML works (or CUDA_VISIBLE_DEVICES hides every device): keep it
            return False
    except AttributeError:  # a torch without this private helper: leave the setting alone
        return False
    os.environ[FLAG] = "0"
    return True
