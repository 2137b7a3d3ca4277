"""The whole run behind ``dbn-train``, top to bottom: data, greedy pretraining, fine-tuning, results on disk.

:func:`run` reads like the experiment: check the config, load the data, build the model,
pretrain (or load another run's layers, or initialise at random), fine-tune, save. Each
stage is a function that returns its results; :mod:`dbn.training.build` turns config into
objects, :mod:`dbn.rundir` knows the run directory, :mod:`dbn.training.resume` continues
interrupted work.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from dbn.data.base import TensorDataModule
from dbn.dbn import DBN
from dbn.errors import ConfigError
from dbn.rundir import RunDir, config_hash
from dbn.training import build, resume
from dbn.training.build import enabled
from dbn.training.malloc import retain_freed_memory
from dbn.training.console import summary_table
from dbn.training.distributed import identical_across_ranks, naming_stage
from dbn.training.pretrain import pretrain_layers

log = logging.getLogger(__name__)


def command_line_overrides() -> list[str] | None:
    """The overrides typed on the ``dbn-train`` command line, or None outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None


def prepare_run_dir(cfg: DictConfig) -> DictConfig:
    """The config to run: ``cfg``, or the saved one for ``resume=DIR`` alone (see :meth:`RunDir.continued_config`)."""
    try:
        return RunDir(cfg.run_dir).continued_config(cfg, command_line_overrides())
    except ValueError as e:
        raise ConfigError(str(e)) from None


def run(cfg: DictConfig) -> dict:
    """Compose-and-go: load data, check it, pretrain greedily, fine-tune, save the DBN and ``results.json``.

    A run directory holding an interrupted attempt of the same config is continued:
    finished layers are kept, the current stage resumes from its last epoch (see
    :mod:`dbn.training.resume`); a finished run is returned as it is. SIGTERM stops
    the run at the next batch boundary (on every rank), after a checkpoint.

    Returns:
        The results written to ``results.json``.
    """
    start = time.perf_counter()
    retain_freed_memory()  # conv layers' large temporaries: no page faults at every step (dbn.training.malloc)
    cfg = prepare_run_dir(cfg)
    build.check_config(cfg)
    run_dir = RunDir(cfg.run_dir)
    done = resume.Progress(run_dir.path).load()  # what an earlier attempt of this run finished
    if done.get("finished"):
        log.info("%s holds a finished run of this config; nothing to do", run_dir.path)
        return run_dir.read_results()
    with resume.STOP.watching():
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
        save_config(run_dir, cfg)
        dm = build.data(cfg)
        model = build.model(cfg, dm.n_features)
        model.input_scaling = dm.scaling  # saved with the model: DBN.preprocess maps new raw data the same way
        build.check_data_fits(cfg, dm, model)
        results = {"config_hash": config_hash(cfg), "data": dm.describe(), "model": model.spec() | {"format": None}}
        print_header(cfg, results["data"], model)
        if enabled(cfg.get("pretrain")) and cfg.pretrain.init_from:
            results["pretrain"], results["pretrained_from"] = [], load_pretrained(model, cfg.pretrain.init_from)
            save(run_dir, model, results, pretrained=True)  # as a pretraining run would: this run can be init_from too
        elif enabled(cfg.get("pretrain")):
            results["pretrain"] = pretrain(cfg, model, dm, run_dir, done, results)
        else:
            model.reset_for_backprop(torch.Generator().manual_seed(int(cfg.seed)))
            results["pretrain"] = None
        if enabled(cfg.get("finetune")):
            model.add_head(dm.n_classes)
            results["finetune"] = finetune(cfg, model, dm, run_dir)
        results["wall_time_s"] = round(time.perf_counter() - start, 2)
        save(run_dir, model.cpu(), results)
        save_progress(run_dir, finished=True)
    return results


def pretrain(cfg: DictConfig, model: DBN, dm: TensorDataModule, run_dir: RunDir, done: dict, results: dict) -> list[dict]:
    """Greedy pretraining from where an earlier attempt of this run stopped (layer, then epoch).

    After each layer the stack, ``results`` with the layers so far, and the progress are
    saved, so finished layers survive a later failure. ``done`` is the earlier attempt's
    :class:`~dbn.training.resume.Progress` (empty for a new run).

    Returns:
        Every layer's results (loaded ones included).
    """
    schedules = build.schedules(cfg, len(model.layers))
    n_done = int(done.get("layers_done", 0))
    if n_done:
        model.load_state_dict(done["pretrained"])
        torch.set_rng_state(done["torch_rng"])  # as it was when layer n_done - 1 finished
        log.info("resuming: layers 0..%d are pretrained already (%s)", n_done - 1, run_dir.progress)
    layers = list(done.get("pretrain_results", []))[:n_done]
    has_val = dm.val_x is not None
    checkpoints = [run_dir.stage_checkpoint(f"pretrain-layer{i}") for i in range(len(model.layers))]
    trained = pretrain_layers(
        model, dm.train_x, dm.val_x, schedules,
        lambda i, schedule: build.pretrain_trainer(cfg, model, i, schedule, len(dm.train_x), has_val),
        monitor_size=cfg.pretrain.monitor_size, init_visible_bias=cfg.pretrain.init_visible_bias, start_layer=n_done,
        checkpoints=checkpoints, train_mask=dm.train_mask, val_mask=dm.val_mask)
    for layer in trained:
        layers.append(layer)
        save(run_dir, model, {**results, "pretrain": layers}, pretrained=True)
        save_progress(run_dir, layers_done=len(layers), pretrained=model.state_dict(), pretrain_results=layers)
        checkpoints[layer["layer"]].unlink(missing_ok=True)  # superseded by progress.pt
    return layers


