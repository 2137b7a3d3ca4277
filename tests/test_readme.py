"""The README stays true: CI runs its test command, its Python example runs."""

from __future__ import annotations

import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command():
    test_cmd = next(b.strip() for b in code_blocks("bash") if "pytest" in b)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_cmd in ci_lines


def test_python_example_runs_and_its_shapes_hold():
    (example,) = code_blocks("python")
    scope: dict = {}
    torch.manual_seed(0)
    exec(compile(example, "README.md", "exec"), scope)
    assert scope["rbm"].weight.shape == (32, 64)
    assert scope["features"].shape == (512, 16)
    assert scope["v"].shape == (5, 64) and scope["p_h"].shape == (5, 32)
