"""The command-line front ends, a few lines each: compose the Hydra config, hand off, report errors as one line.

``dbn-train`` (:mod:`dbn.cli.train`), ``dbn-eval`` (:mod:`dbn.cli.evaluate`), ``dbn-sample``
(:mod:`dbn.cli.sample`), ``dbn-features`` (:mod:`dbn.cli.features`); each also runs as
``python -m dbn.cli.<name>``.
"""

from __future__ import annotations

from omegaconf import DictConfig


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
