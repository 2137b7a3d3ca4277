"""The whole run behind ``dbn-train``: data, greedy pretraining, fine-tuning, results on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from dbn.data.augment import check_augment, image_side
from dbn.data.base import DataError, TensorDataModule
from dbn.dbn import DBN
from dbn.errors import ConfigError
from dbn.training.finetune import FineTuneModule
from dbn.training import resume
from dbn.training.console import StageProgress, summary_table
from dbn.training.distributed import identical_across_ranks, naming_stage, resolve_strategy
from dbn.training.pretrain import greedy_pretrain, layer_schedules

log = logging.getLogger(__name__)

#: pretrain keys that are not part of a layer's schedule
PRETRAIN_EXTRA = ("enabled", "layers", "init_visible_bias", "monitor_size", "init_from")
#: config keys that say where a run lives, not what it computes
PLACE_KEYS = ("run_dir", "resume")


def enabled(section) -> bool:
    """A stage runs unless its config group is ``none`` (``enabled: false``) or null."""
    return section is not None and bool(section.get("enabled", True))


def config_hash(cfg: DictConfig) -> str:
    """Short hash of the resolved config without paths, to tell runs of the same config apart."""
    cfg = cfg.copy()
    with open_dict(cfg):  # paths derived from the run directory must not count either
        cfg.run_dir, cfg.resume = "<run_dir>", None
    body = OmegaConf.to_container(cfg, resolve=True)
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
        self.progress = resume.Progress(self.dir)
        self.ckpt_dir = self.dir / "resume"  # apart from checkpoints/, which ModelCheckpoint wants to itself

    def make_trainer(self, epochs: int, callbacks: list | None = None, has_val: bool = True, stage: str = "run",
                     progress: StageProgress | None = None, n_train: int | None = None,
                     batch_size: int | None = None) -> L.Trainer:
        """A Trainer for one stage: ``trainer.*`` with the stage's epochs, logger, callbacks and progress display.

        ``progress`` is the stage's display, used when the progress bar is on and the stage's
        callbacks bring no progress bar of their own.
        """
        tcfg = OmegaConf.to_container(self.cfg.trainer, resolve=True)
        cap = tcfg.pop("max_epochs", None)
        epochs = min(int(epochs), int(cap)) if cap else int(epochs)
        try:
            tcfg["strategy"] = resolve_strategy(tcfg.get("strategy", "auto"), tcfg.pop("collective_timeout_s", 300),
                                                tcfg.get("devices", 1), tcfg.get("num_nodes", 1))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        logger = False
        if self.cfg.get("logger"):
            per_stage = {"version": self.csv_version(stage)} if str(self.cfg.logger.get("_target_", "")).endswith("CSVLogger") else {}
            logger = _instantiate(self.cfg.logger, "logger", **per_stage)
        callbacks = list(callbacks or [])
        if progress is not None and tcfg.get("enable_progress_bar", True) and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(progress)
        extra = {} if has_val else {"limit_val_batches": 0, "num_sanity_val_steps": 0}
        trainer = _instantiate(tcfg, "trainer", max_epochs=epochs, logger=logger, callbacks=callbacks,
                               enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
                               default_root_dir=str(self.dir), **extra)
        if n_train and batch_size:  # each rank's batches in an epoch: Lightning warns when the logging interval is longer
            per_rank = math.ceil(math.ceil(n_train / trainer.world_size) / batch_size)
            trainer.log_every_n_steps = max(1, min(trainer.log_every_n_steps, per_rank))
        return trainer

    def csv_version(self, stage: str) -> str:
        """A CSVLogger rewrites its metrics.csv for every new instance: one version per stage keeps every
        stage's metrics, and a resumed stage writes ``<stage>-attempt2`` (3, ...) beside the interrupted one."""
        root = Path(str(self.cfg.logger.get("save_dir") or self.dir)) / str(self.cfg.logger.get("name") or "")
        version, attempt = stage, 1
        while (root / version / "metrics.csv").exists():
            attempt += 1
            version = f"{stage}-attempt{attempt}"
        return version

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

    def pretrain(self, model: DBN, dm: TensorDataModule, done: dict) -> None:
        """Greedy pretraining from where an earlier attempt of this run stopped (layer, then epoch).

        ``done`` is that attempt's :class:`~dbn.training.resume.Progress` (empty for a new run).
        """
        pcfg = self.cfg.pretrain
        schedules = self.schedules(len(model.layers))
        n_done = int(done.get("layers_done", 0))
        if n_done:
            model.load_state_dict(done["pretrained"])
            torch.set_rng_state(done["torch_rng"])  # as it was when layer n_done - 1 finished
            log.info("resuming: layers 0..%d are pretrained already (%s)", n_done - 1, self.progress.path)
        self.results["pretrain"] = list(done.get("pretrain_results", []))[:n_done]

        def layer_done(i: int, metrics: dict) -> None:
            self.results["pretrain"].append(metrics)
            self.save(model, "dbn_pretrained.pt")  # finished layers survive a later failure
            self.save_progress(layers_done=i + 1, pretrained=model.state_dict(), pretrain_results=self.results["pretrain"])
            self.layer_checkpoint(i).unlink(missing_ok=True)  # superseded by progress.pt

        has_val = dm.val_x is not None

        layer = iter(range(n_done, len(model.layers)))
        recon = "val" if has_val else "train"

        def make_trainer(epochs: int) -> L.Trainer:  # fresh callbacks for every layer's fit
            i = next(layer)
            rbm, prefix = model.layers[i], f"pretrain/layer{i}"
            progress = StageProgress(f"{prefix} [{i + 1}/{len(model.layers)}] {rbm.n_visible}->{rbm.n_hidden}",
                                     {"recon": f"{prefix}/{recon}/recon_error", "fe_gap": f"{prefix}/free_energy_gap"})
            return self.make_trainer(epochs, callbacks=self.callbacks("pretrain", has_val), has_val=has_val,
                                     stage=f"pretrain_layer{i}", progress=progress, n_train=len(dm.train_x),
                                     batch_size=int(schedules[i].get("batch_size", 64)))

        greedy_pretrain(model, dm.train_x, dm.val_x, schedules, make_trainer,
                        monitor_size=pcfg.get("monitor_size", 2000), init_visible_bias=pcfg.get("init_visible_bias", True),
                        on_layer_end=layer_done, start_layer=n_done, checkpoint=self.layer_checkpoint,
                        train_mask=dm.train_mask, val_mask=dm.val_mask)

    def load_pretrained(self, model: DBN, source: str) -> None:
        """Start from the pretrained layers of another run (``pretrain.init_from``) instead of pretraining."""
        try:
            other = DBN.load(Path(source) / "dbn_pretrained.pt" if Path(source).is_dir() else source)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"pretrain.init_from: {e}") from None
        theirs = {k: v for k, v in other.spec().items() if k in ("sizes", "visible", "hidden")}
        mine = {k: v for k, v in model.spec().items() if k in ("sizes", "visible", "hidden")}
        if theirs != mine:
            raise ConfigError(f"pretrain.init_from={source} holds a {theirs} stack but this run builds {mine}")
        model.layers.load_state_dict(other.layers.state_dict())
        self.results["pretrain"] = []
        self.results["pretrained_from"] = str(source)
        log.info("pretrained layers loaded from %s", source)

    def augment_config(self) -> dict | None:
        node = self.cfg.finetune.get("augment")
        return OmegaConf.to_container(node, resolve=True) if node else None

    def layer_checkpoint(self, i: int) -> Path:
        return self.ckpt_dir / f"pretrain-layer{i}-last.ckpt"

    @rank_zero_only
    def save_progress(self, **state) -> None:
        self.progress.save(**state)

    def finetune(self, model: DBN, dm: TensorDataModule) -> None:
        """Fine-tune by backprop, resuming from the last epoch's checkpoint; test the best epoch."""
        fcfg = self.cfg.finetune
        has_val = dm.val_x is not None
        callbacks = self.callbacks("finetune", has_val)
        dm.batch_size = int(fcfg.batch_size)
        module = FineTuneModule(model, optimizer=_instantiate(fcfg.optimizer, "finetune.optimizer"),
                                scheduler=_instantiate(fcfg.scheduler, "finetune.scheduler") if fcfg.get("scheduler") else None,
                                dropout=float(fcfg.get("dropout", 0.0)), augment=self.augment_config(),
                                input_dropout=float(fcfg.get("input_dropout", 0.0)),
                                label_smoothing=float(fcfg.get("label_smoothing", 0.0)))
        monitors = {"loss": "finetune/train/loss", "acc": "finetune/train/acc"}
        if has_val:
            monitors |= {"val_loss": "finetune/val/loss", "val_acc": "finetune/val/acc"}
        n_train = len(dm.train_x) if dm.labelled_idx is None else len(dm.labelled_idx)
        trainer = self.make_trainer(int(fcfg.epochs), callbacks=callbacks, has_val=has_val, stage="finetune",
                                    progress=StageProgress("finetune", monitors), n_train=n_train, batch_size=dm.batch_size)
        fit_args = resume.attach(trainer, self.ckpt_dir / "finetune-last.ckpt")
        start = time.perf_counter()
        with naming_stage("finetune"):
            trainer.fit(module, datamodule=dm, **fit_args)
        out = {"epochs": trainer.current_epoch, "seconds": round(time.perf_counter() - start, 2)}
        if fit_args:
            out["resumed_from"] = Path(fit_args["ckpt_path"]).name
        best_cb = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None)
        best = best_cb is not None and bool(best_cb.best_model_path)
        if best:
            out["best_checkpoint"] = best_cb.best_model_path
            out["best_monitor"], out["best_score"] = best_cb.monitor, float(best_cb.best_model_score)
        with naming_stage("finetune (test)"):
            if trainer.world_size > 1:
                out["identical_across_ranks"] = identical_across_ranks(module, trainer)
            if best:  # the best epoch's weights, in the module the DBN is saved from
                state = torch.load(best_cb.best_model_path, map_location="cpu", weights_only=True)
                module.load_state_dict(state["state_dict"])
            if dm.test_x is not None:
                (test,) = trainer.test(module, datamodule=dm, verbose=False)
                out.update(test_acc=test["finetune/test/acc"], test_loss=test["finetune/test/loss"])
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
        for key in ("dropout", "input_dropout", "label_smoothing"):
            value = cfg.finetune.get(key) or 0.0
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"finetune.{key} must be a number in [0, 1), got {value!r}")
        try:
            check_augment(Run(cfg).augment_config())
        except ValueError as e:
            raise ConfigError(f"finetune.{e}") from None


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


