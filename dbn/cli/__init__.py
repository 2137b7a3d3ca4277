"""The command-line front ends, a few lines each: compose the Hydra config, hand off, report errors as one line.

``dbn-train`` (:mod:`dbn.cli.train`), ``dbn-eval`` (:mod:`dbn.cli.evaluate`), ``dbn-sample``
(:mod:`dbn.cli.sample`), ``dbn-features`` (:mod:`dbn.cli.features`); each also runs as
``python -m dbn.cli.<name>``.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
from collections.abc import Iterator

from omegaconf import DictConfig

_frozen_at_exit = False


@contextlib.contextmanager
def lean_gc() -> Iterator[None]:
    """Import a command's libraries without Python's cyclic garbage collector, and exit without it.

    Importing Lightning (which imports torchmetrics, torchvision, scipy.signal, matplotlib and torch._dynamo)
    and the pipeline creates a few hundred thousand long-lived objects, and the collector walks all of them at
    each full collection: four during those imports and more while the interpreter shuts down, together
    1.8 s of ``dbn-train``'s fixed cost on a 2-core CPU (6.09 -> 4.27 s, medians of ``dbn-train
    pretrain.epochs=-1`` before and after: ``benchmarks/results/cd1_throughput.md``). Inside the block the
    collector is off; on leaving it, every object made so far moves into the permanent generation
    (:func:`gc.freeze`: never collected, never walked again) and the collector is back as it was, so later
    collections see only what the command itself makes; at exit the heap is frozen again, so shutdown does
    not walk it either (objects freed by reference counting are freed as usual; cycles left at exit were
    never promised a collection). Used inside each command, after Hydra has parsed the command line, so that
    ``--help`` and a mistyped override cost no imports.
    """
    global _frozen_at_exit
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
        if not _frozen_at_exit:
            _frozen_at_exit = True
            atexit.register(gc.freeze)


def run_directory(cfg: DictConfig, command: str) -> str:
    """The run directory a command reads, from ``run_dir=DIR`` (the spelling ``dbn-train`` writes) or ``run=DIR``.

    ``dbn-eval``, ``dbn-sample`` and ``dbn-features`` take either, so that one spelling works for all three.

    Raises:
        ValueError: neither is given, or both name different directories.
    """
    run_dir, run = cfg.get("run_dir"), cfg.get("run")
    if run_dir is None and run is None:
        raise ValueError(f"no run directory: name the dbn-train run to read, {command} run_dir=outputs/DATE/TIME")
    if run_dir is not None and run is not None and str(run_dir) != str(run):
        raise ValueError(f"run_dir={run_dir} and run={run} name different runs; give one of them")
    return str(run_dir if run_dir is not None else run)
