"""The whole run behind ``dbn-train``: data, greedy pretraining, fine-tuning, results on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from dbn.data.base import DataError, TensorDataModule
from dbn.dbn import DBN
from dbn.errors import ConfigError
from dbn.training.finetune import FineTuneModule
from dbn.training.pretrain import greedy_pretrain, layer_schedules

log = logging.getLogger(__name__)

#: pretrain keys that are not part of a layer's schedule
PRETRAIN_EXTRA = ("enabled", "layers", "init_visible_bias", "monitor_size")


def enabled(section) -> bool:
    """A stage runs unless its config group is ``none`` (``enabled: false``) or null."""
    return section is not None and bool(section.get("enabled", True))


def config_hash(cfg: DictConfig) -> str:
    """Short hash of the resolved config without paths, to tell runs of the same config apart."""
    body = OmegaConf.to_container(cfg, resolve=True)
    body.pop("run_dir", None)
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _instantiate(node, what: str, **kwargs):
    """Hydra's instantiate, with the constructor's own message surfaced as a ConfigError."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, (DataError, ConfigError)):
            raise cause from None
        if isinstance(cause, (ValueError, TypeError)):
            raise ConfigError(f"{what}: {cause}") from None
        raise


def build_model(cfg: DictConfig, n_features: int) -> DBN:
    hidden = cfg.model.hidden
    if isinstance(hidden, int) or not OmegaConf.is_list(hidden) or len(hidden) == 0:
        raise ConfigError(f"model.hidden must be a non-empty list of layer sizes, e.g. model.hidden=[500,500], got {hidden}")
    try:
        units = cfg.model.get("hidden_units", "bernoulli")
        units = list(units) if OmegaConf.is_list(units) else units
        return DBN([n_features, *hidden], visible=cfg.model.get("visible", "bernoulli"), hidden=units,
                   init_std=cfg.model.get("init_std", 0.01))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model: {e}") from None


class Run:
    """One ``dbn-train`` run; see :func:`run`."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.dir = Path(cfg.run_dir)
        self.results: dict = {"config_hash": config_hash(cfg)}

    def make_trainer(self, epochs: int, callbacks: list | None = None, has_val: bool = True) -> L.Trainer:
        tcfg = OmegaConf.to_container(self.cfg.trainer, resolve=True)
        cap = tcfg.pop("max_epochs", None)
        epochs = min(int(epochs), int(cap)) if cap else int(epochs)
        logger = _instantiate(self.cfg.logger, "logger") if self.cfg.get("logger") else False
        extra = {} if has_val else {"limit_val_batches": 0, "num_sanity_val_steps": 0}
        return _instantiate(tcfg, "trainer", max_epochs=epochs, logger=logger, callbacks=callbacks or [],
                            enable_checkpointing=any(isinstance(c, L.pytorch.callbacks.ModelCheckpoint) for c in callbacks or []),
                            default_root_dir=str(self.dir), **extra)

    def callbacks(self, stage: str, has_val: bool = True) -> list[L.Callback]:
        """Fresh instances of ``callbacks.<stage>`` (a dict keyed by name; null entries are switched off)."""
        out = []
        for name, node in ((self.cfg.get("callbacks") or {}).get(stage) or {}).items():
            if node is None:
                continue
            if not has_val and "val" in str(node.get("monitor") or "").split("/"):
                log.warning("callback %s.%s monitors validation metrics but data.val_fraction=0: left out", stage, name)
                continue
            out.append(_instantiate(node, f"callbacks.{stage}.{name}"))
        return out

    @rank_zero_only
    def save(self, model: DBN, name: str = "dbn.pt") -> None:
        model.save(self.dir / name)
        self.write_results()

    @rank_zero_only
    def save_config(self) -> None:
        """The resolved config, so dbn-eval can rebuild the run's data (same split) without Hydra."""
        self.dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.cfg, self.dir / "config.yaml", resolve=True)

    @rank_zero_only
    def write_results(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "results.json").write_text(json.dumps(self.results, indent=2, default=float) + "\n")

    def schedules(self, n_layers: int) -> list[dict]:
        """Every layer's checked schedule, so a bad layer-3 setting fails before layer 1 trains."""
        pcfg = OmegaConf.to_container(self.cfg.pretrain, resolve=True)
        shared = {k: v for k, v in pcfg.items() if k not in PRETRAIN_EXTRA}
        try:
            return layer_schedules(shared, pcfg.get("layers"), n_layers)
        except ValueError as e:
            raise ConfigError(f"pretrain: {e}") from None

    def pretrain(self, model: DBN, dm: TensorDataModule) -> None:
        pcfg = self.cfg.pretrain
        schedules = self.schedules(len(model.layers))
        self.results["pretrain"] = []

        def layer_done(i: int, metrics: dict) -> None:
            self.results["pretrain"].append(metrics)
            log.info("layer %d pretrained: %s", i, metrics)
            self.save(model, "dbn_pretrained.pt")  # finished layers survive a later failure

        has_val = dm.val_x is not None

        def make_trainer(epochs: int) -> L.Trainer:  # fresh callbacks for every layer's fit
            return self.make_trainer(epochs, callbacks=self.callbacks("pretrain", has_val), has_val=has_val)

        greedy_pretrain(model, dm.train_x, dm.val_x, schedules, make_trainer,
                        monitor_size=pcfg.get("monitor_size", 2000), init_visible_bias=pcfg.get("init_visible_bias", True),
                        on_layer_end=layer_done)

    def finetune(self, model: DBN, dm: TensorDataModule) -> None:
        fcfg = self.cfg.finetune
        has_val = dm.val_x is not None
        callbacks = self.callbacks("finetune", has_val)
        dm.batch_size = int(fcfg.batch_size)
        module = FineTuneModule(model, optimizer=_instantiate(fcfg.optimizer, "finetune.optimizer"),
                                scheduler=_instantiate(fcfg.scheduler, "finetune.scheduler") if fcfg.get("scheduler") else None,
                                dropout=float(fcfg.get("dropout", 0.0)))
        trainer = self.make_trainer(int(fcfg.epochs), callbacks=callbacks, has_val=has_val)
        start = time.perf_counter()
        trainer.fit(module, datamodule=dm)
        out = {"epochs": trainer.current_epoch, "seconds": round(time.perf_counter() - start, 2)}
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if best:
            out["best_checkpoint"] = best
            out["best_val_loss"] = float(trainer.checkpoint_callback.best_model_score)
        if dm.test_x is not None:
            (test,) = trainer.test(module, datamodule=dm, ckpt_path="best" if best else None, verbose=False)
            out.update(test_acc=test["finetune/test/acc"], test_loss=test["finetune/test/loss"])
        elif best:
            module.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["state_dict"])
        self.results["finetune"] = out


