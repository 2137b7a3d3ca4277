"""The errors dbn raises on purpose: each names the problem and the fix, and the command line reports it as one line.

``dbn-train`` exit codes: 2 for :class:`ConfigError` and :class:`DataError`, 3 for
:class:`DivergenceError`, 4 for :class:`CollectiveError` (143 for SIGTERM).
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration that cannot run, with the key at fault and the fix."""


class DataError(ValueError):
    """A data set that cannot be trained on, with the reason and the fix."""


class DivergenceError(RuntimeError):
    """Training produced NaN or infinite values; the message names the layer, the epoch and what to change."""


class CollectiveError(RuntimeError):
    """A collective operation across processes (DDP) timed out or broke, with the stage it happened in."""
