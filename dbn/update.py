"""One explicit CD-k / PCD-k update: the chain, the closed-form gradient, and torch SGD's step applied by hand.

torch.optim.SGD (dampening 0, no Nesterov) updates a parameter p with gradient g as

    d = g + λ p,    u ← μ u + d,    p ← p - η u,

with its momentum buffer u kept in ``optimizer.state[p]["momentum_buffer"]``. Here the weight
gradient's product writes into one flat gradient tensor (:func:`~dbn.sampling.cd_gradients`),
and three W-sized passes apply it (u ← g + μ u, u += λ W, W -= η u) without the per-call
overhead of ``optimizer.step`` (about a third of a millisecond on a 2-core CPU, a tenth of a
CD-1 update at batch 100). Writing the product into u directly (``addmm`` with β = μ) was
measured slower on CPU: the GEMM's β pass costs more than a separate elementwise pass. The
arithmetic and the state are torch's SGD's: the optimizer object holds the learning rate,
momentum, weight decay (per group) and the buffers, so checkpoints, resume and schedules see
an ordinary SGD.

Under several processes the gradient is averaged before it enters the momentum: ``average``
gets one flat tensor holding every parameter's gradient (one all-reduce per update).

Mixed precision: with ``dtype`` lower than the parameters' (bfloat16), the chain and the products
run on :meth:`~dbn.rbm.RBM.working_copy`, cast once per update; the gradient is added to the
float32 momentum and weights.

The maths imports only torch (see STYLE.md): a plain loop, a notebook and RBMModule share it.

References:
    Hinton (2002), CD; Tieleman (2008), PCD; Hinton (2010), "A practical guide to training RBMs" (momentum, decay).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from functools import lru_cache, partial
from typing import NamedTuple

import torch
from torch import Tensor

from dbn.centering import Offsets, center_gradient, centered_bias_step
from dbn.rbm import RBM
from dbn.sampling import CDStep, cd_gradients, contrastive_divergence


@torch.no_grad()
def cd_update(
    rbm: RBM,
    v: Tensor,
    optimizer: torch.optim.SGD,
    k: int = 1,
    chains: Tensor | None = None,
    sample_visible: bool = False,
    mask: Tensor | None = None,
    sparsity: Callable[[Tensor], Tensor] | None = None,
    dtype: torch.dtype | None = None,
    average: Callable[[Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
    monitor: bool = True,
    offsets: Offsets | None = None,
    compiled_step: Callable[..., tuple[CDStep, Tensor | None]] | None = None,
) -> tuple[CDStep, Tensor | None]:
    """One SGD step with momentum on the CD-k (or PCD-k, with ``chains``) gradient of minibatch ``v``.

    Args:
        rbm: the model, updated in place.
        v: (batch, n_visible) data, in the parameters' dtype.
        optimizer: a ``torch.optim.SGD`` over ``rbm``'s parameters (dampening 0, no Nesterov): its groups give
            lr, momentum and weight decay, its state the momentum buffers (made on the first update).
        k, sample_visible, mask, generator: as :func:`~dbn.sampling.contrastive_divergence`.
        chains: persistent chains (PCD), updated in place; None for CD.
        sparsity: ``sparsity(E[h | v]) -> (n_hidden,)`` coefficients (:func:`~dbn.sampling.sparsity_coefficients`).
        dtype: compute dtype of the chain and the products (bfloat16 for mixed precision); None: the parameters'.
        average: mean over processes of a flat gradient tensor (returns it), or None in one process.
        monitor: also return the free-energy difference (two passes of softplus over the hidden units: on a
            2-core CPU about 5% of a CD-1 update at batch 100, more in bfloat16).
        offsets: train the centered RBM with these offsets (:mod:`dbn.centering`): they first follow the batch's
            means (averaged over processes with the gradient), then SGD moves the centered parameters and
            ``rbm`` keeps the equivalent plain ones. None: the plain RBM.
        compiled_step: set by :func:`compiled_cd_update`; None runs the step eagerly.

    Returns:
        (the chain's step, in the compute dtype; the free-energy difference mean F(v_data) - mean F(v_model),
        or None without ``monitor``).
    """
    if offsets is not None and mask is not None:
        raise ValueError("centering with missing values is not supported: the data's mean offsets would count the "
                         "zero-filled entries; set centering=false")
    sgd = {name: _SGD(p, _momentum_buffer(optimizer, p), group["lr"], group["momentum"], group["weight_decay"])
           for name, (p, group) in _groups(optimizer, rbm).items()}
    step = _cd_step
    if compiled_step is not None:  # the hyper-parameters as 0-d tensors: a new learning rate changes no guard
        step = compiled_step
        sgd = {name: s._replace(lr=_scalar(float(s.lr)), momentum=_scalar(float(s.momentum)),
                                weight_decay=_scalar(float(s.weight_decay)) if s.weight_decay else None)
               for name, s in sgd.items()}
    # cast outside the step: the working copy is one module kept between updates, an input the compiled step can
    # guard on; made inside it, dynamo broke the step's graph at the module's copy
    work = rbm.working_copy(dtype or rbm.weight.dtype)
    return step(rbm, work, v, sgd, k=k, chains=chains, sample_visible=sample_visible, mask=mask, sparsity=sparsity,
                average=average, generator=generator, monitor=monitor, offsets=offsets)


def compiled_cd_update() -> Callable[..., tuple[CDStep, Tensor | None]]:
    """:func:`cd_update` with its step through ``torch.compile`` (inductor fuses the elementwise work).

    The optimizer is read outside the compiled step: the momentum buffers are made before it and the learning
    rate, momentum and weight decay enter it as 0-d tensors, so a learning-rate schedule and the first update
    change no guard (read as Python floats, every new learning rate was a recompilation, and dynamo stops
    compiling a function after 8 of them and runs it eagerly). The chain's random draws take symbolic sizes
    (:mod:`dbn.draws`), so a short last batch does not fail to compile. Make one per layer.
    """
    # dynamo keeps its graphs, and counts recompilations (8 at most), per code object; every call compiles a copy of
    # the step's code, so that each layer (a module of its own, whose sizes are constants to dynamo) starts afresh
    step = types.FunctionType(_cd_step.__code__.replace(), _cd_step.__globals__, _cd_step.__name__)
    return partial(cd_update, compiled_step=torch.compile(step))


class _SGD(NamedTuple):
    """One parameter's SGD state: the parameter, its momentum buffer u, and lr, momentum, weight decay (floats, or
    0-d float64 tensors in the compiled step; weight decay None there when it is 0)."""

    param: Tensor
    velocity: Tensor
    lr: float | Tensor
    momentum: float | Tensor
    weight_decay: float | Tensor | None


def _cd_step(rbm: RBM, work: RBM, v: Tensor, sgd: dict[str, _SGD], k: int, chains: Tensor | None,
             sample_visible: bool, mask: Tensor | None, sparsity: Callable[[Tensor], Tensor] | None,
             average: Callable[[Tensor], Tensor] | None, generator: torch.Generator | None, monitor: bool,
             offsets: Offsets | None) -> tuple[CDStep, Tensor | None]:
    """:func:`cd_update`'s chain, gradient and SGD passes on ``work`` (``rbm`` or its :meth:`~dbn.rbm.RBM.working_copy`
    in the compute dtype), with the optimizer's state already read into ``sgd``."""
    dtype = work.weight.dtype
    work_chains = None if chains is None else chains.to(dtype)
    step = contrastive_divergence(work, v.to(dtype), k=k, chains=work_chains, sample_visible=sample_visible,
                                  mask=None if mask is None else mask.to(dtype), generator=generator)
    if work_chains is not None and work_chains is not chains:
        chains.copy_(work_chains)
    coeffs = None if sparsity is None else sparsity(step.hidden_data)
    sizes = [s.param.numel() for s in sgd.values()]
    if offsets is not None:  # the batch's means travel with the gradient, so every process moves its offsets alike
        sizes += [rbm.n_visible, rbm.n_hidden]
    grads = flat = None
    if average is not None or dtype == rbm.weight.dtype:  # one flat tensor of every gradient, the product written in
        flat = torch.empty(sum(sizes), device=rbm.weight.device, dtype=rbm.weight.dtype)
        grads = _views(flat, sizes, sgd)
    # mixed precision in one process: the bfloat16 weight gradient goes straight into the float32 momentum below
    grads, fe_diff = cd_gradients(work, step, coeffs, out=grads, monitor=monitor)
    n_means = rbm.n_visible + rbm.n_hidden if offsets is not None else 0
    if offsets is not None:
        means = torch.cat([step.v_data.mean(0), step.hidden_data.mean(0)]).to(rbm.weight.dtype)
        if flat is not None:
            means = flat[-n_means:].copy_(means)
    if average is not None:
        flat = average(flat)
        grads = _views(flat, sizes, sgd)
        means = flat[-n_means:] if offsets is not None else None
    if offsets is not None:
        offsets.follow(means[:rbm.n_visible], means[rbm.n_visible:])
    for name, (p, u, lr, momentum, weight_decay) in sgd.items():
        if isinstance(lr, Tensor):  # compiled: the same arithmetic with tensor hyper-parameters (inductor fuses it)
            u.mul_(momentum).add_(grads[name])
        else:
            torch.add(grads[name], u, alpha=momentum, out=u)  # u ← μ u + g, one pass
        if offsets is not None and name == "weight":  # the centered weight gradient: u -= λ G_bᵀ + G_c μᵀ
            center_gradient(u, grads["visible_bias"], grads["hidden_bias"], offsets)
        if isinstance(weight_decay, Tensor):
            u.add_(p * weight_decay)
        elif weight_decay:
            u.add_(p, alpha=weight_decay)
        if isinstance(lr, Tensor):
            p.sub_(u * lr)
        else:
            p.add_(u, alpha=-lr)
    if offsets is not None:
        centered_bias_step(rbm, sgd["weight"].velocity, sgd["weight"].lr, offsets)
    return step, fe_diff


