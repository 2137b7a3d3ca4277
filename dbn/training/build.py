"""Config to objects for ``dbn-train``: every key is read and checked here, with its one default in ``conf/``.

Each function turns one part of the composed Hydra config into the object a stage needs
(the model, a layer's schedule, a Trainer with its logger, callbacks and progress display,
the fine-tuning module) and raises :class:`~dbn.errors.ConfigError` naming the key and the
fix. :func:`check_config` runs every check before any data is loaded.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from omegaconf import DictConfig, OmegaConf

from dbn.centering import check_centerable
from dbn.conv import ConvRBM
from dbn.data.augment import check_augment, image_side
from dbn.data.base import TensorDataModule
from dbn.dbn import DBN
from dbn.errors import ConfigError, DataError
from dbn.rbm import RBM
from dbn.rundir import RunDir
from dbn.training.console import StageProgress
from dbn.training.distributed import resolve_strategy
from dbn.training.finetune import FineTuneModule, check_batch_norm, check_layer_lr, check_optimizer
from dbn.training.pretrain import layer_schedules

log = logging.getLogger(__name__)

#: pretrain keys that are not part of a layer's schedule
PRETRAIN_EXTRA = ("enabled", "layers", "init_visible_bias", "monitor_size", "init_from")
#: fine-tuning settings that must be numbers in [0, 1)
FINETUNE_FRACTIONS = ("dropout", "input_dropout", "label_smoothing")


def enabled(section) -> bool:
    """A stage runs unless its config group is ``none`` (``enabled: false``) or null."""
    return section is not None and bool(section.enabled)


def instantiate_checked(node, what: str, **kwargs):
    """Hydra's instantiate, with the constructor's own message surfaced as a ConfigError naming ``what``."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, (DataError, ConfigError)):
            raise cause from None
        if isinstance(cause, (ValueError, TypeError, MisconfigurationException)):
            raise ConfigError(f"{what}: {' '.join(str(cause).split())}") from None
        raise


def check_config(cfg: DictConfig) -> None:
    """Reject what cannot run before any data is loaded: sizes, unit types, schedules, fine-tuning, trainer."""
    for key in ("seed", "run_dir"):
        if cfg.get(key) is None:
            raise ConfigError(f"config key {key!r} is missing")
    n_conv = len(conv_specs(cfg))
    net = None if n_conv else model(cfg, n_features=1)  # a conv stack's shapes need the data's image size
    if enabled(cfg.get("pretrain")):
        layer_schedules_ = schedules(cfg, n_conv + len(cfg.model.hidden))
        for i, schedule in enumerate(layer_schedules_[:n_conv]):
            for key, bad in (("sampler", "pt"), ("centering", True)):
                if schedule.get(key) == bad:
                    raise ConfigError(f"pretrain: layer {i} is convolutional, which {key}={bad} does not cover; set "
                                      f"pretrain.layers.{i}.{key}={'gibbs' if key == 'sampler' else 'false'}")
        for i, (rbm, schedule) in enumerate(zip(net.layers if net else [], layer_schedules_)):
            if schedule.get("sampler") == "pt" and {rbm.visible.name, rbm.hidden.name} != {"bernoulli"}:
                raise ConfigError(f"pretrain: layer {i} has {rbm.visible.name} visible and {rbm.hidden.name} hidden "
                                  f"units but sampler=pt needs binary units; set pretrain.layers.{i}.sampler=gibbs "
                                  "or pretrain.sampler=gibbs")
            if schedule.get("centering"):
                try:
                    check_centerable(rbm)  # the one owner of what centering covers
                except ValueError as e:
                    raise ConfigError(f"pretrain: layer {i}: {e} (pretrain.layers.{i}.centering=false)") from None
            if schedule.get("centering") and i == 0 and cfg.data.get("missing"):
                raise ConfigError("pretrain: centering with missing values (data.missing=true) is not supported: the "
                                  "offsets would count the zero-filled entries; set pretrain.layers.0.centering=false")
    if enabled(cfg.get("finetune")):
        ft = cfg.finetune
        for key in ("epochs", "batch_size", "steps_per_batch"):
            if int(ft[key]) < 1:
                raise ConfigError(f"finetune.{key} must be >= 1, got {ft[key]}")
        for key in FINETUNE_FRACTIONS:
            value = ft[key] or 0.0
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"finetune.{key} must be a number in [0, 1), got {value!r}")
        augment(cfg)
        try:
            optimizer = instantiate_checked(ft.optimizer, "finetune.optimizer")
            check_optimizer(optimizer, bool(ft.get("centering")))
            check_batch_norm(ft.get("batch_norm"))
            check_layer_lr(layer_lr(ft), n_conv + len(cfg.model.hidden), optimizer)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if ft.get("batch_norm") == "identity" and not enabled(cfg.get("pretrain")):
            log.warning("finetune.batch_norm=identity keeps the function of a stack that is not pretrained here "
                        "(pretrain=none); from random init use finetune.batch_norm=standard (on the Fashion-MNIST conv "
                        "net the identity start trained in batch statistics but not in running ones)")
    check_trainer(cfg.trainer)
    strategy(cfg)


