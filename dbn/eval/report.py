"""Evaluate a saved dbn-train run: AIS log Z, log-likelihoods, pseudo-log-likelihood, reconstruction, accuracy."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from dbn.device import resolve_device
from dbn.eval.bound import dbn_lower_bound
from dbn.eval.likelihood import average_log_likelihood, pseudo_log_likelihood
from dbn.eval.partition import MAX_ENUMERATED_UNITS, ais_log_partition, exact_log_partition
from dbn.eval.reverse import raise_log_likelihood
from dbn.rbm import RBM
from dbn.rundir import RunDir

#: dbn-eval's RAISE defaults (conf/eval.yaml): test vectors, reverse chains per vector, inverse temperatures
RAISE_DEFAULTS = {"vectors": 100, "chains": 5, "betas": 1000}

def load_run_data(run_dir: str | Path):
    """The run's data module, rebuilt from its saved config (same split, same binarisation)."""
    return RunDir(run_dir).load_data()


def is_binary(rbm: RBM) -> bool:
    return rbm.visible.name == "bernoulli" and rbm.hidden.name == "bernoulli" and not rbm.convolutional


def _log_z(rbm: RBM, train_x: torch.Tensor, n_chains: int, n_betas: int, seed: int) -> dict:
    """AIS (binary units) and exact (small enough, binary or Gaussian visible) log Z, whichever apply."""
    out: dict = {}
    if is_binary(rbm):
        start = time.perf_counter()
        ais = ais_log_partition(rbm, n_chains=n_chains, n_betas=n_betas, data=train_x, seed=seed)
        out.update({
            "log_z_ais": ais.log_z, "log_z_low": ais.log_z_low, "log_z_high": ais.log_z_high,
            "n_chains": ais.n_chains, "n_betas": ais.n_betas, "ais_seconds": round(time.perf_counter() - start, 2),
        })
    try:
        out["log_z_exact"] = exact_log_partition(rbm)
    except ValueError:  # too large to enumerate, or unit types without an exact sum
        pass
    return out


def _raise_bracket(rbm: RBM, train_x: torch.Tensor, subset: torch.Tensor, log_z: float, raise_args: dict,
                   seed: int) -> dict:
    """RAISE's conservative mean log p(v) of ``subset`` beside AIS's (optimistic) one on the same vectors."""
    start = time.perf_counter()
    est = raise_log_likelihood(rbm, subset, n_betas=int(raise_args["betas"]), n_chains=int(raise_args["chains"]),
                               base_data=train_x, seed=seed)
    return {"raise_vectors": len(subset), "raise_chains": est.n_chains, "raise_betas": est.n_betas,
            "test_subset_ll_raise": est.log_likelihood, "test_subset_ll_raise_se": est.std_error,
            "test_subset_ll_ais": average_log_likelihood(rbm, subset, log_z),
            "raise_seconds": round(time.perf_counter() - start, 2)}


@torch.no_grad()
def rbm_report(rbm: RBM, train_x: torch.Tensor, test_x: torch.Tensor, n_chains: int, n_betas: int, seed: int,
               test_mask: torch.Tensor | None = None, missing: bool = False, raise_args: dict | None = None) -> dict:
    """Likelihood numbers of one RBM as a model of its data, in nats per sample (densities for real-valued data).

    AIS and the pseudo-likelihood need binary units; other RBMs get the exact log Z where it can be
    computed (Gaussian visible units, at most 25 Bernoulli hidden units). Binary RBMs also get RAISE's
    conservative estimate on the first ``raise_args["vectors"]`` test vectors beside AIS's on the same
    vectors: the two bracket the test log-likelihood (``raise_args`` None or 0 vectors: no RAISE). Data with missing values
    (``missing``) get no likelihoods: a zero-filled row is not a sample of the full visible layer. The
    reconstruction error is always reported, over the observed entries of ``test_mask`` when given.
    """
    out = {} if missing else _log_z(rbm, train_x, n_chains, n_betas, seed)
    if "log_z_ais" in out:
        log_z, log_z_low, log_z_high = out["log_z_ais"], out["log_z_low"], out["log_z_high"]
    else:
        log_z = log_z_low = log_z_high = out.get("log_z_exact")
    if log_z is not None:
        for name, x in (("train", train_x), ("test", test_x)):
            ll = average_log_likelihood(rbm, x, log_z)
            # Z's band maps to a band on the log-likelihood: a larger Z means a lower likelihood
            out[f"{name}_ll"] = ll
            out[f"{name}_ll_low"] = ll + log_z - log_z_high
            out[f"{name}_ll_high"] = ll + log_z - log_z_low
    else:
        out["no_likelihood"] = _why_no_likelihood(rbm, missing)
    if is_binary(rbm) and not missing:
        g = torch.Generator().manual_seed(seed)
        out["test_pseudo_ll"] = float(pseudo_log_likelihood(rbm, test_x, generator=g).mean())
        if raise_args and int(raise_args["vectors"]) > 0:
            subset = test_x[: int(raise_args["vectors"])]
            out.update(_raise_bracket(rbm, train_x, subset, log_z, raise_args, seed))
            if "log_z_exact" in out:  # small models: the truth the bracket should hold
                out["test_subset_ll_exact"] = average_log_likelihood(rbm, subset, out["log_z_exact"])
    recon = torch.cat([rbm.reconstruct(c.to(rbm.weight)) for c in test_x.split(4096)])
    err = (test_x.to(recon) - recon).square()
    mask = torch.ones_like(err) if test_mask is None else test_mask.to(err)
    out["test_recon_error"] = float((err * mask).sum() / mask.sum().clamp_min(1.0))
    return out


