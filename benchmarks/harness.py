"""Shared timing pieces of the CD-1 benchmarks: data, the Lightning and plain-loop runs, the matmul ceiling, tables.

Throughput is steady-state: every run trains ``warmup + repeats`` epochs in one fit (one loop),
and the samples/s is the training-set size over the median of the last ``repeats`` epoch periods,
an epoch period being the time from one epoch's end to the next (the first epoch: from its start).
The warm-up epoch takes the one-time costs (lazy imports, allocator, oneDNN / cuBLAS set-up) out
of the number; the Lightning fit's fixed cost (set-up and tear-down) is reported on its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor

N_PRODUCTS = 5  # products of one CD-1 step: c + W·v_data, reconstruction, c + W·v_model, two weight gradients
PRECISIONS = {"fp32": ("32-true", torch.float32), "bf16": ("bf16-mixed", torch.bfloat16)}


def quiet() -> None:
    """Keep Lightning's banners (stderr) and the small-data warnings out of the output."""
    import lightning  # noqa: F401  its import sets its loggers to INFO: set them after it

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*Tensor Cores.*")


def progress(msg: str) -> None:
    """Where a long run is; stderr, so stdout holds only the tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_fashion_mnist(limit: int | None = None, labels: bool = False, root: str | None = None) -> tuple[Tensor, ...]:
    """Fashion-MNIST (first ``limit`` training images, test images) as float32 (n, 784) in [0, 1]; with ``labels``,
    also the training labels. ``root``: the idx files' folder (default: ``data=fashion_mnist``'s)."""
    from dbn.data import IdxDataModule

    dm = IdxDataModule(name="fashion_mnist", root=root, val_fraction=0.0, limit=limit)
    dm.setup()
    return (dm.train_x, dm.test_x, dm.train_y) if labels else (dm.train_x, dm.test_x)


def cd1_flops(n_visible: int, hidden: int) -> int:
    """FLOPs of one CD-1 sample's maths: 5 products of 2·n_visible·hidden (elementwise work left out)."""
    return N_PRODUCTS * 2 * n_visible * hidden


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def steady_rate(n: int, periods: list[float], warmup: int) -> float:
    """Samples/s from the median epoch period after ``warmup`` epochs."""
    timed = periods[warmup:] or periods
    return n / statistics.median(timed)


def alternate(run_a, run_b, rounds: int, warmup: int, label: str = "") -> tuple[list[float], list[float], list[dict]]:
    """Epoch periods of ``run_a()`` and ``run_b()`` (each returns ``{"periods": [...], ...}``) over ``rounds``
    rounds, a then b in each, so that a drift of the machine hits both alike (one epoch of either swings by up
    to 25% on a shared machine); the first ``warmup`` epochs of every run are dropped. Also returns a's results."""
    a_periods, b_periods, a_runs = [], [], []
    for i in range(max(rounds, 1)):
        if label:
            progress(f"{label}: round {i + 1} of {max(rounds, 1)}")
        a_runs.append(run_a())
        a_periods += a_runs[-1]["periods"][warmup:]
        b_periods += run_b()["periods"][warmup:]
    return a_periods, b_periods, a_runs


# --- (a) Lightning -----------------------------------------------------------------------------------
def _epoch_clock():
    import lightning as L

    class EpochClock(L.Callback):
        """Marks the first epoch's start and every epoch's end (after a device sync): periods = differences."""

        def __init__(self) -> None:
            self.marks: list[float] = []

        def _mark(self, pl_module) -> None:
            synchronize(pl_module.device)
            self.marks.append(time.perf_counter())

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if not self.marks:
                self._mark(pl_module)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self._mark(pl_module)

        @property
        def periods(self) -> list[float]:
            return [b - a for a, b in zip(self.marks, self.marks[1:])]

    return EpochClock()


def _conf(name: str):
    """A file of the project's conf/ (the defaults a user gets)."""
    from omegaconf import OmegaConf

    return OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / name)


def steps_per_batch_default() -> int:
    """``pretrain.steps_per_batch`` of conf/pretrain/default.yaml: the updates per Lightning batch a user gets."""
    return int(_conf("pretrain/default.yaml").steps_per_batch)