#: Lightning precisions that keep the weights themselves in 16 bits, and what to use instead
HALF_WEIGHTS = {"bf16-true": "bf16-mixed", "16-true": "16-mixed or bf16-mixed"}


def check_trainer(t: DictConfig) -> None:
    """What Lightning would accept but cannot run here: weights stored in 16 bits, whose 8 (bfloat16) or 11 (float16)
    significant bits round away CD's small steps (lr 0.05 x a gradient of 0.002 is 1e-4, under half a bfloat16 ulp
    of a weight of 0.1); a GPU accelerator without a GPU torch can see (Lightning's "No supported gpu backend found!"
    names no key)."""
    precision = str(t.precision)
    if precision in HALF_WEIGHTS:
        raise ConfigError(f"trainer.precision={precision} stores the weights in 16 bits, which round away CD's small "
                          f"updates; use trainer.precision={HALF_WEIGHTS[precision]} (16-bit products on float32 "
                          "weights)")
    name = str(t.accelerator).lower()
    mps = name == "gpu" and torch.backends.mps.is_available()
    if name in ("gpu", "cuda") and not torch.cuda.is_available() and not mps:
        raise ConfigError(f"trainer.accelerator={t.accelerator}, but torch sees no GPU on this machine; set "
                          "trainer.accelerator=cpu (or auto, which takes a GPU where there is one)")


# --- the model and the data ---------------------------------------------------------------------------
#: keys of one ``model.conv`` entry, with their defaults
CONV_KEYS = {"filters": None, "kernel": None, "pooling": "probabilistic", "pool": 2, "units": "bernoulli"}


def conv_specs(cfg: DictConfig) -> list[dict]:
    """``model.conv``: the convolutional layers' settings, checked (none for a dense stack)."""
    node = cfg.model.get("conv")
    if not node:
        return []
    if not OmegaConf.is_list(node):
        raise ConfigError(f"model.conv must be a list of layers like {{filters: 32, kernel: 3}}, got {node}")
    specs = []
    for i, entry in enumerate(OmegaConf.to_container(node, resolve=True)):
        if not isinstance(entry, dict):
            raise ConfigError(f"model.conv.{i} must be a mapping like {{filters: 32, kernel: 3}}, got {entry!r}")
        unknown = sorted(set(entry) - set(CONV_KEYS))
        missing = [k for k, v in CONV_KEYS.items() if v is None and k not in entry]
        if unknown or missing:
            raise ConfigError(f"model.conv.{i}: unknown keys {unknown}, missing keys {missing}; a conv layer takes "
                              f"{sorted(CONV_KEYS)}")
        specs.append(CONV_KEYS | entry)
    return specs


def model(cfg: DictConfig, n_features: int) -> DBN:
    """The DBN of ``model.*`` on ``n_features`` inputs: ``model.conv`` layers (if any), then ``model.hidden``."""
    hidden = cfg.model.hidden
    convs = conv_specs(cfg)
    if isinstance(hidden, int) or not OmegaConf.is_list(hidden) or (len(hidden) == 0 and not convs):
        raise ConfigError(f"model.hidden must be a non-empty list of layer sizes, e.g. model.hidden=[500,500], got {hidden}")
    units = cfg.model.hidden_units
    units = list(units) if OmegaConf.is_list(units) else units
    try:
        if not convs:
            return DBN([n_features, *hidden], visible=cfg.model.visible, hidden=units, init_std=cfg.model.init_std)
        return conv_model(convs, n_features, list(hidden), cfg.model.visible, units, cfg.model.init_std)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model: {e}") from None