def evaluate_run(run_dir: str | Path, n_chains: int = 100, n_betas: int = 14500, seed: int = 0, device: str = "cpu",
                 bound_samples: int = 10, raise_args: dict | None = None) -> dict:
    """Evaluate the first-layer RBM of a run as a generative model, and the classifier if fine-tuned.

    For a two-layer DBN, also the variational lower bound on the test log-probability
    (``bound_samples`` draws from Q(h|v) per test vector, top-layer log Z by AIS). ``raise_args``:
    RAISE's test vectors, chains and temperatures (:data:`RAISE_DEFAULTS` when None).
    """
    device = resolve_device(device)
    run = RunDir(run_dir)
    dm = run.load_data()
    stack = run.load_model(pretrained=True, map_location=device)
    test_x, test_mask = (dm.test_x, dm.test_mask) if dm.test_x is not None else (dm.val_x, dm.val_mask)
    missing = any(m is not None for m in (dm.train_mask, dm.val_mask, dm.test_mask))
    report = rbm_report(stack.layers[0], dm.train_x, test_x, n_chains, n_betas, seed, test_mask, missing,
                        RAISE_DEFAULTS if raise_args is None else raise_args)
    result = {"run_dir": str(run.path), "layer0": report}
    if len(stack.layers) == 2 and all(is_binary(r) for r in stack.layers) and not missing:
        top = stack.layers[1]
        h_train = stack.up(dm.train_x.to(device), n_layers=1)
        ais = ais_log_partition(top, n_chains=n_chains, n_betas=n_betas, data=h_train, seed=seed)
        g = torch.Generator().manual_seed(seed)
        bound = dbn_lower_bound(stack, test_x, ais.log_z, n_samples=bound_samples, generator=g)
        result["dbn_bound"] = {"test_bound": float(bound.mean()), "log_z_top": ais.log_z,
                               "log_z_top_low": ais.log_z_low, "log_z_top_high": ais.log_z_high,
                               "samples_per_vector": bound_samples}
    final = run.load_model(map_location=device)
    if final.head is not None and dm.test_y is not None:
        result["test_acc"] = float((final.predict(dm.test_x.to(device)).cpu() == dm.test_y).float().mean())
    run.eval_report.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _why_no_likelihood(rbm: RBM, missing: bool) -> str:
    """Why neither AIS nor exact enumeration gave this RBM a log Z."""
    if missing:
        return "the data have missing values (a zero-filled row is not a sample of the full visible layer)"
    if rbm.convolutional:
        return "AIS and exact log Z are written for dense layers; this first layer is convolutional"
    return (f"AIS needs binary units and exact log Z Gaussian or binary visible units with at most "
            f"{MAX_ENUMERATED_UNITS} binary hidden units; this layer has {rbm.visible.name} visible and "
            f"{rbm.n_hidden} {rbm.hidden.name} hidden units")


def format_report(result: dict) -> str:
    r = result["layer0"]
    lines = [f"run: {result['run_dir']}"]
    if "log_z_ais" in r:
        lines.append(f"  log Z (AIS, {r['n_chains']} chains, {r['n_betas']} betas): {r['log_z_ais']:.3f} "
                     f"[{r['log_z_low']:.3f}, {r['log_z_high']:.3f}]")
    if "log_z_exact" in r:
        lines.append(f"  log Z (exact): {r['log_z_exact']:.3f}")
    if "train_ll" in r:
        lines += [f"  {name} log-likelihood:{pad} {r[f'{name}_ll']:.2f} nats  "
                  f"[{r[f'{name}_ll_low']:.2f}, {r[f'{name}_ll_high']:.2f}]" for name, pad in (("train", ""), ("test", " "))]
    else:
        lines.append(f"  log-likelihood: not available: {r.get('no_likelihood', 'no log Z for this layer')}")
    if "test_subset_ll_raise" in r:
        lo, hi = r["test_subset_ll_raise"], r["test_subset_ll_ais"]
        lines.append(f"  test log-likelihood bracket, first {r['raise_vectors']} test vectors: "
                     f"[{lo:.2f}, {hi:.2f}] nats (RAISE, {r['raise_chains']} chains x {r['raise_betas']} betas; "
                     "AIS, optimistic)" + (f", exact {r['test_subset_ll_exact']:.2f}" if "test_subset_ll_exact" in r else "")
                     + ("; RAISE above AIS: one of them is off (RAISE overshoots where the chains do not mix)"
                        if lo > hi else ""))
    if "test_pseudo_ll" in r:
        lines.append(f"  test pseudo-log-likelihood: {r['test_pseudo_ll']:.2f}")
    lines.append(f"  test reconstruction error (MSE): {r['test_recon_error']:.4f}")
    if "dbn_bound" in result:
        lines.append(f"  2-layer DBN lower bound on test log p(v): {result['dbn_bound']['test_bound']:.2f} nats")
    if "test_acc" in result:
        lines.append(f"  fine-tuned test accuracy: {result['test_acc']:.4f}")
    return "\n".join(lines)