def lightning_run(x: Tensor, hidden: int, batch: int, epochs: int, seed: int = 0, precision: str = "fp32",
                  device: str = "cpu", callbacks: tuple = (), steps_per_batch: int | None = None,
                  compile: bool = False) -> dict:
    """Train RBMModule (its defaults: CD-1, lr 0.05, momentum 0.5, weight decay 2e-4) through Lightning's Trainer.

    ``steps_per_batch`` updates of ``batch`` rows per Lightning batch (default: the config's, as ``dbn-train`` runs).
    Returns the epoch periods (s), the fit's fixed cost (wall time of ``fit`` minus the epochs), the module
    and the trainer's last logged metrics.
    """
    import lightning as L

    from dbn.data import PretrainDataModule
    from dbn.rbm import RBM
    from dbn.training.rbm_module import RBMModule

    torch.manual_seed(seed)
    steps = steps_per_batch_default() if steps_per_batch is None else steps_per_batch
    module = RBMModule(RBM(x.shape[1], hidden), epochs=epochs, log_prefix="bench", batch_size=batch,
                       steps_per_batch=steps, compile=compile)
    clock = _epoch_clock()
    trainer = L.Trainer(max_epochs=epochs, precision=PRECISIONS[precision][0], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, log_every_n_steps=25,  # conf/trainer/default.yaml's
                        accelerator="gpu" if torch.device(device).type == "cuda" else "cpu", devices=1,
                        callbacks=[clock, *callbacks])
    t = time.perf_counter()
    trainer.fit(module, datamodule=PretrainDataModule(x, None, module.loader_batch_size))
    synchronize(device)
    fit_s = time.perf_counter() - t
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    overhead = fit_s - sum(clock.periods)
    return {"periods": clock.periods, "fit_overhead_s": overhead, "module": module, "metrics": metrics}