def conv_model(convs: list[dict], n_features: int, hidden: list[int], visible: str, units, init_std: float) -> DBN:
    """Conv RBMs on square one-channel images of ``n_features`` pixels, each on the pooled maps below, then dense RBMs.

    Each layer's visible units are the unit type of the layer below (``relu`` above ReLU maps or units).
    """
    try:
        side = image_side(n_features)
    except ValueError:
        raise ValueError(f"model.conv needs square one-channel images, but the data have {n_features} features") from None
    shape, layers = (1, side, side), []
    for i, spec in enumerate(convs):
        try:
            layers.append(ConvRBM(shape, spec["filters"], spec["kernel"], visible=visible, hidden=spec["units"],
                                  pooling=spec["pooling"], pool=spec["pool"], init_std=init_std))
        except ValueError as e:
            raise ValueError(f"conv.{i} on {shape[1]}x{shape[2]} maps: {e}") from None
        shape, visible = layers[-1].output_shape, layers[-1].hidden_units
    kinds = [units] * len(hidden) if isinstance(units, str) else list(units)
    if len(kinds) != len(hidden):
        raise ValueError(f"hidden_units: got {len(kinds)} for {len(hidden)} dense layers; give one name or one per layer")
    n = layers[-1].n_output
    for size, kind in zip(hidden, kinds):
        layers.append(RBM(n, int(size), visible=visible, hidden=kind, init_std=init_std))
        n, visible = int(size), layers[-1].hidden.name
    return DBN.from_layers(layers)


def data(cfg: DictConfig) -> TensorDataModule:
    """The data module of ``data.*``, loaded and split."""
    dm: TensorDataModule = instantiate_checked(cfg.data, "data")
    dm.prepare_data()
    dm.setup("fit")
    return dm


def augment(cfg: DictConfig) -> dict | None:
    """``finetune.augment`` as a checked dict, or None."""
    node = cfg.finetune.augment
    if not node:
        return None
    try:
        return check_augment(OmegaConf.to_container(node, resolve=True))
    except ValueError as e:
        raise ConfigError(f"finetune.{e}") from None


def check_data_fits(cfg: DictConfig, dm: TensorDataModule, net: DBN) -> None:
    """The data suit the model and the stages: values in the visible units' range, labels and image shape for fine-tuning."""
    for what, x in (("training data", dm.train_x), ("validation data", dm.val_x), ("test data", dm.test_x)):
        if x is not None:
            try:
                net.layers[0].visible.check(x, what)
            except ValueError as e:
                raise DataError(str(e)) from None
    if not enabled(cfg.get("finetune")):
        return
    if augment(cfg):
        try:
            image_side(dm.n_features)
        except ValueError as e:
            raise ConfigError(f"finetune.augment: {e}; set finetune.augment=null") from None
    if dm.n_classes is None:
        raise ConfigError("fine-tuning needs labels but the data has none; give data.labels=FILE or set finetune=none")


# --- pretraining --------------------------------------------------------------------------------------
def schedules(cfg: DictConfig, n_layers: int) -> list[dict]:
    """Every layer's checked schedule (``pretrain.*`` overridden by ``pretrain.layers.<i>``), so a bad
    layer-3 setting fails before layer 1 trains."""
    pcfg = OmegaConf.to_container(cfg.pretrain, resolve=True)
    shared = {k: v for k, v in pcfg.items() if k not in PRETRAIN_EXTRA}
    try:
        return layer_schedules(shared, pcfg["layers"], n_layers)
    except ValueError as e:
        raise ConfigError(f"pretrain: {e}") from None


