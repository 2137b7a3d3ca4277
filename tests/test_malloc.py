"""retain_freed_memory: large temporaries reuse their pages instead of faulting fresh ones in at every step."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys, torch
from dbn.training.malloc import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory() is True and retain_freed_memory() is True
elif sys.argv[1] == "mmap":  # every large block its own mapping, returned when freed: the faults the probe must see
    import ctypes
    from dbn.training.malloc import _M_MMAP_THRESHOLD
    assert ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 128 * 1024) == 1
def cycles(n):
    for _ in range(n):  # a CD step of a conv layer: several hidden-sized temporaries alive at once, then all freed
        xs = [torch.ones(2 * 2**20) for _ in range(4)]  # 8 MiB each, every page written
        del xs
cycles(3)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
cycles(20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_retained_memory_stops_page_faults_of_large_temporaries():
    def faults(mode):
        out = subprocess.run([sys.executable, "-c", SCRIPT, mode], check=True, capture_output=True, text=True)
        return int(out.stdout.split()[-1])

    # glibc's defaults keep or return the freed top of the heap depending on what else sits on it (measured: all
    # 163,200 pages faulted again in two runs of three, none in the third), so the reference is the mmap case
    mapped, retained = faults("mmap"), faults("retain")
    pages = 20 * 4 * 8 * 2**20 // 4096  # four 8 MiB tensors a cycle, 4 KiB pages
    assert mapped > pages / 2, mapped
    assert retained < pages / 8, retained
