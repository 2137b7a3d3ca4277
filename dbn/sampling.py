"""Contrastive divergence (CD-k) and persistent CD as plain functions.

The gradient of the log-likelihood of an RBM is

    ∂ log p(v) / ∂θ = -∂F(v)/∂θ + E_model[∂F(v)/∂θ],

so minimising ``F(v_data) - F(v_model)`` by gradient descent, with ``v_model``
held fixed, follows the CD estimate: for the weight of Bernoulli units
ΔW ∝ <h vᵀ>_data - <h vᵀ>_model with h replaced by p(h | v). :func:`cd_loss` is that
surrogate, the reference; :func:`cd_gradients` is its gradient in closed form for every
unit type, which the training path uses (no autograd graph). A CD-1 step costs five
matrix products' work: c + W·v_data, the reconstruction, the negative pre-activation,
and the weight gradient (two products under autograd, one stacked product in closed form).

Missing values (a ``mask``, 1 = observed): each case is its own RBM over its observed
entries, sharing the weights (Salakhutdinov, Mnih & Hinton 2007). The data are
zero-filled where missing, so the hidden units see only observed entries, and the
negative visible states are zeroed at the same places. The missing entries then add
the same terms to F(v_data) and F(v_model) of every row, which cancel in the loss and
its gradient: no weight or bias of a missing entry moves on that case, and the CD
step does no other extra work.

References:
    Hinton (2002), "Training products of experts by minimizing contrastive divergence";
    Tieleman (2008), "Training RBMs using approximations to the likelihood gradient" (PCD);
    Salakhutdinov, Mnih & Hinton (2007), "Restricted Boltzmann machines for collaborative filtering".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dbn.draws import uniform
from dbn.rbm import RBM
from dbn.special import softplus


@dataclass
class CDStep:
    """What one CD/PCD step computed.

    Attributes:
        v_data: the data batch.
        v_model: visible states of the negative phase (no gradient).
        pre_data: c + W·v_data, carrying the gradient.
        pre_model: c + W·v_model, carrying the gradient.
        recon: one-step reconstruction E[v | h0], h0 ~ p(h | v_data), or None if not asked for;
            it fills the missing entries too.
        mask: observed entries of ``v_data`` (1), or None when all are observed.
        hidden_data: E[h | v_data] (no gradient), which the chain computed to draw h0.
    """

    v_data: Tensor
    v_model: Tensor
    pre_data: Tensor
    pre_model: Tensor
    recon: Tensor | None
    mask: Tensor | None = None
    hidden_data: Tensor | None = None


def contrastive_divergence(
    rbm: RBM,
    v_data: Tensor,
    k: int = 1,
    chains: Tensor | None = None,
    sample_visible: bool = False,
    reconstruct: bool = True,
    generator: torch.Generator | None = None,
    mask: Tensor | None = None,
) -> CDStep:
    """Run the Gibbs chain of one CD-k (``chains is None``) or PCD-k step.

    CD-k starts the chain at the data: h0 ~ p(h | v_data), then k sweeps
    v_t ~ p(v | h_{t-1}), h_t ~ p(h | v_t). The last visible state is the mean
    p(v | h) unless ``sample_visible`` (Hinton 2010, section 3.2: less sampling noise);
    Gaussian units with learned variances always sample it, because a mean carries none
    of the noise variance and the variance gradient would then only ever grow σ.
    PCD-k continues the persistent ``chains`` (n_chains, n_visible) for k sweeps
    with sampled states and writes the new states back into ``chains`` in place.

    Args:
        rbm: the model.
        v_data: (batch, n_visible) data batch.
        k: number of Gibbs sweeps, >= 1.
        chains: persistent chain states, updated in place; None for CD.
        sample_visible: use a sample, not the mean, as the last CD visible state.
        reconstruct: also return the one-step reconstruction (free for CD, one product for PCD).
        generator: random generator for the chain.
        mask: observed entries (1) of ``v_data``, which must be zero where the mask is 0; CD only.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if mask is not None and chains is not None:
        raise ValueError("missing values need CD (pretrain.persistent=false): persistent chains are not tied to "
                         "a case, so they cannot leave out its missing entries")
    sample_last = sample_visible or rbm.log_variance is not None
    pre_data = rbm.hidden_pre(v_data)
    recon = None
    with torch.no_grad():
        hidden_data = rbm.hidden.mean(pre_data.detach())
        h = rbm.hidden.sample(hidden_data, generator)
        if chains is None:
            v = v_data
            for step in range(k):
                v_mean = rbm.visible_mean(h)
                if step == 0:
                    recon = v_mean
                last = step == k - 1
                v = v_mean if (last and not sample_last) else rbm.visible.sample(v_mean, generator, rbm.log_variance)
                if mask is not None:
                    v = v * mask  # this case's RBM has no units where its data are missing
                if not last:
                    _, h = rbm.sample_hidden(v, generator)
        else:
            if reconstruct:
                recon = rbm.visible_mean(h)
            v = chains
            for _ in range(k):
                _, h = rbm.sample_hidden(v, generator)
                _, v = rbm.sample_visible(h, generator)
            chains.copy_(v)
            v = chains.clone()
    pre_model = rbm.hidden_pre(v)
    return CDStep(v_data=v_data, v_model=v, pre_data=pre_data, pre_model=pre_model, recon=recon, mask=mask,
                  hidden_data=hidden_data)


