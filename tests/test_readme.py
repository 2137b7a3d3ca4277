"""The README and the getting-started page stay true: CI runs the README's test command, their Python examples run."""

from __future__ import annotations

import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
GETTING_STARTED = (ROOT / "docs" / "getting-started.md").read_text()


def code_blocks(lang: str, text: str = README) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    test_cmd = next(b.strip() for b in code_blocks("bash") if "pytest" in b)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_cmd in ci_lines


def test_python_example_runs_and_its_shapes_hold():
    (example,) = code_blocks("python", GETTING_STARTED)
    scope: dict = {}
    torch.manual_seed(0)
    exec(compile(example, "docs/getting-started.md", "exec"), scope)
    assert scope["rbm"].weight.shape == (32, 64)
    assert scope["features"].shape == (512, 16)
    assert scope["v"].shape == (5, 64) and scope["p_h"].shape == (5, 32)


def test_readme_python_example_trains_towards_the_data():
    (example,) = code_blocks("python")
    scope: dict = {}
    torch.manual_seed(0)
    exec(compile(example, "README.md", "exec"), scope)
    x, rbm, p_h, features = scope["x"], scope["rbm"], scope["p_h"], scope["features"]
    assert rbm.weight.shape == (16, 64)
    assert p_h.shape == (256, 16) and features.shape == (256, 16)
    assert ((p_h > 0) & (p_h < 1)).all() and ((features > 0) & (features < 1)).all()
    assert torch.isfinite(scope["loss"]).all()
    # One epoch of CD-1 on data that are on 30% of the time moves every visible bias below 0 (from 0, where
    # p(v=1) = 0.5), and the model's reconstructions of the data move from 0.5 towards the data's mean
    with torch.no_grad():
        recon = rbm.visible_mean(p_h)
    assert (rbm.visible_bias < 0).all()
    assert float(x.mean()) < float(recon.mean()) < 0.5
