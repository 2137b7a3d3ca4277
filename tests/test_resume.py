"""Never lose a night of training: kill and resume, SIGTERM, atomic checkpoints, the divergence guard, determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from sklearn.datasets import load_digits

from dbn import DBN, RBM
from dbn.data import PretrainDataModule
from dbn.errors import ConfigError
from dbn.io import atomic_save
from dbn.training import build, pipeline, resume
from dbn.training.pipeline import run
from dbn.training.rbm_module import DivergenceError, RBMModule
from tests.conftest import wait_for_file
from tests.test_train import make_cfg

# layer 1 gets many short epochs, so the test can kill it between two of them
CLI_ARGS = ["model.hidden=[64,32]", "pretrain.epochs=4", "+pretrain.layers.1.epochs=25", "finetune.epochs=10",
            "finetune.optimizer.lr=0.01", "logger=csv"]


def _env() -> dict[str, str]:
    """This environment with tests/ on the path, for the SigtermAt callback (tests/sigterm_at.py)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))}


def _start(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dbn.cli.train", *CLI_ARGS, *extra, f"hydra.run.dir={run_dir}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=run_dir.parent, env=_env())


def _signal_during_layer1(proc: subprocess.Popen, run_dir: Path, sig: int) -> tuple[int, str]:
    """Wait until layer 1 has written its first epoch checkpoint, then send ``sig``."""
    wait_for_file(proc, run_dir / "resume" / "pretrain-layer1-last.ckpt", timeout=240, poll=0.005)
    time.sleep(0.3)  # a few more epochs, so the kill lands somewhere inside layer 1
    proc.send_signal(sig)
    out = proc.communicate(timeout=120)[0]
    return proc.returncode, out


def _resume(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dbn.cli.train", f"resume={run_dir}"], capture_output=True, text=True,
                          cwd=run_dir.parent, timeout=300, env=_env(), check=False)


def _weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "dbn.pt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    proc = _start(run_dir)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    return run_dir