# --- (b) the same maths in a plain loop --------------------------------------------------------------------
def _optimizer_like_module(rbm, lr: float = 0.05, momentum: float = 0.5, weight_decay: float = 2e-4):
    """RBMModule.configure_optimizers written out: SGD with momentum, weight decay on the weights only."""
    biases = [p for p in (rbm.visible_bias, rbm.hidden_bias, rbm.log_variance) if p is not None]
    groups = [{"params": [rbm.weight], "weight_decay": weight_decay}, {"params": biases, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def check_same_optimizer(rbm, opt) -> None:
    """Fail loudly if RBMModule's optimizer set-up drifts from the plain loop's (the comparison would lie)."""
    from dbn.training.rbm_module import RBMModule

    ref = RBMModule(rbm, epochs=1).configure_optimizers()
    keys = ("lr", "momentum", "weight_decay", "dampening", "nesterov", "maximize")
    ours = [({k: g[k] for k in keys}, [id(p) for p in g["params"]]) for g in opt.param_groups]
    theirs = [({k: g[k] for k in keys}, [id(p) for p in g["params"]]) for g in ref.param_groups]
    if type(opt) is not type(ref) or ours != theirs:
        raise RuntimeError(f"plain loop's optimizer {ours} differs from RBMModule's {theirs}; "
                           "update benchmarks/harness.py")


def plain_run(x: Tensor, hidden: int, batch: int, epochs: int, seed: int = 0, precision: str = "fp32",
              device: str = "cpu", autograd: bool = False, compiled: bool = False) -> dict:
    """RBMModule's work without Lightning: CD-1 updates (``dbn.update.cd_update``), the recon-error monitor.

    bf16 runs every update on a bfloat16 working copy of the RBM (``cd_update(dtype=torch.bfloat16)``), as
    RBMModule does under ``Trainer(precision="bf16-mixed")``. The monitors (free-energy difference, recon error)
    are measured on one update in ``steps_per_batch``, as RBMModule measures them (the config's default). ``autograd=True`` is the formulation before
    issue 14, kept as a reference row: the free-energy surrogate ``cd_loss`` and ``backward`` (bf16 under
    ``torch.autocast`` without its cast cache, as Lightning's plugin runs it), then torch's SGD step.
    ``compiled=True`` runs ``dbn.update.compiled_cd_update()`` (inductor), as ``RBMModule(compile=True)``: each
    compiled fit compiles afresh, as a new ``dbn-train`` layer does.
    """
    from dbn.rbm import RBM
    from dbn.sampling import cd_loss, contrastive_divergence
    from dbn.training.rbm_module import squared_error
    from dbn.training.schedules import momentum_at
    from dbn.update import cd_update, compiled_cd_update

    torch.manual_seed(seed)
    rbm = RBM(x.shape[1], hidden).to(device)
    x = x.to(device)
    opt = _optimizer_like_module(rbm)
    check_same_optimizer(rbm, opt)
    dtype = PRECISIONS[precision][1]
    device_type = torch.device(device).type
    every = steps_per_batch_default()

    run_update = compiled_cd_update() if compiled else cd_update  # as RBMModule(compile=True) does

    def update(v: Tensor, monitor: bool):
        step, loss = run_update(rbm, v, opt, dtype=dtype, monitor=monitor)
        return loss, None if loss is None else squared_error(v, step.recon).mean()

    synchronize(device)
    marks = [time.perf_counter()]
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["momentum"] = momentum_at(epoch, 0.5, 0.9, 5)
        sums = None
        for i, idx in enumerate(torch.randperm(len(x), device=x.device).split(batch)):
            v = x[idx]
            if autograd:
                autocast = torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=False) \
                    if precision == "bf16" else contextlib.nullcontext()
                with autocast:
                    step = contrastive_divergence(rbm, v)
                    loss = cd_loss(rbm, step)
                    recon = squared_error(v, step.recon).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss = loss.detach()
            else:
                loss, recon = update(v, i % every == 0)
                if loss is None:
                    continue
            values = torch.stack([loss.float(), recon.float(), torch.ones_like(recon, dtype=torch.float32)])
            sums = values if sums is None else sums + values
        if not bool(torch.isfinite(sums).all() & rbm.is_finite()):  # its divergence check, one sync an epoch
            raise RuntimeError(f"plain loop diverged in epoch {epoch}")
        synchronize(device)
        marks.append(time.perf_counter())
    return {"periods": [b - a for a, b in zip(marks, marks[1:])], "rbm": rbm}


# --- fine-tuning: the 784-500-500-2000-10 net, Lightning vs a plain loop -----------------------------------------
FINETUNE_SIZES = (784, 500, 500, 2000)


def finetune_flops(sizes=FINETUNE_SIZES, n_classes: int = 10) -> int:
    """FLOPs of one sample's fine-tuning step: forward, and backward's two products per layer (3 x 2 x weights)."""
    weights = sum(a * b for a, b in zip(sizes, sizes[1:])) + sizes[-1] * n_classes
    return 3 * 2 * weights


def _finetune_net(seed: int):
    from dbn import DBN

    torch.manual_seed(seed)
    return DBN(list(FINETUNE_SIZES), n_classes=10)


def finetune_lightning_run(x: Tensor, y: Tensor, batch: int, epochs: int, seed: int = 0) -> dict:
    """FineTuneModule as ``dbn-train`` builds it (fused Adam lr 1e-3, dropout 0.2: conf/finetune) through a Trainer."""
    import lightning as L

    from dbn.data.base import batch_loader
    from dbn.training.finetune import FineTuneModule

    steps = int(_conf("finetune/default.yaml").steps_per_batch)
    module = FineTuneModule(_finetune_net(seed), dropout=0.2, batch_size=batch, steps_per_batch=steps)
    clock = _epoch_clock()
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, log_every_n_steps=25,
                        accelerator="cpu", devices=1, callbacks=[clock])
    trainer.fit(module, train_dataloaders=batch_loader(x, y, batch_size=module.loader_batch_size, shuffle=True))
    return {"periods": clock.periods}


