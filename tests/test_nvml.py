"""dbn.training.nvml: Lightning's NVML-based CUDA check is dropped only where NVML cannot load."""

import ctypes
import os

import pytest
import torch

import dbn.training  # noqa: F401  (imports Lightning, then applies the fix)
from dbn.training import nvml


@pytest.fixture
def flag(monkeypatch):
    monkeypatch.setenv(nvml.FLAG, "1")
    monkeypatch.setattr(torch.cuda, "_is_compiled", lambda: True)
    monkeypatch.setattr(torch.version, "hip", None)


def test_unset_where_nvml_cannot_load(flag, monkeypatch):
    monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda: -1)
    assert nvml.skip_failing_nvml_probe.__wrapped__() is True
    assert os.environ[nvml.FLAG] == "0"


@pytest.mark.parametrize("count", [0, 2])
def test_kept_where_nvml_answers(flag, monkeypatch, count):
    monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda: count)
    assert nvml.skip_failing_nvml_probe.__wrapped__() is False
    assert os.environ[nvml.FLAG] == "1"


@pytest.mark.skipif(not torch.cuda._is_compiled() or torch.cuda._device_count_nvml() >= 0,
                    reason="needs a CUDA build of torch on a machine where NVML cannot load")
def test_adam_step_loads_no_library(monkeypatch):
    """After ``import dbn.training``, an Adam step on such a machine no longer tries to dlopen NVML."""
    calls = []
    real = ctypes.CDLL.__init__

    def counting(self, name, *args, **kwargs):
        calls.append(name)
        return real(self, name, *args, **kwargs)

    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([w], lr=0.1)
    monkeypatch.setattr(ctypes.CDLL, "__init__", counting)
    for _ in range(3):
        w.grad = torch.ones(3)
        opt.step()
    assert calls == []
    assert w.detach().lt(1).all()  # the steps happened