@pytest.mark.slow
def test_sigkill_in_layer_2_resumes_there_and_ends_where_an_uninterrupted_run_ends(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    rc, _ = _signal_during_layer1(_start(run_dir), run_dir, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    before = json.loads((run_dir / "results.json").read_text())
    assert len(before["pretrain"]) == 1 and "finetune" not in before  # killed inside layer 1
    epochs_done = torch.load(run_dir / "resume" / "pretrain-layer1-last.ckpt", weights_only=True)["epoch"]
    assert 0 <= epochs_done < 24

    proc = _resume(run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = json.loads((run_dir / "results.json").read_text())
    assert after["pretrain"][0] == before["pretrain"][0]  # layer 1 of the stack was not retrained (same wall time)
    assert after["pretrain"][1]["resumed_from"] == "pretrain-layer1-last.ckpt" and after["pretrain"][1]["epochs"] == 25
    # epoch checkpoints hold the random state too, so on CPU the resumed run is the uninterrupted run, bit for bit
    reference = json.loads((uninterrupted / "results.json").read_text())
    assert after["finetune"]["test_acc"] == reference["finetune"]["test_acc"] > 0.85
    ref_w, w = _weights(uninterrupted), _weights(run_dir)
    assert ref_w.keys() == w.keys() and all(torch.equal(ref_w[k], w[k]) for k in w)


@pytest.mark.slow
def test_sigkill_in_fine_tuning_resumes_its_learning_rate_schedule_and_ends_where_an_uninterrupted_run_ends(tmp_path):
    """Killed as fine-tuning epoch 3 starts, with a cosine schedule: the resumed run's schedule goes on from epoch 3 and
    the run ends bitwise where the uninterrupted one does (before the fix the schedule resumed one epoch late)."""
    args = ["model.hidden=[32,16]", "pretrain.epochs=2", "finetune.epochs=6", "finetune.optimizer.lr=0.01",
            "finetune.scheduler={_target_:torch.optim.lr_scheduler.CosineAnnealingLR,_partial_:true,T_max:6}"]

    def start(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dbn.cli.train", *args, *extra, f"hydra.run.dir={run_dir}"],
                              check=False, capture_output=True, text=True, cwd=tmp_path, timeout=300, env=_env())

    reference = start(tmp_path / "straight")
    assert reference.returncode == 0, reference.stderr[-3000:]
    killed = start(tmp_path / "run", "+callbacks.finetune.kill={_target_:sigterm_at.KillAt,epoch:3}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    ckpt = torch.load(tmp_path / "run" / "resume" / "finetune-last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["lr_schedulers"][0]["last_epoch"] == 2  # saved before epoch 2's scheduler step
    resumed = _resume(tmp_path / "run")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ref_w, w = _weights(tmp_path / "straight"), _weights(tmp_path / "run")
    assert ref_w.keys() == w.keys() and all(torch.equal(ref_w[k], w[k]) for k in w)


@pytest.mark.slow
def test_sigterm_checkpoints_the_epoch_in_progress_and_exits_143(tmp_path, uninterrupted):
    """SIGTERM after batch 3 of layer 1's epoch 2 (sent by the process itself, so it always lands mid-epoch)."""
    run_dir = tmp_path / "run"
    proc = _start(run_dir, "+callbacks.pretrain.sigterm={_target_:sigterm_at.SigtermAt,layer:1,epoch:2,batch:3}")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 143, out[-3000:]
    assert "stopped by SIGTERM" in out and f"dbn-train resume={run_dir}" in out
    ckpt = torch.load(run_dir / "resume" / "pretrain-layer1-last.ckpt", weights_only=True)
    progress = ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]
    assert progress["completed"] == 2 and progress["started"] == 3  # saved inside epoch 2, not at an epoch's end
    assert ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"] == 4  # batches 0..3

    proc = _resume(run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = json.loads((run_dir / "results.json").read_text())
    assert after["pretrain"][1]["epochs"] == 25
    # the rest of the interrupted epoch sees a fresh shuffle, so only the quality matches the uninterrupted run
    reference = json.loads((uninterrupted / "results.json").read_text())
    assert after["finetune"]["test_acc"] > reference["finetune"]["test_acc"] - 0.06


def test_resume_refuses_a_run_directory_of_another_config(tmp_path):
    run(make_cfg(tmp_path, "finetune=none", "model.hidden=[8]", "pretrain.epochs=1"))
    with pytest.raises(ConfigError, match=r"holds a run of another config \(differs in pretrain\.lr\).*resume="):
        run(make_cfg(tmp_path, "finetune=none", "model.hidden=[8]", "pretrain.epochs=1", "pretrain.lr=0.01"))
    with pytest.raises(ConfigError, match="no dbn-train run there"):
        run(make_cfg(tmp_path / "elsewhere", f"resume={tmp_path / 'elsewhere'}"))


def test_a_finished_run_is_not_run_again(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path, "finetune=none", "model.hidden=[8]", "pretrain.epochs=1")
    first = run(cfg)
    monkeypatch.setattr(pipeline, "pretrain_layers", lambda *a, **k: pytest.fail("retrained a finished run"))
    assert run(cfg) == first


def test_resume_between_layers_trains_only_the_missing_layer_and_matches(tmp_path, monkeypatch):
    """Stop after layer 0 (as if killed), resume: layer 0 is loaded, layer 1 trained, the result is bitwise the same."""
    args = ("finetune=none", "model.hidden=[16,8]", "pretrain.epochs=2")
    reference = run(make_cfg(tmp_path / "ref", *args))

    real = pipeline.pretrain_layers

    def stop_after_layer0(*a, **k):
        layers = real(*a, **k)
        yield next(layers)  # the pipeline saves layer 0 and asks for layer 1: killed
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(pipeline, "pretrain_layers", stop_after_layer0)
    with pytest.raises(KeyboardInterrupt):
        run(make_cfg(tmp_path / "run", *args))
    monkeypatch.setattr(pipeline, "pretrain_layers", real)
    resumed = run(make_cfg(tmp_path / "run", *args))
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in resumed["pretrain"]] == \
           [{k: v for k, v in r.items() if k != "seconds"} for r in reference["pretrain"]]
    a, b = DBN.load(tmp_path / "ref").state_dict(), DBN.load(tmp_path / "run").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_bitwise_identical_weights_and_results(tmp_path):
    args = ("model.hidden=[16,8]", "pretrain.epochs=2", "finetune.epochs=3")
    first, second = run(make_cfg(tmp_path / "a", *args)), run(make_cfg(tmp_path / "b", *args))

    def strip(results: dict) -> dict:  # wall times and paths differ between any two runs
        out = json.loads(json.dumps(results))
        out.pop("wall_time_s")
        for layer in out["pretrain"]:
            layer.pop("seconds")
        for key in ("seconds", "best_checkpoint"):
            out["finetune"].pop(key)
        return out

    assert strip(first) == strip(second)
    a, b = DBN.load(tmp_path / "a").state_dict(), DBN.load(tmp_path / "b").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    third = run(make_cfg(tmp_path / "c", *args, "seed=1"))
    assert strip(third) != strip(first)  # the seed is what decides


def test_saved_model_gives_identical_outputs_in_a_new_process(tmp_path):
    run(make_cfg(tmp_path, "model.hidden=[16,8]", "pretrain.epochs=1", "finetune.epochs=2"))
    x = torch.tensor(load_digits().data[:50] / 16, dtype=torch.float32)
    torch.save(x, tmp_path / "x.pt")
    model = DBN.load(tmp_path)
    code = ("import torch, sys; from dbn import DBN; m = DBN.load(sys.argv[1]); x = torch.load(sys.argv[2]); "
            "torch.save({'features': m.transform(x), 'proba': m.predict_proba(x)}, sys.argv[3])")
    subprocess.run([sys.executable, "-c", code, str(tmp_path), str(tmp_path / "x.pt"), str(tmp_path / "out.pt")],
                   check=True, timeout=120)
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    assert torch.equal(out["features"], model.transform(x)) and torch.equal(out["proba"], model.predict_proba(x))


def test_atomic_save_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = atomic_save({"version": 1}, tmp_path / "model.pt")

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"version": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind


def _digits() -> torch.Tensor:
    return torch.tensor(load_digits().data / 16, dtype=torch.float32)


def test_divergence_keeps_the_last_good_epoch_checkpoint(tmp_path):
    """Weights turn NaN in epoch 2: the guard names layer and epoch, and the checkpoint stays at epoch 1."""

    class Poison(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.current_epoch == 2 and batch_idx == 3:
                with torch.no_grad():
                    module.rbm.weight[0, 0] = float("nan")

    L.seed_everything(0, verbose=False)
    x = _digits()
    module = RBMModule(RBM(64, 16), log_prefix="pretrain/layer0", epochs=5)
    trainer = L.Trainer(max_epochs=5, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, callbacks=[Poison()])
    ckpt = tmp_path / "layer0-last.ckpt"
    resume.attach(trainer, ckpt)
    with pytest.raises(DivergenceError, match=r"pretrain/layer0: .*NaN or infinite in epoch 2; lower the learning rate"):
        trainer.fit(module, datamodule=PretrainDataModule(x[:1500], x[1500:], batch_size=64))
    saved = torch.load(ckpt, weights_only=True)
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())


def test_resumed_fit_equals_an_uninterrupted_fit_bitwise(tmp_path):
    """PCD chains, momentum and learning-rate schedules and the data order all come back from the checkpoint."""
    x = _digits()

    def fit(epochs: int, ckpt: Path) -> RBM:
        L.seed_everything(0, verbose=False)
        rbm = RBM(64, 16)
        module = RBMModule(rbm, persistent=True, epochs=4, lr_schedule="linear", momentum_switch_epoch=2)
        trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                            enable_model_summary=False)
        trainer.fit(module, datamodule=PretrainDataModule(x[:1500], x[1500:], batch_size=32), **resume.attach(trainer, ckpt))
        return rbm

    straight = fit(4, tmp_path / "a.ckpt")
    fit(2, tmp_path / "b.ckpt")  # "killed" after two epochs
    resumed = fit(4, tmp_path / "b.ckpt")
    assert all(torch.equal(p, q) for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads resident memory from /proc (Linux)")
def test_resident_memory_does_not_grow_across_epochs():
    """20 epochs of PCD with validation monitors: what an epoch allocates is given back by the next."""

    class Rss(L.Callback):
        def __init__(self):
            self.mb = []

        def on_train_epoch_end(self, trainer, module):
            self.mb.append(_rss_mb())

    x = _digits()
    rss = Rss()
    module = RBMModule(RBM(64, 64), persistent=True, epochs=20)
    trainer = L.Trainer(max_epochs=20, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, callbacks=[rss])
    trainer.fit(module, datamodule=PretrainDataModule(x[:1500], x[1500:], batch_size=32))
    growth = rss.mb[-1] - rss.mb[2]  # after warm-up (allocator pools, lazy imports) to the last epoch
    assert growth < 8, f"RSS grew by {growth:.1f} MB from epoch 3 to 20: {[round(m) for m in rss.mb]}"


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_tampered_model_and_progress_files_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path in (tmp_path / "dbn.pt", tmp_path / "resume" / "progress.pt"):
        path.parent.mkdir(exist_ok=True)
        torch.save({"format": "dbn/1", "state_dict": _Exploit()}, path)
    with pytest.raises(Exception, match="Weights only load failed|Unsupported global"):
        DBN.load(tmp_path)
    with pytest.raises(Exception, match="Weights only load failed|Unsupported global"):
        resume.Progress(tmp_path).load()
    assert not (tmp_path / "PWNED").exists()


def test_a_resumed_stage_logs_to_a_new_csv_version_and_keeps_the_interrupted_one(tmp_path):
    cfg = make_cfg(tmp_path, "logger=csv")
    assert build.trainer(cfg, "finetune", 1).logger.version == "finetune"
    first = tmp_path / "csv" / "finetune" / "metrics.csv"
    first.parent.mkdir(parents=True)
    first.write_text("epoch,finetune/val/acc\n0,0.5\n")  # what the interrupted attempt logged
    assert build.trainer(cfg, "finetune", 1).logger.version == "finetune-attempt2"
    (tmp_path / "csv" / "finetune-attempt2").mkdir()
    (tmp_path / "csv" / "finetune-attempt2" / "metrics.csv").write_text("epoch\n")
    assert build.trainer(cfg, "finetune", 1).logger.version == "finetune-attempt3"
    assert build.trainer(cfg, "pretrain_layer0", 1).logger.version == "pretrain_layer0"
    assert first.read_text() == "epoch,finetune/val/acc\n0,0.5\n"