def check_config(cfg: DictConfig) -> None:
    """Reject what cannot run before any data is loaded."""
    for key in ("seed", "run_dir"):
        if cfg.get(key) is None:
            raise ConfigError(f"config key {key!r} is missing")
    build_model(cfg, n_features=1)  # sizes and unit types
    if enabled(cfg.get("pretrain")):
        Run(cfg).schedules(len(cfg.model.hidden))
    if enabled(cfg.get("finetune")):
        if int(cfg.finetune.epochs) < 1:
            raise ConfigError(f"finetune.epochs must be >= 1, got {cfg.finetune.epochs}")
        if int(cfg.finetune.batch_size) < 1:
            raise ConfigError(f"finetune.batch_size must be >= 1, got {cfg.finetune.batch_size}")


def run(cfg: DictConfig) -> dict:
    """Compose-and-go: load data, check it, pretrain greedily, fine-tune, save the DBN and ``results.json``.

    Returns:
        The results written to ``results.json``.
    """
    start = time.perf_counter()
    check_config(cfg)
    L.seed_everything(int(cfg.seed), workers=True)
    runner = Run(cfg)
    runner.save_config()
    dm: TensorDataModule = _instantiate(cfg.data, "data")
    dm.prepare_data()
    dm.setup("fit")
    model = build_model(cfg, dm.n_features)
    for what, x in (("training data", dm.train_x), ("validation data", dm.val_x), ("test data", dm.test_x)):
        if x is not None:
            try:
                model.layers[0].visible.check(x, what)
            except ValueError as e:
                raise DataError(str(e)) from None
    finetuning = enabled(cfg.get("finetune"))
    if finetuning and dm.n_classes is None:
        raise ConfigError("fine-tuning needs labels but the data has none; give data.labels=FILE or set finetune=none")
    runner.results["data"] = dm.describe()
    runner.results["model"] = model.spec() | {"format": None}
    if enabled(cfg.get("pretrain")):
        runner.pretrain(model, dm)
    else:
        model.reset_for_backprop(torch.Generator().manual_seed(int(cfg.seed)))
        runner.results["pretrain"] = None
    if finetuning:
        model.add_head(dm.n_classes)
        runner.finetune(model, dm)
    runner.results["wall_time_s"] = round(time.perf_counter() - start, 2)
    runner.save(model.cpu())
    return runner.results


def summary(results: dict, run_dir: str) -> str:
    """A few human-readable lines about a finished run."""
    lines = [f"run directory: {run_dir}"]
    for layer in results.get("pretrain") or []:
        lines.append(
            f"  layer {layer['layer']} ({layer['n_visible']}->{layer['n_hidden']}): "
            f"recon error {layer.get('val/recon_error', layer.get('train/recon_error', float('nan'))):.4f}, "
            f"free-energy gap {layer.get('free_energy_gap', float('nan')):.3f}, {layer['seconds']:.1f}s"
        )
    ft = results.get("finetune")
    if ft and "test_acc" in ft:
        lines.append(f"fine-tuned test accuracy: {ft['test_acc']:.4f} (test loss {ft['test_loss']:.4f})")
    lines.append(f"wall time: {results.get('wall_time_s', 0):.1f}s")
    return "\n".join(lines)