def command_line_overrides() -> list[str] | None:
    """The overrides typed on the ``dbn-train`` command line, or None outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None


def _is_place_override(override: str) -> bool:
    """``resume=...``, ``run_dir=...`` or ``hydra.*`` (Lightning's DDP launcher adds ``hydra.run.dir`` for ranks > 0)."""
    key = override.split("=")[0].lstrip("+~")
    return key in PLACE_KEYS or key.startswith("hydra.")


def prepare_run_dir(cfg: DictConfig) -> DictConfig:
    """Check that the run directory is new or holds an earlier attempt of this same config.

    ``resume=DIR`` alone continues the run in DIR with DIR's saved config; the same
    command as before (same overrides and run directory) continues it too. Any other
    difference is refused with the keys named, so no finished work is overwritten.
    """
    saved_file = Path(cfg.run_dir) / "config.yaml"
    if cfg.get("resume") and not saved_file.exists():
        raise ConfigError(f"resume={cfg.resume}: no dbn-train run there (no config.yaml); "
                          "pass the run directory that the interrupted run printed")
    if not saved_file.exists():
        return cfg
    saved = OmegaConf.load(saved_file)
    overrides = command_line_overrides()
    if cfg.get("resume") and overrides is not None and all(_is_place_override(o) for o in overrides):
        saved.run_dir, saved.resume = str(cfg.run_dir), cfg.resume  # `dbn-train resume=DIR` alone
        return saved
    work = Path(cfg.run_dir) / "resume"
    if not (work.is_dir() and any(work.iterdir())):
        return cfg  # nothing trained there yet: nothing to continue, nothing to lose
    mine = OmegaConf.to_container(cfg, resolve=True)
    diff = [k for k in config_diff(mine, OmegaConf.to_container(saved, resolve=True)) if k not in PLACE_KEYS]
    if not diff:
        return cfg
    raise ConfigError(
        f"{cfg.run_dir} holds a run of another config (differs in {', '.join(diff[:8])}"
        f"{', ...' if len(diff) > 8 else ''}); continue it with `dbn-train resume={cfg.run_dir}` alone, "
        "or start a new run in another directory (hydra.run.dir=...)"
    )


def run(cfg: DictConfig) -> dict:
    """Compose-and-go: load data, check it, pretrain greedily, fine-tune, save the DBN and ``results.json``.

    A run directory holding an interrupted attempt of the same config is continued:
    finished layers are kept, the current stage resumes from its last epoch (see
    :mod:`dbn.training.resume`); a finished run is returned as it is. SIGTERM stops
    the run at the next batch boundary (on every rank), after a checkpoint.

    Returns:
        The results written to ``results.json``.
    """
    with resume.STOP.watching():
        return _run(cfg)


def _run(cfg: DictConfig) -> dict:
    start = time.perf_counter()
    cfg = prepare_run_dir(cfg)
    check_config(cfg)
    runner = Run(cfg)
    done = runner.progress.load()  # what an earlier attempt of this run finished
    if done.get("finished"):
        log.info("%s holds a finished run of this config; nothing to do", runner.dir)
        return json.loads((runner.dir / "results.json").read_text())
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    runner.save_config()
    dm: TensorDataModule = _instantiate(cfg.data, "data")
    dm.prepare_data()
    dm.setup("fit")
    model = build_model(cfg, dm.n_features)
    model.input_scaling = dm.scaling  # saved with the model: DBN.preprocess maps new raw data the same way
    for what, x in (("training data", dm.train_x), ("validation data", dm.val_x), ("test data", dm.test_x)):
        if x is not None:
            try:
                model.layers[0].visible.check(x, what)
            except ValueError as e:
                raise DataError(str(e)) from None
    finetuning = enabled(cfg.get("finetune"))
    if finetuning and runner.augment_config():
        try:
            image_side(dm.n_features)
        except ValueError as e:
            raise ConfigError(f"finetune.augment: {e}; set finetune.augment=null") from None
    if finetuning and dm.n_classes is None:
        raise ConfigError("fine-tuning needs labels but the data has none; give data.labels=FILE or set finetune=none")
    runner.results["data"] = dm.describe()
    runner.results["model"] = model.spec() | {"format": None}
    print_header(cfg, runner.results["data"], model)
    if enabled(cfg.get("pretrain")) and cfg.pretrain.get("init_from"):
        runner.load_pretrained(model, cfg.pretrain.init_from)
    elif enabled(cfg.get("pretrain")):
        runner.pretrain(model, dm, done)
    else:
        model.reset_for_backprop(torch.Generator().manual_seed(int(cfg.seed)))
        runner.results["pretrain"] = None
    if finetuning:
        model.add_head(dm.n_classes)
        runner.finetune(model, dm)
    runner.results["wall_time_s"] = round(time.perf_counter() - start, 2)
    runner.save(model.cpu())
    runner.save_progress(finished=True)
    return runner.results


@rank_zero_only
def print_header(cfg: DictConfig, data: dict, model: DBN) -> None:
    """One line before training: the data, the model, the devices and where the run lives."""
    t = cfg.trainer
    split = f"{data['n_train']}/{data['n_val']}/{data['n_test']} train/val/test rows"
    devices = f"{t.get('accelerator')} x {t.get('devices')}" + (f" x {t.num_nodes} nodes" if int(t.get("num_nodes") or 1) > 1 else "")
    print(f"dbn-train: {data['name']} ({split}), DBN {'-'.join(map(str, model.sizes))}, "
          f"{devices} ({t.get('strategy')}), run directory {cfg.run_dir}", flush=True)


def summary(results: dict, run_dir: str) -> str:
    """A few human-readable lines about a finished run (see :func:`dbn.training.console.summary_table`)."""
    return summary_table(results, run_dir)
