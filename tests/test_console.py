"""What dbn-train prints: plain lines in a log file, one live bar per stage on a terminal, a summary table."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
from datetime import timedelta

import pytest
import torch
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.strategies import DDPStrategy

from dbn.data.base import eval_loader
from dbn.training.console import StageProgress, summary_table
from dbn.training.distributed import resolve_strategy
from dbn.training import build
from tests.test_train import make_cfg

BANNERS = ("GPU available", "TPU available", "Tip:", "litlogger", "Seed set to")


@pytest.mark.slow
def test_default_job_in_a_log_file_prints_one_plain_line_per_epoch_and_a_summary(default_job):
    """``dbn-train > log``: no progress-bar redraws, no banners, no warnings, well under 50 KB."""
    assert default_job.returncode == 0, default_job.stderr[-3000:]
    out = default_job.stdout
    assert len(out.encode()) < 50_000 and "\r" not in out
    results = json.loads((default_job.run_dir / "results.json").read_text())
    lines = out.splitlines()
    for i, layer in enumerate(results["pretrain"]):
        epoch_lines = [line for line in lines if line.startswith(f"pretrain/layer{i} [{i + 1}/2]")]
        assert len(epoch_lines) == layer["epochs"] == 50
        assert re.search(r"epoch 50/50  recon \S+  fe_gap \S+ \(\d+\.\ds\)$", epoch_lines[-1])
    finetune_lines = [line for line in lines if line.startswith("finetune epoch")]
    assert len(finetune_lines) == results["finetune"]["epochs"]
    assert "val_acc" in finetune_lines[-1]
    # the summary table, then the test accuracy the run directory holds
    header = lines.index(next(line for line in lines if line.startswith("layer  size")))
    assert lines[header + 1].split()[:3] == ["0", "64->256", "50"]
    assert f"fine-tuned test accuracy: {results['finetune']['test_acc']:.4f}" in out
    assert not any(banner in out + default_job.stderr for banner in BANNERS)
    assert "Warning" not in default_job.stderr and "warn" not in default_job.stderr.lower()


def _run_in_terminal(argv: list[str], cwd) -> tuple[int, str]:
    """Run argv with stdout and stderr on a pseudo-terminal; returns the exit code and everything written."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, cwd=cwd)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=60)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


