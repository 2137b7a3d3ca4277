"""Scale out through Lightning: the README's DDP command as typed (2 CPU processes, gloo), SIGTERM, a stuck collective.

Every run here is the command a user types, with its defaults: progress display,
TensorBoard, the pictures and likelihood callbacks, early stopping. Lightning's own
progress bars (Rich and TQDM) are tried explicitly as well, because a progress bar
that reads metrics on rank 0 only is what used to deadlock these runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from dbn import DBN
from dbn.data import DigitsDataModule
from tests.conftest import ROOT, readme_command, run_as_typed, wait_for_file

DDP = "dbn-train trainer=ddp trainer.accelerator=cpu trainer.devices=2"
WITHOUT_RICH = str(ROOT / "tests" / "without_rich")  # a sitecustomize that hides rich from every rank


def _env(*paths: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}


def _check_ddp_run(job, single) -> dict:
    assert job.returncode == 0, job.stderr[-3000:]
    run_dir = job.run_dir
    assert (run_dir / "train_ddp_process_1.log").exists()  # Lightning started a second rank
    results = json.loads((run_dir / "results.json").read_text())
    # after every stage each rank's parameters were compared bit for bit
    assert [layer["identical_across_ranks"] for layer in results["pretrain"]] == [True, True]
    assert results["finetune"]["identical_across_ranks"] is True
    # the likelihood monitor ran on every rank alike; rank 0 wrote its numbers
    assert all("val/log_likelihood" in layer and "log_z" in layer for layer in results["pretrain"])
    # the saved DBN reproduces the number, and two processes learn as well as one (digits default)
    dm = DigitsDataModule(seed=0)
    dm.setup()
    acc = (DBN.load(run_dir).predict(dm.test_x) == dm.test_y).float().mean().item()
    assert acc == pytest.approx(results["finetune"]["test_acc"], abs=1e-6)
    reference = json.loads((single.run_dir / "results.json").read_text())["finetune"]["test_acc"]
    assert abs(acc - reference) <= 0.015, (acc, reference)
    # the summary is printed once (by rank 0), and no rank printed a Python traceback
    assert job.stdout.count("fine-tuned test accuracy:") == 1
    assert "Traceback" not in job.stderr
    return results


@pytest.mark.slow
@pytest.mark.parametrize("rich", ["installed", "not installed"])
def test_readme_ddp_command_as_typed_finishes_with_the_default_progress_display(tmp_path, default_job, rich):
    argv = readme_command(DDP)
    if rich == "installed":
        pytest.importorskip("rich")
    env = _env(WITHOUT_RICH) if rich == "not installed" else _env()
    job = run_as_typed(argv, tmp_path, timeout=900, env=env)
    _check_ddp_run(job, default_job)
    # one line per epoch per stage from rank 0 (stdout is a file here, not a terminal)
    assert sum(line.startswith("pretrain/layer0 [1/2]") for line in job.stdout.splitlines()) == 50
    assert "\r" not in job.stdout


@pytest.mark.slow
def test_ddp_with_batch_normalised_fine_tuning_keeps_the_ranks_identical(tmp_path):
    """finetune.batch_norm under DDP: each rank updates the running statistics from its own batches; they are
    averaged before every validation and before folding, else each rank validated and folded its own (the ranks'
    parameters differed after fine-tuning)."""
    job = run_as_typed([*readme_command(DDP), "finetune.batch_norm=identity"], tmp_path, timeout=900, env=_env())
    assert job.returncode == 0, job.stderr[-3000:]
    results = json.loads((job.run_dir / "results.json").read_text())
    assert results["finetune"]["identical_across_ranks"] is True
    dm = DigitsDataModule(seed=0)
    dm.setup()
    acc = (DBN.load(job.run_dir).predict(dm.test_x) == dm.test_y).float().mean().item()
    assert acc == pytest.approx(results["finetune"]["test_acc"], abs=1e-6) and acc > 0.9
    assert "Traceback" not in job.stderr


@pytest.mark.slow
@pytest.mark.parametrize("bar", ["RichProgressBar", "TQDMProgressBar"])
def test_ddp_with_lightnings_own_progress_bars(tmp_path, default_job, bar):
    """Lightning's bars read the metrics on rank 0 alone; the modules' values are synced already, so nothing waits."""
    if bar == "RichProgressBar":
        pytest.importorskip("rich")
    node = f"{{_target_:lightning.pytorch.callbacks.{bar}}}"
    argv = [*readme_command(DDP), f"+callbacks.pretrain.bar={node}", f"+callbacks.finetune.bar={node}", "logger=csv"]
    job = run_as_typed(argv, tmp_path, timeout=900, env=_env())
    _check_ddp_run(job, default_job)
    # only rank 0 logs: one metrics file per stage, each with that stage's epoch metrics, synced over ranks
    stages = {p.parent.name: p.read_text().splitlines()[0] for p in (job.run_dir / "csv").rglob("metrics.csv")}
    assert sorted(stages) == ["finetune", "pretrain_layer0", "pretrain_layer1"]
    assert "pretrain/layer1/val/recon_error" in stages["pretrain_layer1"] and "finetune/val/acc" in stages["finetune"]


def _processes_of(run_dir: Path) -> list[int]:
    """Pids of live processes whose command line mentions ``run_dir`` (both ranks pass it as hydra.run.dir)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(run_dir) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_sigterm_to_the_launching_process_stops_every_rank_and_resume_finishes(tmp_path):
    run_dir = tmp_path / "run"
    argv = [*readme_command(DDP), f"hydra.run.dir={run_dir}"]
    exe = shutil.which(argv[0])
    launcher = subprocess.Popen([exe, *argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    wait_for_file(launcher, run_dir / "resume" / "pretrain-layer1-last.ckpt", timeout=600, poll=0.05)  # layer 1 runs
    assert len(_processes_of(run_dir)) == 2  # both ranks are training layer 1
    launcher.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    out = launcher.communicate(timeout=60)[0]
    while _processes_of(run_dir) and time.monotonic() - sent < 30:
        time.sleep(0.1)
    assert not _processes_of(run_dir), "a rank outlived the SIGTERM by 30 s"
    assert launcher.returncode == 143, out[-3000:]
    assert f"continue with: dbn-train resume={run_dir}" in out
    results = json.loads((run_dir / "results.json").read_text())
    assert len(results["pretrain"]) == 1 and "finetune" not in results  # stopped inside layer 1

    resumed = subprocess.run([exe, f"resume={run_dir}"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = json.loads((run_dir / "results.json").read_text())
    assert after["pretrain"][1]["resumed_from"] == "pretrain-layer1-last.ckpt" and after["pretrain"][1]["epochs"] == 50
    assert after["finetune"]["test_acc"] > 0.9


@pytest.mark.slow
def test_a_collective_started_by_rank_zero_alone_fails_within_the_timeout_instead_of_hanging(tmp_path):
    timeout_s = 15
    mismatch = "{_target_:collective_mismatch.RankZeroAllReduce,epoch:1}"
    argv = [*readme_command(DDP), f"trainer.collective_timeout_s={timeout_s}", f"+callbacks.pretrain.mismatch={mismatch}"]
    start = time.monotonic()
    job = run_as_typed(argv, tmp_path, timeout=300, env=_env())
    elapsed = time.monotonic() - start
    assert job.returncode == 4, job.stderr[-3000:]
    assert "dbn-train: error: pretrain/layer0: a collective operation across processes failed" in job.stderr
    assert "Traceback" not in job.stderr
    # start-up (two interpreters, Hydra, the data) plus one epoch plus the timeout, not a hang
    assert elapsed < timeout_s + 120
    assert not _processes_of(job.run_dir)


def test_slurm_launcher_config_composes_for_a_multi_node_sweep():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with initialize_config_module("dbn.conf", version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=gpu", "trainer.devices=4", "trainer.num_nodes=2",
                                          "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.partition) == (2, 4, "gpu")
    assert launcher.max_num_timeout == 3  # resubmission is safe: the run continues in its directory


@pytest.mark.slow
def test_conv_stack_under_ddp_keeps_ranks_identical(tmp_path):
    """model=conv on 2 CPU processes: the conv layer's averaged update keeps every rank's filters bit-identical."""
    argv = [*readme_command(DDP), "model=conv", "pretrain.epochs=3", "finetune.epochs=5"]
    job = run_as_typed(argv, tmp_path, timeout=900, env=_env())
    assert job.returncode == 0, job.stderr[-3000:]
    results = json.loads((job.run_dir / "results.json").read_text())
    assert [layer["identical_across_ranks"] for layer in results["pretrain"]] == [True, True]
    assert results["finetune"]["identical_across_ranks"] is True
    assert DBN.load(job.run_dir).layers[0].convolutional