def cd_loss(rbm: RBM, step: CDStep) -> Tensor:
    """mean F(v_data) - mean F(v_model), from the step's cached pre-activations.

    Its gradient is minus the CD estimate of the log-likelihood gradient; its
    value is the free-energy difference (not a likelihood). With a mask the missing
    entries' terms are equal in both phases of every row and cancel (module docstring),
    so the mask is not needed here.
    """
    f_data = rbm.free_energy(step.v_data, hidden_pre=step.pre_data)
    f_model = rbm.free_energy(step.v_model, hidden_pre=step.pre_model)
    return f_data.mean() - f_model.mean()


def sparsity_penalty(pre_data: Tensor, q_running: Tensor, target: float, cost: float, mean_fn) -> Tensor:
    """Surrogate whose gradient is the sparsity term of Hinton (2010), section 11.

    With q the running mean activation of each hidden unit, the gradient of the
    cross-entropy between the target p and q with respect to the units' total
    input is cost·(q - p): added to the hidden biases and, times the data, to
    the weights. ``q_running`` (n_hidden,) is updated in place with decay 0.9.

    Returns:
        cost · Σ_j (q_j - p) · mean_batch(pre_j), with q held constant.
    """
    with torch.no_grad():
        q_running.mul_(0.9).add_(mean_fn(pre_data.detach()).mean(0), alpha=0.1)
        coeff = cost * (q_running - target)
    return (coeff * pre_data.mean(0)).sum()