def load_pretrained(model: DBN, source: str) -> str:
    """Load the pretrained layers of another run (``pretrain.init_from``: its directory or a ``.pt`` file)."""
    try:
        other = DBN.load(RunDir(source).pretrained if Path(source).is_dir() else source)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"pretrain.init_from: {e}") from None
    theirs = {k: v for k, v in other.spec().items() if k in ("sizes", "visible", "hidden", "layers")}
    mine = {k: v for k, v in model.spec().items() if k in ("sizes", "visible", "hidden", "layers")}
    if theirs != mine:
        raise ConfigError(f"pretrain.init_from={source} holds a {theirs} stack but this run builds {mine}")
    model.layers.load_state_dict(other.layers.state_dict())
    log.info("pretrained layers loaded from %s", source)
    return str(source)


def finetune(cfg: DictConfig, model: DBN, dm: TensorDataModule, run_dir: RunDir) -> dict:
    """Fine-tune by backprop (resuming from the last epoch's checkpoint), keep the best epoch, test it.

    Returns:
        Epochs, seconds, the best epoch's monitored score and checkpoint, test accuracy and loss.
    """
    has_val = dm.val_x is not None
    module = build.finetune_module(cfg, model)
    dm.batch_size = module.loader_batch_size  # finetune.steps_per_batch steps of finetune.batch_size rows each
    n_train = len(dm.train_x) if dm.labelled_idx is None else len(dm.labelled_idx)
    trainer = build.finetune_trainer(cfg, n_train, has_val)
    fit_args = resume.attach(trainer, run_dir.stage_checkpoint("finetune"))
    start = time.perf_counter()
    with naming_stage("finetune"):
        trainer.fit(module, datamodule=dm, **fit_args)
    out = {"epochs": trainer.current_epoch, "seconds": round(time.perf_counter() - start, 2)}
    if fit_args:
        out["resumed_from"] = Path(fit_args["ckpt_path"]).name
    best = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor and c.best_model_path), None)
    if best is not None:
        out["best_checkpoint"] = best.best_model_path
        out["best_monitor"], out["best_score"] = best.monitor, float(best.best_model_score)
    with naming_stage("finetune (test)"):
        if trainer.world_size > 1:
            out["identical_across_ranks"] = identical_across_ranks(module, trainer)
        if best is not None:
            # the saved DBN is the best epoch's, test split or not (Lightning's ckpt_path="best" acts inside test only)
            state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
            module.load_state_dict(state["state_dict"])
            module.fold_batch_norm()  # the checkpoint holds the unfolded net (finetune.batch_norm)
        if dm.test_x is not None:
            (test,) = trainer.test(module, datamodule=dm, verbose=False)
            out.update(test_acc=test["finetune/test/acc"], test_loss=test["finetune/test/loss"])
    return out


# --- on disk and on screen (rank 0) ---------------------------------------------------------------------
@rank_zero_only
def save_config(run_dir: RunDir, cfg: DictConfig) -> None:
    run_dir.save_config(cfg)


@rank_zero_only
def save(run_dir: RunDir, model: DBN, results: dict, pretrained: bool = False) -> None:
    """The model (``dbn.pt``, or with ``pretrained`` the stack after pretraining) and the results so far."""
    model.save(run_dir.pretrained if pretrained else run_dir.model)
    run_dir.write_results(results)


@rank_zero_only
def save_progress(run_dir: RunDir, **state) -> None:
    resume.Progress(run_dir.path).save(**state)


@rank_zero_only
def print_header(cfg: DictConfig, data: dict, model: DBN) -> None:
    """One line before training: the data, the model, the devices and where the run lives."""
    t = cfg.trainer
    split = f"{data['n_train']}/{data['n_val']}/{data['n_test']} train/val/test rows"
    devices = f"{t.accelerator} x {t.devices}" + (f" x {t.num_nodes} nodes" if int(t.num_nodes or 1) > 1 else "")
    strategy = t.strategy if isinstance(t.strategy, str) else t.strategy.get("_target_", "").rsplit(".", 1)[-1]
    print(f"dbn-train: {data['name']} ({split}), DBN {'-'.join(map(str, model.sizes))}, "
          f"{devices} ({strategy}), run directory {cfg.run_dir}", flush=True)


def summary(results: dict, run_dir: str) -> str:
    """A few human-readable lines about a finished run (see :func:`dbn.training.console.summary_table`)."""
    return summary_table(results, run_dir)