@lru_cache(maxsize=1024)
def _scalar(x: float) -> Tensor:
    """A hyper-parameter as a 0-d float64 CPU tensor (the compiled step's input; it broadcasts onto any device),
    one per value: the step only reads it, and a lookup costs less than making a tensor at every update."""
    return torch.tensor(x, dtype=torch.float64)


def _views(flat: Tensor, sizes: list[int], sgd: dict[str, _SGD]) -> dict[str, Tensor]:
    """Each parameter's gradient as a view of the flat tensor, in its shape (the means that may follow are left out)."""
    return {name: view.view_as(s.param) for (name, s), view in zip(sgd.items(), flat.split(sizes))}


def _groups(optimizer: torch.optim.SGD, rbm: RBM) -> dict[str, tuple[Tensor, dict]]:
    """Each parameter of ``rbm`` by name with its optimizer group; refuses what this update does not implement."""
    if not isinstance(optimizer, torch.optim.SGD):
        raise TypeError(f"cd_update applies torch.optim.SGD's update and needs an SGD optimizer, got "
                        f"{type(optimizer).__name__}; for another optimizer write cd_gradients' result into .grad")
    owner = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    out = {}
    for name, p in rbm.named_parameters():
        group = owner.get(id(p))
        if group is None:
            raise ValueError(f"the optimizer does not hold the RBM's {name}")
        if group.get("nesterov") or group.get("dampening") or group.get("maximize"):
            raise ValueError("cd_update implements SGD with plain momentum: nesterov, dampening and maximize must be off")
        out[name] = (p, group)
    return out


def _momentum_buffer(optimizer: torch.optim.SGD, p: Tensor) -> Tensor:
    """torch SGD's momentum buffer of ``p`` (zeros before the first update: μ·0 + d = d, as SGD starts)."""
    state = optimizer.state[p]
    if state.get("momentum_buffer") is None:
        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return state["momentum_buffer"]
