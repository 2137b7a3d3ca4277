"""Errors that the command line reports as one clear line, without a traceback."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration that cannot run, with the key at fault and the fix."""


class CollectiveError(RuntimeError):
    """A collective operation across processes (DDP) timed out or broke, with the stage it happened in."""
