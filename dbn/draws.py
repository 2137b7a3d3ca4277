"""Random draws shaped like a tensor, that ``torch.compile`` can trace once its sizes turn dynamic.

``torch.rand(shape, generator=None, ...)`` goes to the ``generator`` overload of the op, which accepts only concrete
sizes: after a compiled function has seen a second batch size or layer width, dynamo marks the sizes dynamic and
tracing fails with "SymIntArrayRef expected to contain only concrete integers" (the class of pytorch/pytorch#107170,
fixed there for ``randn``; ``rand`` still fails in torch 2.14 on CPU). Without a generator these draw with
``rand_like`` / ``randn_like``, which take symbolic sizes and consume the default generator exactly as ``torch.rand``
/ ``torch.randn`` of the same shape and dtype do, so eager results are unchanged draw for draw.
"""

from __future__ import annotations

import torch
from torch import Tensor


def uniform(like: Tensor, generator: torch.Generator | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """U(0, 1) draws of ``like``'s shape and device, contiguous, in ``dtype`` (default: ``like``'s)."""
    if generator is None:
        return torch.rand_like(like, dtype=dtype, memory_format=torch.contiguous_format)
    return torch.rand(like.shape, generator=generator, device=like.device, dtype=dtype or like.dtype)


def normal(like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """N(0, 1) draws of ``like``'s shape, device and dtype, contiguous."""
    if generator is None:
        return torch.randn_like(like, memory_format=torch.contiguous_format)
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
