"""Scale out through Lightning: DDP on 2 CPU processes (gloo), and the SLURM launcher config for sweeps."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_module

from dbn import DBN
from dbn.data import DigitsDataModule


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_pretrains_and_finetunes_with_identical_ranks(tmp_path):
    run_dir = tmp_path / "run"
    args = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "model.hidden=[64,32]", "pretrain.epochs=3",
            "finetune.epochs=10", "finetune.optimizer.lr=0.01", "callbacks.pretrain.rbm_tensorboard=null",
            "callbacks.pretrain.likelihood=null", "logger=csv", "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run([sys.executable, "-m", "dbn.train", *args], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_dir / "train_ddp_process_1.log").exists()  # Lightning started a second rank
    results = json.loads((run_dir / "results.json").read_text())
    # after every stage each rank's parameters were gathered and compared bit for bit
    assert [layer["identical_across_ranks"] for layer in results["pretrain"]] == [True, True]
    assert results["finetune"]["identical_across_ranks"] is True
    # the model learned: digits with 10 classes (chance 0.1), and the saved DBN reproduces the number
    assert results["finetune"]["test_acc"] > 0.8
    dm = DigitsDataModule(seed=0)
    dm.setup()
    acc = (DBN.load(run_dir).predict(dm.test_x) == dm.test_y).float().mean().item()
    assert acc == pytest.approx(results["finetune"]["test_acc"], abs=1e-6)
    # only rank 0 logs: one metrics file per stage, each with that stage's metrics
    stages = {p.parent.name: p.read_text().splitlines()[0] for p in (run_dir / "csv").rglob("metrics.csv")}
    assert sorted(stages) == ["finetune", "pretrain_layer0", "pretrain_layer1"]
    assert "pretrain/layer1/val/recon_error" in stages["pretrain_layer1"] and "finetune/val/acc" in stages["finetune"]


def test_slurm_launcher_config_composes_for_a_multi_node_sweep():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with initialize_config_module("dbn.conf", version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=gpu", "trainer.devices=4", "trainer.num_nodes=2",
                                          "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.partition) == (2, 4, "gpu")
    assert launcher.max_num_timeout == 3  # resubmission is safe: the run continues in its directory