def pretrain_trainer(cfg: DictConfig, net: DBN, i: int, schedule: dict, n_train: int, has_val: bool) -> L.Trainer:
    """The Trainer of layer ``i``'s fit: fresh callbacks, its own progress display and log version."""
    rbm, prefix = net.layers[i], f"pretrain/layer{i}"
    recon = "val" if has_val else "train"
    progress = StageProgress(f"{prefix} [{i + 1}/{len(net.layers)}] {rbm.n_visible}->{rbm.n_hidden}",
                             {"recon": f"{prefix}/{recon}/recon_error", "fe_gap": f"{prefix}/free_energy_gap"})
    return trainer(cfg, f"pretrain_layer{i}", int(schedule["epochs"]), callbacks(cfg, "pretrain", has_val), has_val,
                   progress, n_train=n_train, batch_size=int(schedule["batch_size"]) * int(schedule["steps_per_batch"]))


# --- fine-tuning --------------------------------------------------------------------------------------
def layer_lr(ft: DictConfig):
    """``finetune.layer_lr`` as a plain number, list or None (a config list becomes a Python one)."""
    value = ft.get("layer_lr")
    return OmegaConf.to_object(value) if OmegaConf.is_config(value) else value


def finetune_module(cfg: DictConfig, net: DBN) -> FineTuneModule:
    """The fine-tuning module of ``finetune.*`` for a DBN with its head."""
    ft = cfg.finetune
    return FineTuneModule(net, optimizer=instantiate_checked(ft.optimizer, "finetune.optimizer"),
                          scheduler=instantiate_checked(ft.scheduler, "finetune.scheduler") if ft.scheduler else None,
                          dropout=float(ft.dropout), augment=augment(cfg), input_dropout=float(ft.input_dropout),
                          label_smoothing=float(ft.label_smoothing), batch_size=int(ft.batch_size),
                          steps_per_batch=int(ft.steps_per_batch), centering=bool(ft.get("centering", False)),
                          batch_norm=ft.get("batch_norm"), layer_lr=layer_lr(ft))


def finetune_trainer(cfg: DictConfig, n_train: int, has_val: bool) -> L.Trainer:
    """The Trainer of the fine-tuning fit."""
    monitors = {"loss": "finetune/train/loss", "acc": "finetune/train/acc"}
    if has_val:
        monitors |= {"val_loss": "finetune/val/loss", "val_acc": "finetune/val/acc"}
    batch_size = int(cfg.finetune.batch_size) * int(cfg.finetune.steps_per_batch)
    out = trainer(cfg, "finetune", int(cfg.finetune.epochs), callbacks(cfg, "finetune", has_val), has_val,
                  StageProgress("finetune", monitors), n_train=n_train, batch_size=batch_size)
    for message in weight_averaging_warnings(cfg, rank_batches(n_train, out.world_size, batch_size) * int(out.max_epochs)):
        log.warning(message)
    return out


def weight_averaging_warnings(cfg: DictConfig, batches: int) -> list[str]:
    """A warning for each EMA callback of ``callbacks.finetune`` whose average, after the fit's ``batches`` Lightning
    batches, would still weigh the weights of its first update by more than a tenth: the validated, tested and saved
    net would then be largely the start of fine-tuning (the conv recipe with decay 0.999 over 825 batches: 71% test
    accuracy against 92% without averaging). Lightning's ``EMAWeightAveraging`` updates once per Lightning batch
    (``finetune.steps_per_batch`` optimizer steps) or per ``update_every_n_steps`` of them, from the first."""
    out = []
    for name, node in ((cfg.get("callbacks") or {}).get("finetune") or {}).items():
        if node is None or not str(node.get("_target_", "")).endswith("EMAWeightAveraging"):
            continue
        decay, every = float(node.get("decay", 0.999)), max(1, int(node.get("update_every_n_steps", 1) or 1))
        updates = batches // every
        share = decay ** max(updates - 1, 0)
        if share > 0.1:
            suggested = math.floor(0.1 ** (1 / max(updates - 1, 1)) * 1000) / 1000
            out.append(f"callbacks.finetune.{name}: decay {decay} over the fit's {updates} averaging updates (one per "
                       f"Lightning batch of finetune.steps_per_batch={cfg.finetune.steps_per_batch} optimizer steps) "
                       f"leaves {share:.0%} of the first update's weights in the average that is validated, tested "
                       f"and saved; for this many updates set callbacks.finetune.{name}.decay={suggested} or lower "
                       f"(a tenth or less), or fine-tune for more epochs")
    return out