@torch.no_grad()
def cd_gradients(rbm: RBM, step: CDStep, sparsity: Tensor | None = None, out: dict[str, Tensor] | None = None,
                 monitor: bool = True) -> tuple[dict[str, Tensor], Tensor | None]:
    """The gradient of :func:`cd_loss` (plus the sparsity term) in closed form, without autograd.

    With ṽ = v / σ² what the hidden units see, pre = c + W·ṽ and p = E[h | pre] (the derivative of
    the hidden log-partition), F(v) = E_vis(v) - Σ_j A(pre_j) gives, per row r of the loss
    L = Σ_r w_r F(v_r) (w_r = 1/B for the B data rows, -1/B' for the B' negative rows):

        G_r = ∂L/∂pre_r = -w_r p_r  (+ s / B on data rows: the sparsity term s = cost·(q - target))
        ∂L/∂W = Gᵀ Ṽ        ∂L/∂c = Σ_r G_r        ∂L/∂b = Σ_r w_r ∂E_vis(v_r)/∂b   (Units.mean_energy_grad)

    (the RBM's ``weight_gradient``, ``hidden_bias_gradient`` and ``visible_bias_gradient``: a convolutional
    layer sums them over positions, :class:`~dbn.conv.ConvRBM`)
        ∂L/∂z = Σ_r w_r ∂E_vis(v_r)/∂z - Σ_r (G_r W) ⊙ ṽ_r     (learned log-variances z only)

    The data and negative rows are stacked, so the weight gradient is one product
    [G_data; G_model]ᵀ [ṽ_data; ṽ_model]: a CD-1 update costs the chain's three products and this
    one of twice the height, five products' worth of work in four calls. Missing entries (zero in
    both phases, ``mask``) get no gradient, as in :func:`cd_loss`. The result equals autograd of
    ``cd_loss(rbm, step) + sparsity_penalty(...)`` to rounding (``tests/test_cd.py``, every unit type).

    Args:
        rbm: the model the step ran on (a :meth:`~dbn.rbm.RBM.working_copy` under mixed precision).
        step: a :func:`contrastive_divergence` step.
        sparsity: (n_hidden,) the sparsity coefficients s (:func:`sparsity_coefficients`), or None.
        out: tensors to write the gradients into, keyed by parameter name (e.g. the parameters' ``.grad``,
            in their own dtype); new tensors in the step's dtype without it.
        monitor: also compute the loss value (the free energies: not needed for the gradient).

    Returns:
        (gradients keyed by parameter name, the loss value mean F(v_data) - mean F(v_model) as a 0-d tensor,
        or None without ``monitor``).
    """
    v_d, v_m, mask = step.v_data, step.v_model, step.mask
    n_d, n_m = len(v_d), len(v_m)
    log_var = rbm.log_variance
    p_d = step.hidden_data if step.hidden_data is not None else rbm.hidden.mean(step.pre_data)
    p_m = rbm.hidden.mean(step.pre_model)
    g = torch.empty((n_d + n_m, p_d.shape[1]), dtype=torch.promote_types(p_d.dtype, p_m.dtype), device=p_d.device)
    if sparsity is None:  # written in place: a conv layer's hidden rows are large (21,632 units at 28x28, 32 maps)
        torch.mul(p_d, -1.0 / n_d, out=g[:n_d])
    else:
        torch.sub(sparsity.to(p_d.dtype), p_d, out=g[:n_d]).div_(n_d)
    torch.mul(p_m, 1.0 / n_m, out=g[n_d:])
    seen = torch.cat([v_d, v_m])
    if log_var is not None:
        seen = seen * torch.exp(-log_var)
    acc = torch.promote_types(g.dtype, torch.float32)  # sums of bfloat16 terms kept in float32
    bias = rbm.unit_visible_bias()
    e_d = rbm.visible.mean_energy_grad(v_d, bias, log_var, mask)
    e_m = rbm.visible.mean_energy_grad(v_m, bias, log_var, mask)
    out = out or {}
    w_out = out.get("weight")
    same = w_out is not None and w_out.dtype == g.dtype == seen.dtype  # the product writes into out: no temporary
    grads = {"weight": rbm.weight_gradient(g, seen, out=w_out if same else None)}
    grads["hidden_bias"] = rbm.hidden_bias_gradient(g, acc)
    grads["visible_bias"] = rbm.visible_bias_gradient(e_d[0] - e_m[0])
    if log_var is not None:
        grads["log_variance"] = e_d[1] - e_m[1] - ((g @ rbm.weight) * seen).sum(0, dtype=acc)
    for name, value in grads.items():
        if out.get(name) is not None and value is not out[name]:
            grads[name] = out[name].copy_(value)
    return grads, cd_loss(rbm, step) if monitor else None


@torch.no_grad()
def sparsity_coefficients(hidden_data: Tensor, q_running: Tensor, target: float, cost: float) -> Tensor:
    """Hinton's (2010, section 11) sparsity term s = cost·(q - target) per hidden unit, q updated in place.

    q is the running mean activation of each hidden unit (decay 0.9), ``hidden_data`` the batch's
    E[h | v_data]; s is what the term adds to the gradient of each data row's pre-activation, so
    the hidden biases move by -lr·s and the weights by -lr·s·mean(ṽ) (see :func:`sparsity_penalty`).
    """
    q_running.mul_(0.9).add_(hidden_data.mean(0).to(q_running.dtype), alpha=0.1)
    return cost * (q_running - target)


def geometric_betas(n_temperatures: int, beta_min: float = 0.1) -> Tensor:
    """A parallel-tempering ladder 1 = β_0 > β_1 > ... > β_{T-1} = β_min, geometric in β.  -> (T,) float64"""
    if int(n_temperatures) < 2:
        raise ValueError(f"n_temperatures must be >= 2, got {n_temperatures}")
    if not 0 < beta_min < 1:
        raise ValueError(f"beta_min must be in (0, 1), got {beta_min}")
    return torch.logspace(0.0, torch.log10(torch.tensor(float(beta_min))).item(), int(n_temperatures),
                          dtype=torch.float64)


