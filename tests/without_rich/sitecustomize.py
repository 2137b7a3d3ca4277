"""On PYTHONPATH, makes this interpreter (and every DDP rank it launches) behave as if ``rich`` were not installed.

Lightning decides whether rich is available from the installed distributions' metadata,
and imports it where it is; both are refused here, as on a machine without rich.
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata
import sys

_real_distribution = importlib.metadata.distribution


def _distribution(name: str):
    if name.lower() == "rich":
        raise importlib.metadata.PackageNotFoundError(name)
    return _real_distribution(name)


class _NoRich(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "rich" or fullname.startswith("rich."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


importlib.metadata.distribution = _distribution
importlib.metadata.version = lambda name: _distribution(name).version
sys.meta_path.insert(0, _NoRich())