@pytest.mark.slow
def test_a_terminal_gets_one_live_bar_per_stage_that_stays_when_the_stage_ends(tmp_path):
    exe = shutil.which("dbn-train")
    rc, out = _run_in_terminal([exe, "pretrain.epochs=3", "finetune.epochs=3", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert rc == 0, out[-3000:]
    assert out.count("\r") > 3  # redrawn in place
    final = [line.split("\r")[-1] for line in out.split("\n")]  # what the screen shows at the end
    bars = [line for line in final if "%|" in line]
    assert [b.split(" epoch")[0] for b in bars] == ["pretrain/layer0 [1/2] 64->256", "pretrain/layer1 [2/2] 256->256",
                                                    "finetune"]
    assert all("epoch 3/3" in b and "100%" in b for b in bars)
    assert not any(line.startswith("pretrain/layer0 [1/2] 64->256 epoch 1/3") for line in final)  # no plain lines
    assert any(line.startswith("layer  size") for line in final)


@pytest.mark.parametrize("rich_available", [True, False])
def test_each_stage_gets_our_progress_display_whether_or_not_rich_is_installed(tmp_path, monkeypatch, rich_available):
    """Lightning would pick RichProgressBar when rich is importable; a stage brings its own display instead."""
    monkeypatch.setattr("lightning.pytorch.trainer.connectors.callback_connector._RICH_AVAILABLE", rich_available)
    progress = StageProgress("finetune", {"val_acc": "finetune/val/acc"})
    trainer = build.trainer(make_cfg(tmp_path), "finetune", 3, callbacks=[], progress=progress)
    assert [c for c in trainer.callbacks if isinstance(c, ProgressBar)] == [progress]


def test_the_progress_display_follows_enable_progress_bar_and_yields_to_a_configured_bar(tmp_path):
    from lightning.pytorch.callbacks import TQDMProgressBar

    progress = StageProgress("finetune", {})
    off = build.trainer(make_cfg(tmp_path, "trainer.enable_progress_bar=false"), "finetune", 3, [], progress=progress)
    assert not any(isinstance(c, ProgressBar) for c in off.callbacks)
    theirs = TQDMProgressBar()
    other = build.trainer(make_cfg(tmp_path), "finetune", 3, [theirs], progress=progress)
    assert [c for c in other.callbacks if isinstance(c, ProgressBar)] == [theirs]


def test_process_group_strategies_get_the_collective_timeout():
    for typed, devices in (("ddp", 2), ("auto", 2), ("ddp_spawn", 2)):
        strategy = resolve_strategy(typed, 42, devices=devices)
        assert isinstance(strategy, DDPStrategy) and strategy._timeout == timedelta(seconds=42)
    assert resolve_strategy("auto", 42, devices=1) == "auto"  # one process: nothing to time out
    assert resolve_strategy("auto", 42, devices="auto") == "auto"  # Lightning counts the devices
    mine = DDPStrategy()
    assert resolve_strategy(mine, 42) is mine
    with pytest.raises(ValueError, match="collective_timeout_s must be a positive number"):
        resolve_strategy("ddp", 0)


def test_a_bad_collective_timeout_is_a_config_error_before_training(tmp_path):
    from dbn.errors import ConfigError

    with pytest.raises(ConfigError, match="trainer.collective_timeout_s must be a positive number of seconds, got -1"):
        build.trainer(make_cfg(tmp_path, "trainer.collective_timeout_s=-1"), "finetune", 1)


class _Ranks:
    """What eval_loader asks of a trainer: the world size and this process's rank."""

    def __init__(self, world_size: int, global_rank: int) -> None:
        self.world_size, self.global_rank = world_size, global_rank


@pytest.mark.parametrize("n,world", [(10, 2), (11, 2), (7, 3)])
def test_evaluation_shards_cover_every_row_exactly_once(n, world):
    x = torch.arange(n, dtype=torch.float32)[:, None]
    seen = [row for rank in range(world) for (batch,) in eval_loader(x, batch_size=4, trainer=_Ranks(world, rank))
            for row in batch[:, 0].tolist()]
    assert sorted(seen) == list(range(n))  # DistributedSampler would pad with repeats to a multiple of `world`


def test_summary_table_lines_up_layers_and_reports_fine_tuning():
    results = {"pretrain": [{"layer": 0, "n_visible": 64, "n_hidden": 256, "epochs": 50, "seconds": 9.71,
                             "val/recon_error": 0.009246, "free_energy_gap": 0.4724},
                            {"layer": 1, "n_visible": 256, "n_hidden": 256, "epochs": 50, "seconds": 10.2,
                             "train/recon_error": 0.001129}],
               "finetune": {"epochs": 48, "seconds": 10.4, "best_monitor": "finetune/val/loss", "best_score": 0.1096,
                            "test_acc": 0.97778, "test_loss": 0.0862},
               "wall_time_s": 31.3}
    lines = summary_table(results, "runs/x").splitlines()
    assert lines[0].split("  ")[0] == "layer" and lines[0].index("epochs") == lines[1].index("50")
    assert lines[1].split() == ["0", "64->256", "50", "0.009246", "0.4724", "9.7"]
    assert lines[2].split() == ["1", "256->256", "50", "0.001129", "nan", "10.2"]
    assert lines[3] == "fine-tuning: 48 epochs, best finetune/val/loss 0.1096, 10.4s"
    assert lines[4] == "fine-tuned test accuracy: 0.9778 (test loss 0.0862)"
    assert lines[5] == "run directory: runs/x  (wall time 31.3s)"