@torch.no_grad()
def parallel_tempering(rbm: RBM, chains: Tensor, betas: Tensor, k: int = 1,
                       generator: torch.Generator | None = None) -> Tensor:
    """k sweeps of parallel tempering on binary chains at the temperatures ``betas``, in place.

    Chain t samples p_β(v) ∝ Σ_h exp(-β E(v, h)) with β = ``betas[t]`` (``betas[0]`` = 1 is the
    model): each sweep is a Gibbs step h ~ sigmoid(β(c + Wv)), v ~ sigmoid(β(b + Wᵀh)) at every
    temperature, then a swap pass over neighbouring temperatures, even pairs then odd pairs, each
    swap accepted by the Metropolis rule on the tempered free energies
    F_β(v) = -β b·v - Σ_j softplus(β (c_j + W_j·v)):

        min(1, exp(F_βt(v_t) + F_βt+1(v_t+1) - F_βt(v_t+1) - F_βt+1(v_t))).

    Args:
        rbm: a binary RBM.
        chains: (T, n_chains, n_visible) states, T = len(betas), updated in place; chains[0] are the β = 1 chains
            that a PCD gradient uses.
        betas: (T,) inverse temperatures, betas[0] = 1, decreasing (e.g. :func:`geometric_betas`).
        k: sweeps.
        generator: random generator.

    Returns:
        (T - 1,) the fraction of proposed swaps accepted between temperatures t and t + 1.

    References:
        Desjardins, Courville, Bengio, Vincent & Delalleau (2010), "Tempered Markov chain Monte Carlo for
        training of restricted Boltzmann machines"; Cho, Raiko & Ilin (2010), "Parallel tempering is efficient
        for learning restricted Boltzmann machines".
    """
    if rbm.visible.name != "bernoulli" or rbm.hidden.name != "bernoulli" or rbm.convolutional:
        raise ValueError(f"parallel tempering needs dense weights and Bernoulli visible and hidden units, this RBM has "
                         f"{rbm.visible.name} and {rbm.hidden.name}")
    n_temps, n_chains, n_visible = chains.shape
    beta = torch.as_tensor(betas, dtype=chains.dtype, device=chains.device)
    if beta.shape != (n_temps,) or float(beta[0]) != 1.0:
        raise ValueError(f"betas must have shape ({n_temps},) with betas[0] = 1, got {tuple(beta.shape)}")
    W, b, c = rbm.weight, rbm.visible_bias, rbm.hidden_bias
    col = beta.view(-1, 1, 1)
    accepted = torch.zeros(n_temps - 1, dtype=chains.dtype, device=chains.device)
    proposed = torch.zeros_like(accepted)
    v = chains
    for _ in range(k):
        pre_h = torch.addmm(c, v.reshape(-1, n_visible), W.t()).view(n_temps, n_chains, -1)
        h = rbm.hidden.sample(torch.sigmoid(col * pre_h), generator)
        pre_v = torch.addmm(b, h.reshape(n_temps * n_chains, -1), W).view(n_temps, n_chains, n_visible)
        v = rbm.visible.sample(torch.sigmoid(col * pre_v), generator)
        pre = torch.addmm(c, v.reshape(-1, n_visible), W.t()).view(n_temps, n_chains, -1)
        bv = v @ b  # (T, n)
        for parity in (0, 1):
            lo = torch.arange(parity, n_temps - 1, 2, device=v.device)
            if len(lo) == 0:
                continue
            hi = lo + 1
            b_lo, b_hi = beta[lo].view(-1, 1), beta[hi].view(-1, 1)

            def free(rows, bt):  # F_β of the states at temperatures ``rows``, at inverse temperature bt
                return -bt * bv[rows] - softplus(bt.unsqueeze(-1) * pre[rows]).sum(-1)

            log_a = free(lo, b_lo) + free(hi, b_hi) - free(hi, b_lo) - free(lo, b_hi)
            r = uniform(log_a, generator)
            swap = torch.log(r) < log_a  # (pairs, n)
            for name, t in (("v", v), ("pre", pre), ("bv", bv)):
                a, z = t[lo], t[hi]
                mask = swap if t.dim() == 2 else swap.unsqueeze(-1)
                t[lo], t[hi] = torch.where(mask, z, a), torch.where(mask, a, z)
            accepted[lo] += swap.to(v.dtype).mean(1)
            proposed[lo] += 1
    chains.copy_(v)
    return accepted / proposed.clamp_min(1)
