from __future__ import annotations

import ipaddress
import itertools
import re
import shlex
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from dbn.rbm import RBM


def all_binary(n: int, dtype=torch.float64) -> torch.Tensor:
    """Every binary vector of length n, (2**n, n)."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=dtype)


def random_rbm(n_visible: int, n_hidden: int, scale: float = 1.0, seed: int = 0, dtype=torch.float64) -> RBM:
    """A tiny RBM with weights and biases large enough to make every term matter."""
    g = torch.Generator().manual_seed(seed)
    rbm = RBM(n_visible, n_hidden).to(dtype)
    with torch.no_grad():
        rbm.weight.copy_(torch.randn(n_hidden, n_visible, generator=g, dtype=dtype) * scale)
        rbm.visible_bias.copy_(torch.randn(n_visible, generator=g, dtype=dtype) * scale)
        rbm.hidden_bias.copy_(torch.randn(n_hidden, generator=g, dtype=dtype) * scale)
    return rbm


def _is_local(host) -> bool:
    if host in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests never download (no internet here or in CI): a connection from the test process to anything but this
    machine fails the test at once, where a download would otherwise hang or pass only where the network is up.
    Loopback stays open (Lightning's and torch.distributed's rendezvous on localhost)."""
    for name in ("connect", "connect_ex"):
        real = getattr(socket.socket, name)

        def guarded(self, address, _real=real):
            if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
                raise AssertionError(f"a test tried to connect to {address}: tests must never use the network")
            return _real(self, address)

        monkeypatch.setattr(socket.socket, name, guarded)


@pytest.fixture
def tiny_rbm() -> RBM:
    return random_rbm(5, 3)


# --- the README's commands, run as a user types them ---------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def readme_command(startswith: str) -> list[str]:
    """The first command line in README.md's bash blocks that starts with ``startswith`` (comment and `&&` prefix cut)."""
    readme = (ROOT / "README.md").read_text()
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
        for line in block.splitlines():
            line = line.split("#")[0].strip().split("&&")[-1].strip()
            if line.startswith(startswith):
                return shlex.split(line)
    raise AssertionError(f"README.md has no command starting with {startswith!r}")


@dataclass
class Job:
    """A finished command: its run directory, exit code and what it printed."""

    run_dir: Path | None
    returncode: int
    stdout: str
    stderr: str


def run_as_typed(argv: list[str], cwd: Path, timeout: float = 900, env: dict | None = None) -> Job:
    """Run a ``dbn-train ...`` command line in ``cwd`` with stdout and stderr going to files (not a terminal)."""
    exe = shutil.which(argv[0])
    assert exe is not None, f"{argv[0]} is not on PATH: install the project (pip install -e .)"
    out, err = cwd / "stdout.txt", cwd / "stderr.txt"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.run([exe, *argv[1:]], stdout=o, stderr=e, cwd=cwd, timeout=timeout, env=env)
    runs = sorted((cwd / "outputs").glob("*/*"))  # Hydra's outputs/DATE/TIME
    return Job(runs[-1] if runs else None, proc.returncode, out.read_text(), err.read_text())


def wait_for_file(proc: subprocess.Popen, path: Path, timeout: float, poll: float = 0.01) -> None:
    """Wait until ``path`` exists while ``proc`` runs; fail the test (killing ``proc``) if it ends or time runs out first."""
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path.name} never appeared: {proc.communicate()[0][-3000:]}")
        time.sleep(poll)


@pytest.fixture(scope="session")
def default_job(tmp_path_factory) -> Job:
    """The README's main job, ``dbn-train`` as typed, on one process (about 40 s on 2 cores)."""
    return run_as_typed(readme_command("dbn-train"), tmp_path_factory.mktemp("default_job"))
