"""Smoke test of the CD-1 benchmark (benchmarks/cd1_throughput.py): it runs end to end and fills every table.

A smoke test only: ``--quick`` runs tiny sizes whose numbers mean nothing, and no speed is checked here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dbn.data import IdxDataModule

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cd1_throughput.py"
ROW_NAMES = (
    "(a) dbn RBMModule + Lightning Trainer",
    "(b) dbn maths, plain PyTorch loop",
    "(c) scikit-learn BernoulliRBM",
    "(d) ceiling",
    "goal (a)/(b) >= 0.95",
    "bf16 vs fp32 reconstruction error",
    "peak RSS (ru_maxrss)",
    "s / (epoch * 1000 samples)",
    "### GPU",
    "(e) autograd formulation",
    "vs fp32 (eager): (a) Lightning",
    "pretrain.compile=true",
    "### Fine-tuning 784-500-500-2000-10",
    "### torch.compile of the CD-1 update",
)


def _numbers(obj, key: str) -> list[float]:
    """Every value stored under ``key`` anywhere in a JSON tree."""
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if k == key] + [n for v in obj.values() for n in _numbers(v, key)]
    if isinstance(obj, list):
        return [n for v in obj for n in _numbers(v, key)]
    return []


@pytest.mark.slow
@pytest.mark.skipif(not all(IdxDataModule(name="fashion_mnist")._paths().values()),
                    reason="needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")
def test_cd1_benchmark_quick_smoke(tmp_path):
    """Smoke test: ``--quick`` exits 0, prints every table's rows and writes positive numbers to its JSON."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    missing = [name for name in ROW_NAMES if name not in proc.stdout]
    assert not missing, f"rows missing from the tables: {missing}\n{proc.stdout}"
    report = json.loads(out.read_text())
    rates = _numbers(report, "samples_per_s")
    assert len(rates) >= 22 and all(r > 0 for r in rates)  # 4 eager configurations x (a)-(e) less bf16's (c), 1 compiled x 3
    assert all(report["finetune"][k] > 0 for k in ("a", "b", "e", "ceiling"))
    assert all(v[k] > 0 for v in report["compile"].values() for k in ("eager", "compiled"))
    assert all(s > 0 for s in _numbers(report, "s_per_epoch")) and len(report["scaling"]["rows"]) == 7
    assert all(m > 0 for m in _numbers(report["memory"], "peak_rss_mib") + _numbers(report["memory"], "rss_mib"))
    assert all(e > 0 for e in _numbers(report["bf16_recon"], "test_recon_error"))


def test_finetune_step_benchmark_runs_and_fused_adam_takes_the_same_steps(monkeypatch, capsys):
    """The fine-tuning step table fills, and fused Adam (the config default) trains the net as torch's default
    Adam does: 50 steps from the same start end within float32 rounding of each other."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import finetune_step
    finally:
        sys.path.remove(str(SCRIPT.parent))
    monkeypatch.setattr(sys, "argv", ["finetune_step.py", "--steps", "2", "--repeats", "1"])
    rows, finals = finetune_step.main()
    assert len(rows) == 4 and all(sec > 0 for _, sec in rows)
    ref, fused = finals["Adam (torch default on CPU)"], finals["Adam fused=True (dbn default)"]
    assert max((a - b).abs().max().item() for a, b in zip(ref, fused)) < 1e-5
    assert "| Adam fused=True (dbn default) |" in capsys.readouterr().out


def test_alternate_runs_a_then_b_each_round_and_drops_the_warmup_epochs():
    """benchmarks.harness.alternate: a, b, a, b, ... over the rounds; each run's first ``warmup`` periods dropped."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import harness
    finally:
        sys.path.remove(str(SCRIPT.parent))
    calls = []

    def run(name):
        def go():
            calls.append(name)
            k = len(calls)
            return {"periods": [100.0 * k, k + 0.1, k + 0.2], "n": k}
        return go

    a, b, a_runs = harness.alternate(run("a"), run("b"), rounds=2, warmup=1)
    assert calls == ["a", "b", "a", "b"]
    assert a == [1.1, 1.2, 3.1, 3.2] and b == [2.1, 2.2, 4.1, 4.2]
    assert [r["n"] for r in a_runs] == [1, 3]
    calls.clear()
    assert harness.alternate(run("a"), run("b"), rounds=0, warmup=0)[0] == [100.0, 1.1, 1.2]  # at least one round


def test_softplus_benchmark_fills_its_table_and_matches_torch_accuracy(tmp_path, capsys):
    """benchmarks/softplus.py: every shape x dtype row, positive times, and dbn's largest error within 1.5x torch's
    (float64 rows: both exact) — the table is where the docs' speed-up of the fast softplus comes from."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import softplus as bench
    finally:
        sys.path.remove(str(SCRIPT.parent))
    result = bench.main(["--repeats", "1", "--seconds", "0.001", "--json", str(tmp_path / "s.json")])
    rows = result["rows"]
    assert len(rows) == len(bench.SHAPES) * len(bench.DTYPES)
    assert all(r["torch_us"] > 0 and r["ours_us"] > 0 for r in rows)
    for r in rows:
        limit = 0.0 if r["dtype"] == "float64" else 1.5 * r["torch_max_abs_err"]
        assert r["ours_max_abs_err"] <= limit, r
    assert json.loads((tmp_path / "s.json").read_text())["rows"] == rows
    assert "| 100 x 500 | float32 |" in capsys.readouterr().out