# --- trainers -----------------------------------------------------------------------------------------
def strategy(cfg: DictConfig):
    """``trainer.strategy`` with ``trainer.collective_timeout_s`` applied (see :func:`resolve_strategy`)."""
    t = cfg.trainer
    node = t.strategy if isinstance(t.strategy, str) else instantiate_checked(t.strategy, "trainer.strategy")
    try:
        return resolve_strategy(node, t.collective_timeout_s, t.devices, t.num_nodes)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def trainer(cfg: DictConfig, stage: str, epochs: int, callbacks: list | None = None, has_val: bool = True,
            progress: StageProgress | None = None, n_train: int | None = None, batch_size: int | None = None) -> L.Trainer:
    """A Trainer for one stage: ``trainer.*`` with the stage's epochs, logger, callbacks and progress display.

    Args:
        stage: the stage's name, e.g. ``pretrain_layer0`` or ``finetune`` (the CSV log version).
        epochs: the stage's epochs (``trainer.max_epochs``, when set, caps them).
        callbacks: the stage's callbacks.
        has_val: whether the stage has validation data.
        progress: the stage's display, used when ``trainer.enable_progress_bar`` and no callback is a progress bar.
        n_train, batch_size: the stage's training rows and batch size, to keep the logging interval within an epoch.
    """
    tcfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    cap = tcfg.pop("max_epochs")
    epochs = min(int(epochs), int(cap)) if cap else int(epochs)
    tcfg.pop("collective_timeout_s")
    tcfg["strategy"] = strategy(cfg)
    callbacks = list(callbacks or [])
    if progress is not None and tcfg["enable_progress_bar"] and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(progress)
    extra = {} if has_val else {"limit_val_batches": 0, "num_sanity_val_steps": 0}
    out = instantiate_checked(tcfg, "trainer", max_epochs=epochs, logger=logger(cfg, stage), callbacks=callbacks,
                              enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
                              default_root_dir=str(cfg.run_dir), **extra)
    if n_train and batch_size:  # Lightning warns when the logging interval is longer than an epoch
        out.log_every_n_steps = max(1, min(out.log_every_n_steps, rank_batches(n_train, out.world_size, batch_size)))
    return out


def rank_batches(n_train: int, world_size: int, batch_size: int) -> int:
    """Each rank's Lightning batches in an epoch of ``n_train`` rows shared by ``world_size`` ranks."""
    return math.ceil(math.ceil(n_train / world_size) / batch_size)


def logger(cfg: DictConfig, stage: str):
    """``logger.*`` for one stage, or False without one; a CSVLogger gets a version per stage (see :func:`csv_version`)."""
    if not cfg.get("logger"):
        return False
    per_stage = {"version": csv_version(cfg, stage)} if str(cfg.logger.get("_target_", "")).endswith("CSVLogger") else {}
    return instantiate_checked(cfg.logger, "logger", **per_stage)


def csv_version(cfg: DictConfig, stage: str) -> str:
    """A CSVLogger rewrites its metrics.csv for every new instance: one version per stage keeps every
    stage's metrics, and a resumed stage writes ``<stage>-attempt2`` (3, ...) beside the interrupted one."""
    root = Path(str(cfg.logger.get("save_dir") or RunDir(cfg.run_dir).path)) / str(cfg.logger.get("name") or "")
    version, attempt = stage, 1
    while (root / version / "metrics.csv").exists():
        attempt += 1
        version = f"{stage}-attempt{attempt}"
    return version


def callbacks(cfg: DictConfig, stage: str, has_val: bool = True) -> list[L.Callback]:
    """Fresh instances of ``callbacks.<stage>`` (a dict keyed by name; null entries are switched off)."""
    out = []
    for name, node in ((cfg.get("callbacks") or {}).get(stage) or {}).items():
        if node is None:
            continue
        if not has_val and "val" in str(node.get("monitor") or "").split("/"):
            log.warning("callback %s.%s monitors validation metrics but data.val_fraction=0: left out", stage, name)
            continue
        out.append(instantiate_checked(node, f"callbacks.{stage}.{name}"))
    return out