def finetune_plain_run(x: Tensor, y: Tensor, batch: int, epochs: int, seed: int = 0, autograd: bool = False) -> dict:
    """The same net and work in a plain loop: dropout 0.2, cross-entropy, fused Adam, the epoch's loss and accuracy.

    The gradient as FineTuneModule takes it for this net (``dbn.backprop.cross_entropy_backward``), or with
    ``autograd`` by ``loss.backward()`` (the same numbers, bit for bit, recorded and walked as a graph)."""
    import torch.nn.functional as F

    from dbn.backprop import cross_entropy_backward

    net = _finetune_net(seed).train()
    for rbm in net.layers:  # as FineTuneModule.setup: the feed-forward net does not use them
        rbm.visible_bias.requires_grad_(False)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3, fused=True)
    marks = [time.perf_counter()]
    for _ in range(epochs):
        sums = torch.zeros(3)
        for idx in torch.randperm(len(x)).split(batch):
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            if autograd:
                logits = net(xb, dropout=0.2)
                loss = F.cross_entropy(logits, yb)
                loss.backward()
            else:
                loss, logits = cross_entropy_backward(net, xb, yb, dropout=0.2)
            opt.step()
            sums += torch.stack([loss.detach() * len(yb), (logits.argmax(1) == yb).sum(), torch.tensor(float(len(yb)))])
        float(sums[0])  # the epoch's loss, read once
        marks.append(time.perf_counter())
    return {"periods": [b - a for a, b in zip(marks, marks[1:])]}


# --- (d) the ceiling ------------------------------------------------------------------------------------------
def matmul_rate(n_visible: int, hidden: int, batch: int, dtype: torch.dtype = torch.float32, device: str = "cpu",
                seconds: float = 1.0, repeats: int = 3) -> float:
    """Median FLOP/s over ``repeats`` windows of ~``seconds`` of CD-1's three product shapes.

    (batch, n_visible)·(n_visible, hidden), (batch, hidden)·(hidden, n_visible) and
    (hidden, batch)·(batch, n_visible), each 2·batch·n_visible·hidden FLOPs.
    """
    g = torch.Generator(device=device).manual_seed(0)
    a, w, h = (torch.rand(shape, generator=g, device=device).to(dtype)
               for shape in ((batch, n_visible), (hidden, n_visible), (batch, hidden)))

    return median_rate(lambda i: (a @ w.T, h @ w, h.T @ a), 3 * 2 * batch * n_visible * hidden, device, seconds,
                       repeats)


def median_rate(call, work_per_call: float, device: str, seconds: float = 1.0, repeats: int = 3) -> float:
    """Median of ``work_per_call`` x calls per second over ``repeats`` windows of ~``seconds``.

    ``call(i)`` is called with a running index, 10 times to warm up, then in bursts of 10 with a device
    synchronisation after each burst.
    """
    for i in range(10):
        call(i)
    synchronize(device)
    rates, i = [], 0
    for _ in range(max(repeats, 1)):
        reps, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds:
            for _ in range(10):
                call(i)
                i += 1
            synchronize(device)
            reps += 10
        rates.append(reps * work_per_call / (time.perf_counter() - t))
    return statistics.median(rates)


def step_products_rate(x: Tensor, hidden: int, batch: int, dtype: torch.dtype = torch.float32, device: str = "cpu",
                       seconds: float = 1.0, repeats: int = 3) -> float:
    """Samples/s of a CD-1 step's four product calls alone, as ``cd_update`` makes them, on minibatches of ``x``.

    c + v·Wᵀ, b + h·W, c + v'·Wᵀ (``addmm``) and the stacked weight gradient [g; g']ᵀ [v; v'] written into a
    preallocated tensor, on shuffled data rows and fresh outputs: what the step's products cost where they
    run, with the sigmoids, sampling, monitors and the SGD update left out. Against :func:`matmul_rate`
    (the same shapes hot in cache, no bias) it shows how much slower the products run inside a step;
    against the plain loop (b), what the rest of the step costs. Median over ``repeats`` windows.
    """
    g = torch.Generator(device="cpu").manual_seed(0)
    x = x.to(device=device, dtype=dtype)
    w = (torch.randn(hidden, x.shape[1], generator=g) * 0.01).to(device=device, dtype=dtype)
    b, c = torch.zeros(x.shape[1], device=device, dtype=dtype), torch.zeros(hidden, device=device, dtype=dtype)
    grad = torch.empty_like(w)
    order = torch.randperm(len(x), generator=g).to(device)
    batches = [order[i:i + batch] for i in range(0, len(x) - batch + 1, batch)]

    def step(i: int) -> None:
        v = x[batches[i % len(batches)]]
        pre = torch.addmm(c, v, w.T)
        v1 = torch.addmm(b, pre, w)
        pre1 = torch.addmm(c, v1, w.T)
        torch.mm(torch.cat([pre, pre1]).T, torch.cat([v, v1]), out=grad)

    return median_rate(step, batch, device, seconds, repeats)


