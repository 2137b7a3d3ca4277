"""The run directory of ``dbn-train``: the one module that knows its layout.

::

    <run_dir>/
      config.yaml                 the resolved config (dbn-eval and dbn-features rebuild the data from it)
      results.json                what the run measured
      dbn.pt                      the final model: fine-tuned with its head, or the pretrained stack
      dbn_pretrained.pt           the stack straight after pretraining
      checkpoints/                the best fine-tuning epoch (Lightning's ModelCheckpoint, conf/callbacks)
      resume/progress.pt          what a run finished: pretrained layers, their results, the RNG state
      resume/<stage>-last.ckpt    the rolling checkpoint of a stage in progress
      tensorboard/, csv/          logs

Only the standard library at import time, so the maths layer (``DBN.load``) can
use the names; OmegaConf and Hydra are imported by the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

CONFIG = "config.yaml"
RESULTS = "results.json"
MODEL = "dbn.pt"
PRETRAINED = "dbn_pretrained.pt"
RESUME = "resume"
PROGRESS = "progress.pt"
EVAL = "eval.json"
SAMPLES = "samples.png"
#: config keys that say where a run lives, not what it computes
PLACE_KEYS = ("run_dir", "resume")


class RunDir:
    """Paths and files of one run directory.

    Args:
        path: the directory (need not exist yet).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # --- names ----------------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def results(self) -> Path:
        return self.path / RESULTS

    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def pretrained(self) -> Path:
        return self.path / PRETRAINED

    @property
    def resume_dir(self) -> Path:
        """Checkpoints to continue from; apart from ``checkpoints/``, which ModelCheckpoint wants to itself."""
        return self.path / RESUME

    @property
    def progress(self) -> Path:
        return self.resume_dir / PROGRESS

    @property
    def eval_report(self) -> Path:
        """What ``dbn-eval`` measured."""
        return self.path / EVAL

    @property
    def samples(self) -> Path:
        """``dbn-sample``'s default picture."""
        return self.path / SAMPLES

    def features(self, split: str) -> Path:
        """``dbn-features``' default output for a split."""
        return self.path / f"features_{split}.npy"

    def stage_checkpoint(self, stage: str) -> Path:
        """The rolling checkpoint of a stage (``pretrain-layer0``, ``finetune``)."""
        return self.resume_dir / f"{stage}-last.ckpt"

    def has_trained_work(self) -> bool:
        """Whether an earlier attempt left anything to continue from."""
        return self.resume_dir.is_dir() and any(self.resume_dir.iterdir())

    # --- files ----------------------------------------------------------------------------------------
    def save_config(self, cfg) -> None:
        """The resolved config, so the run's data (same split) can be rebuilt without Hydra."""
        from omegaconf import OmegaConf

        self.path.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, self.config, resolve=True)

    def load_config(self):
        """The saved config (Hydra's ``.hydra/config.yaml`` for runs that predate ``config.yaml``).

        Raises:
            FileNotFoundError: not a dbn-train run directory.
        """
        from omegaconf import OmegaConf

        for path in (self.config, self.path / ".hydra" / "config.yaml"):
            if path.exists():
                return OmegaConf.load(path)
        raise FileNotFoundError(f"{self.config} not found; is {self.path} a dbn-train run directory?")

    def write_results(self, results: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.results.write_text(json.dumps(results, indent=2, default=float) + "\n")

    def read_results(self) -> dict:
        return json.loads(self.results.read_text())

    def load_model(self, pretrained: bool = False, map_location: str | None = "cpu"):
        """The run's DBN: the final model, or with ``pretrained`` the stack after pretraining when there is one."""
        from dbn.dbn import DBN

        path = self.pretrained if pretrained and self.pretrained.exists() else self.model
        return DBN.load(path, map_location=map_location)

    def load_data(self):
        """The run's data module, rebuilt from its saved config (same split, same binarisation and scaling)."""
        from hydra.utils import instantiate

        dm = instantiate(self.load_config().data)
        dm.setup()
        return dm

    # --- continuing a run -----------------------------------------------------------------------------
    def continued_config(self, cfg, overrides: list[str] | None):
        """The config to run in this directory: ``cfg``, or the saved one for ``resume=DIR`` alone.

        ``resume=DIR`` alone (``overrides`` are the command line's) continues the run with DIR's
        saved config; the same command as before (same overrides and run directory) continues
        it too. Any other difference with trained work there is refused with the keys named,
        so no finished work is overwritten.

        Raises:
            ValueError: ``resume=`` names no run, or the directory holds trained work of another config.
        """
        from omegaconf import OmegaConf

        if cfg.get("resume") and not self.config.exists():
            raise ValueError(f"resume={cfg.resume}: no dbn-train run there (no {CONFIG}); "
                             "pass the run directory that the interrupted run printed")
        if not self.config.exists():
            return cfg
        saved = OmegaConf.load(self.config)
        if cfg.get("resume") and overrides is not None and all(_is_place_override(o) for o in overrides):
            saved.run_dir, saved.resume = str(cfg.run_dir), cfg.resume  # `dbn-train resume=DIR` alone
            return saved
        if not self.has_trained_work():
            return cfg  # nothing trained there yet: nothing to continue, nothing to lose
        mine = OmegaConf.to_container(cfg, resolve=True)
        diff = [k for k in config_diff(mine, OmegaConf.to_container(saved, resolve=True)) if k not in PLACE_KEYS]
        if not diff:
            return cfg
        raise ValueError(
            f"{cfg.run_dir} holds a run of another config (differs in {', '.join(diff[:8])}"
            f"{', ...' if len(diff) > 8 else ''}); continue it with `dbn-train resume={cfg.run_dir}` alone, "
            "or start a new run in another directory (hydra.run.dir=...)"
        )


def config_hash(cfg) -> str:
    """Short hash of the resolved config without paths, to tell runs of the same config apart."""
    from omegaconf import OmegaConf, open_dict

    cfg = cfg.copy()
    with open_dict(cfg):  # paths derived from the run directory must not count either
        cfg.run_dir, cfg.resume = "<run_dir>", None
    body = _str_keys(OmegaConf.to_container(cfg, resolve=True))
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _str_keys(x):
    """Every mapping key as a string: ``+pretrain.layers.2.k=5`` beside a YAML ``layers: {0: ...}`` mixes the
    string key "2" with integer ones, which json's sort_keys cannot order (JSON writes every key as a string)."""
    if isinstance(x, dict):
        return {str(k): _str_keys(v) for k, v in x.items()}
    return [_str_keys(v) for v in x] if isinstance(x, list) else x


def config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    out = []
    for key in sorted(set(a) | set(b), key=str):
        name, x, y = f"{prefix}{key}", a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += config_diff(x, y, name + ".")
        elif x != y:
            out.append(name)
    return out


def _is_place_override(override: str) -> bool:
    """``resume=...``, ``run_dir=...`` or ``hydra.*`` (Lightning's DDP launcher adds ``hydra.run.dir`` for ranks > 0)."""
    key = override.split("=")[0].lstrip("+~")
    return key in PLACE_KEYS or key.startswith("hydra.")
