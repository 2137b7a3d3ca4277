"""Keep freed memory in the process, so that large temporaries do not cost page faults at every step.

A CD step of a convolutional layer allocates and frees a dozen hidden-sized tensors (at 28x28 with 32 maps and
batch 100, 8.6 MB each). glibc serves blocks that large with ``mmap`` or gives the top of the heap back to the
system as soon as they are freed, so every step's tensors start as fresh pages, which the kernel faults in and
zeroes on first touch: at that shape about a third of the step. Raising glibc's mmap and trim thresholds keeps
the freed pages for the next step (the process's resident memory then stays at its peak instead of falling
back between steps). The dense layers' tensors are small enough that glibc already keeps them (no measurable
change). Measure: ``python benchmarks/conv_cd.py``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: blocks up to this size come from the heap (glibc's largest mmap threshold on 64-bit systems)
MMAP_THRESHOLD = 32 * 2**20
#: free memory at the top of the heap up to this size stays with the process
TRIM_THRESHOLD = 2**30


@functools.cache
def retain_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process (once); False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