# --- (c) scikit-learn -------------------------------------------------------------------------------------------
SKLEARN = r"""
import json, sys, time, numpy as np
from threadpoolctl import threadpool_info
from sklearn.neural_network import BernoulliRBM
x = np.load(sys.argv[1]); hidden, batch, repeats = map(int, sys.argv[2:5])
BernoulliRBM(n_components=hidden, batch_size=batch, n_iter=1, random_state=0).fit(x[:2000])  # warm-up: BLAS threads
times = []
for r in range(repeats):
    rbm = BernoulliRBM(n_components=hidden, batch_size=batch, n_iter=1, learning_rate=0.05, random_state=r)
    t = time.perf_counter(); rbm.fit(x); times.append(time.perf_counter() - t)
info = [{k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")} for i in threadpool_info()]
print(json.dumps({"times": times, "blas": info}))
"""


def sklearn_run(x: Tensor, hidden: int, batch: int, repeats: int) -> dict:
    """scikit-learn's BernoulliRBM, one epoch (n_iter=1) per fit, in a subprocess without OPENBLAS_CORETYPE / _L2_SIZE.

    Those two variables pin OpenBLAS's kernels on some machines; unset for this subprocess only, so
    scikit-learn runs with the kernels OpenBLAS picks itself (threadpoolctl's ``architecture``).
    """
    import subprocess
    import tempfile

    import numpy as np

    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npy"
        np.save(path, x.cpu().numpy())  # float32: scikit-learn keeps the dtype
        out = subprocess.run([sys.executable, "-c", SKLEARN, str(path), str(hidden), str(batch), str(max(repeats, 1))],
                             capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"scikit-learn subprocess failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["samples_per_s"] = len(x) / statistics.median(result["times"])
    return result


def blas_summary(info: list[dict]) -> str:
    """threadpoolctl's libraries as 'openblas 0.3.27 SkylakeX x2 threads; openmp x2 threads'."""
    parts = []
    for i in info:
        words = [str(i.get(k)) for k in ("internal_api", "version", "architecture") if i.get(k)]
        parts.append(" ".join(words) + f" x{i.get('num_threads')} threads")
    return "; ".join(dict.fromkeys(parts))


# --- memory ---------------------------------------------------------------------------------------------------
def peak_rss_mib() -> float:
    """The process's peak resident set so far, ``getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Start ru_maxrss afresh from the current RSS (Linux: 5 > /proc/self/clear_refs); False where that is refused.

    Without it the peak would be the process's whole past (imports, loading the data set), which a fit
    may never reach again, so that growth during the fit could not show.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def current_rss_mib() -> float:
    """Resident set now: second field of /proc/self/statm, in pages."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- output --------------------------------------------------------------------------------------------------------
def markdown(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | None, obj: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(obj, indent=2, default=_jsonable))


def _jsonable(obj):
    if isinstance(obj, Tensor):
        return obj.tolist()
    return str(obj)


def machine() -> dict:
    """What the numbers were measured on."""
    cpu, flags = "unknown", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    # what decides the bf16 rows: AVX-512 BF16 (dot products) and AMX (tile units, Intel only)
    isa = sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"))
    out = {"cpu": cpu, "cores": os.cpu_count(), "isa": isa, "torch": torch.__version__,
           "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    return out
