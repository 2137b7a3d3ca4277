"""Gaussian visible and ReLU hidden units against brute force: free energies, conditionals, samples, CD gradients.

Gaussian visible units have a continuous state, so "brute force" is a numerical integral over v on a
fine grid (two visible units; the integrands are Gaussians, for which the trapezoid rule on a wide
uniform grid is accurate to far below the tolerances used). ReLU units are checked against the
stepped sigmoid unit they approximate: the sum over its infinitely many tied binary copies, truncated
where the terms fall below 1e-20.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import all_binary
from dbn.dbn import DBN
from dbn.eval import ais_log_partition, exact_log_partition
from dbn.rbm import RBM
from dbn.sampling import cd_loss, contrastive_divergence
from dbn.special import softplus, softplus_integral, softplus_inverse
from dbn.training.rbm_module import RBMModule
from dbn.units import Gaussian, ReLU, get_units

GRID = 601  # points per visible unit for the numerical integrals


def make_rbm(n_visible: int, n_hidden: int, visible: str = "gaussian", hidden: str = "bernoulli", scale: float = 0.7,
             seed: int = 0) -> RBM:
    """A tiny float64 RBM with every parameter random (learned log-variances in [-0.5, 0.5] or so)."""
    g = torch.Generator().manual_seed(seed)
    rbm = RBM(n_visible, n_hidden, visible=visible, hidden=hidden, init_std=0.0).double()
    with torch.no_grad():
        for param in rbm.parameters():
            param.copy_(torch.randn(param.shape, generator=g, dtype=torch.float64) * scale)
    return rbm


def grid(rbm: RBM, h: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """A 2-D grid of visible states covering every mixture component b + Wᵀh ± 12σ, and the cell area."""
    hs = all_binary(rbm.n_hidden) if h is None else h
    with torch.no_grad():
        centres = rbm.visible_mean(hs)
        sigma = 1.0 if rbm.log_variance is None else float(torch.exp(0.5 * rbm.log_variance).max())
    lo, hi = float(centres.min()) - 12 * sigma, float(centres.max()) + 12 * sigma
    axis = torch.linspace(lo, hi, GRID, dtype=torch.float64)
    v = torch.cartesian_prod(axis, axis)
    return v, float(axis[1] - axis[0]) ** 2


def explicit_energy(rbm: RBM, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """E(v, h) = Σ_i (v_i - b_i)²/(2σ_i²) - Σ_j c_j h_j - Σ_ij h_j W_ji v_i/σ_i² (Cho et al. 2011), as loops."""
    W, b, c = rbm.weight, rbm.visible_bias, rbm.hidden_bias
    var = torch.ones_like(b) if rbm.log_variance is None else torch.exp(rbm.log_variance)
    out = torch.zeros(len(v), dtype=v.dtype)
    for n in range(len(v)):
        e = 0.0
        for i in range(rbm.n_visible):
            e += (v[n, i] - b[i]) ** 2 / (2 * var[i])
            for j in range(rbm.n_hidden):
                e -= h[n, j] * W[j, i] * v[n, i] / var[i]
        for j in range(rbm.n_hidden):
            e -= c[j] * h[n, j]
        out[n] = e
    return out


GAUSSIAN = ["gaussian", "gaussian_learned"]


# --- Gaussian visible units: energy, free energy, log Z, conditionals ----------------------------------------
@pytest.mark.parametrize("visible", GAUSSIAN)
def test_gaussian_energy_matches_the_written_out_formula(visible):
    rbm = make_rbm(3, 2, visible)
    g = torch.Generator().manual_seed(1)
    v = torch.randn(5, 3, generator=g, dtype=torch.float64) * 2
    h = torch.randint(0, 2, (5, 2), generator=g).double()
    with torch.no_grad():
        torch.testing.assert_close(rbm.energy(v, h), explicit_energy(rbm, v, h))


@pytest.mark.parametrize("visible", GAUSSIAN)
def test_gaussian_free_energy_is_minus_log_sum_over_hidden_states(visible):
    rbm = make_rbm(3, 4, visible)
    v = torch.randn(7, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    hs = all_binary(4)
    with torch.no_grad():
        energies = torch.stack([rbm.energy(v, h.expand(len(v), -1)) for h in hs], dim=1)
        torch.testing.assert_close(rbm.free_energy(v), -torch.logsumexp(-energies, dim=1))


@pytest.mark.parametrize("visible", GAUSSIAN)
def test_gaussian_exact_log_z_matches_a_numerical_integral_of_exp_minus_free_energy(visible):
    """log Z in closed form (hidden states enumerated, v integrated analytically) = log ∫ exp(-F(v)) dv on a grid."""
    rbm = make_rbm(2, 3, visible, scale=0.8, seed=3)
    v, cell = grid(rbm)
    with torch.no_grad():
        numeric = float(torch.logsumexp(-rbm.free_energy(v), 0)) + math.log(cell)
    assert exact_log_partition(rbm) == pytest.approx(numeric, abs=1e-8)


@pytest.mark.parametrize("visible", GAUSSIAN)
def test_gaussian_hidden_conditional_matches_enumeration(visible):
    rbm = make_rbm(3, 3, visible, seed=4)
    v = torch.randn(6, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    hs = all_binary(3)
    with torch.no_grad():
        p = torch.softmax(torch.stack([-rbm.energy(v, h.expand(len(v), -1)) for h in hs], dim=1), dim=1)
        torch.testing.assert_close(rbm.hidden_mean(v), p @ hs)


@pytest.mark.parametrize("visible", GAUSSIAN)
def test_gaussian_visible_conditional_mean_and_variance_match_the_integral(visible):
    """p(v | h) ∝ exp(-E(v, h)) integrated on a grid: mean b + Wᵀh and variance σ² (Cho's parameterisation)."""
    rbm = make_rbm(2, 3, visible, seed=6)
    hs = all_binary(3)
    with torch.no_grad():
        var = torch.ones(2, dtype=torch.float64) if rbm.log_variance is None else torch.exp(rbm.log_variance)
        for h in hs:
            v, _ = grid(rbm, h[None])
            p = torch.softmax(-rbm.energy(v, h.expand(len(v), -1)), dim=0)
            mean = p @ v
            torch.testing.assert_close(mean, rbm.visible_mean(h[None])[0], atol=1e-9, rtol=0)
            torch.testing.assert_close(p @ (v - mean).square(), var, atol=1e-9, rtol=0)


@pytest.mark.parametrize("visible", GAUSSIAN)
def test_gaussian_samples_have_the_conditional_mean_and_variance(visible):
    rbm = make_rbm(4, 3, visible, seed=7)
    h = all_binary(3)[[5]].expand(100_000, -1)
    with torch.no_grad():
        mean, v = rbm.sample_visible(h, torch.Generator().manual_seed(0))
        var = torch.ones(4, dtype=torch.float64) if rbm.log_variance is None else torch.exp(rbm.log_variance)
    # 100,000 draws: the sample mean's std is σ/316 and the sample variance's std is σ²·0.0045; allow 5 of each
    torch.testing.assert_close(v.mean(0), mean[0], atol=float(5 * var.sqrt().max() / 316), rtol=0)
    torch.testing.assert_close(v.var(0), var, atol=0, rtol=5 * 0.0045)


def test_gibbs_chain_with_gaussian_visible_units_reaches_the_model_moments():
    """20,000 chains, 40 sweeps: the mean and covariance of v match ∫ v exp(-F(v)) / Z on the grid."""
    rbm = make_rbm(2, 3, "gaussian_learned", scale=0.8, seed=8)
    v_grid, _ = grid(rbm)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        p = torch.softmax(-rbm.free_energy(v_grid), 0)
        mean = p @ v_grid
        cov = (v_grid - mean).T @ ((v_grid - mean) * p[:, None])
        v = rbm.gibbs(torch.zeros(20_000, 2, dtype=torch.float64), steps=40, generator=g)
    # std of a mean of 20,000 draws is sqrt(cov_ii)/141; 6 of those (and 6 % of the covariance scale) as tolerance
    tol = 6 * float(cov.diagonal().sqrt().max()) / 141
    torch.testing.assert_close(v.mean(0), mean, atol=tol, rtol=0)
    torch.testing.assert_close(torch.cov(v.T), cov, atol=0.06 * float(cov.diagonal().max()), rtol=0)


def test_gaussian_check_refuses_unscaled_data_and_names_the_fix():
    raw = torch.randn(200, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 350 + 650
    with pytest.raises(ValueError, match=r"does not look standardised: feature 0.*data\.scale=standard"):
        Gaussian().check(raw, "training data")
    Gaussian().check((raw - raw.mean(0)) / raw.std(0), "training data")  # standardised: fine
    with pytest.raises(ValueError, match="NaN"):
        Gaussian().check(torch.tensor([[0.0], [float("nan")]]))


def test_gaussian_units_are_visible_only():
    with pytest.raises(ValueError, match="gaussian units can only be visible"):
        RBM(3, 2, hidden="gaussian")
    with pytest.raises(ValueError, match="gaussian_learned units can only be visible"):
        DBN([4, 3, 2], visible="gaussian", hidden=["relu", "gaussian_learned"])


# --- ReLU units: log-partition, mean and samples against the stepped sigmoid unit ----------------------------
X = torch.linspace(-25, 25, 201, dtype=torch.float64)
STEPS = torch.arange(1, 200, dtype=torch.float64)  # copies n = 1..199: softplus(25 - 199.5) < 1e-75
EM_REMAINDER = 1.25e-4  # bound on S(x) - (A(x) - sigmoid(x)/24), see the stepped sigmoid test below


def test_relu_log_partition_is_the_integral_of_softplus():
    """A(x) = ∫_{-∞}^x softplus(t) dt: against the trapezoid rule on 200,001 points per value."""
    numeric = []
    for x in X.tolist():
        t = torch.linspace(-60.0, x, 200_001, dtype=torch.float64)
        numeric.append(float(torch.trapezoid(F.softplus(t), t)))
    numeric = torch.tensor(numeric, dtype=torch.float64)
    # the trapezoid rule's error here is below (85/200,000)²/12 · max softplus'' ≈ 4e-9 per unit of length
    torch.testing.assert_close(softplus_integral(X), numeric, atol=5e-7, rtol=0)
    assert float(softplus_integral(torch.zeros(1, dtype=torch.float64))) == pytest.approx(math.pi**2 / 12, abs=1e-14)
    # float32 keeps ~7 digits
    torch.testing.assert_close(softplus_integral(X.float()).double(), softplus_integral(X), atol=0, rtol=2e-6)


def test_relu_log_partition_against_the_stepped_sigmoid_sum():
    """S(x) = Σ_n softplus(x - n + ½) = A(x) - sigmoid(x)/24 + O(1.2e-4) (Euler-Maclaurin), so |S - A| ≤ 1/24."""
    exact = F.softplus(X[:, None] - STEPS + 0.5).sum(1)
    approx = softplus_integral(X)
    # the next Euler-Maclaurin terms: 7·sigmoid''(x)/5760 (at most 7·0.0962/5760 = 1.17e-4), then
    # 31·sigmoid''''(x)/967680 (at most 31·0.125/967680 = 4e-6)
    torch.testing.assert_close(exact, approx - torch.sigmoid(X) / 24, atol=EM_REMAINDER, rtol=0)
    assert float((approx - exact).max()) <= 1 / 24 + EM_REMAINDER


def test_relu_mean_is_the_derivative_of_its_log_partition_and_the_stepped_sigmoid_mean():
    x = X.clone().requires_grad_()
    get_units("relu").log_partition(x[None]).sum().backward()
    torch.testing.assert_close(x.grad, ReLU().mean(X), atol=1e-12, rtol=0)
    ssu_mean = torch.sigmoid(X[:, None] - STEPS + 0.5).sum(1)  # Nair & Hinton's Σ_n sigmoid(x - n + ½)
    # Euler-Maclaurin again: Σ_n sigmoid(x - n + ½) = softplus(x) - sigmoid'(x)/24 + 7 sigmoid'''(x)/5760 - ...,
    # the next terms at most 7·(1/8)/5760 = 1.5e-4 and 31·(1/4)/967680 = 8e-6
    sigmoid_1 = torch.sigmoid(X) * torch.sigmoid(-X)
    torch.testing.assert_close(ssu_mean, ReLU().mean(X) - sigmoid_1 / 24, atol=1.7e-4, rtol=0)
    assert float((ReLU().mean(X) - ssu_mean).abs().max()) <= 0.25 / 24 + 1.7e-4  # about 0.0106 at most


def test_relu_samples_are_rectified_gaussians_around_the_pre_activation():
    """u = max(0, x + N(0, sigmoid(x))): the sample mean is x Φ(x/s) + s φ(x/s) with s² = sigmoid(x)."""
    x = torch.tensor([-3.0, -1.0, 0.0, 0.5, 2.0, 6.0], dtype=torch.float64)
    u = ReLU().sample(F.softplus(x).expand(200_000, -1), torch.Generator().manual_seed(0))
    s = torch.sigmoid(x).sqrt()
    normal = torch.distributions.Normal(0.0, 1.0)
    expected = x * normal.cdf(x / s) + s * normal.log_prob(x / s).exp()
    assert (u >= 0).all()
    # the draws' std is at most s ≤ 1: the mean of 200,000 has std ≤ 0.0023; allow 5
    torch.testing.assert_close(u.mean(0), expected, atol=0.0115, rtol=0)
    torch.testing.assert_close(softplus_inverse(F.softplus(x)), x)


def test_relu_rbm_free_energy_matches_an_rbm_of_tied_binary_copies():
    """Each ReLU hidden unit against 60 explicit binary copies with biases c_j - n + ½ (a Bernoulli RBM, itself
    checked against enumeration in test_rbm.py): F_relu(v) - Σ_j sigmoid(x_j)/24 = F_ssu(v) to Euler-Maclaurin order."""
    relu = make_rbm(5, 3, visible="bernoulli", hidden="relu", seed=9)
    copies = 60
    ssu = RBM(5, 3 * copies).double()
    offsets = torch.arange(1, copies + 1, dtype=torch.float64) - 0.5
    with torch.no_grad():
        ssu.weight.copy_(relu.weight.repeat_interleave(copies, 0))
        ssu.visible_bias.copy_(relu.visible_bias)
        ssu.hidden_bias.copy_((relu.hidden_bias[:, None] - offsets).flatten())
        v = all_binary(5)
        pre = relu.hidden_pre(v)
        torch.testing.assert_close(ssu.free_energy(v), relu.free_energy(v) + torch.sigmoid(pre).sum(1) / 24,
                                   atol=3 * EM_REMAINDER, rtol=0)
        # and the SSU's exact mean is softplus to within sigmoid'/24 per unit
        ssu_mean = ssu.hidden_mean(v).view(len(v), 3, copies).sum(-1)
        assert float((relu.hidden_mean(v) - ssu_mean).abs().max()) <= 0.25 / 24 + 1.7e-4


def test_relu_visible_units_take_non_negative_data_and_start_at_its_mean():
    rbm = RBM(3, 2, visible="relu", init_std=0.0)
    mean = torch.tensor([0.05, 1.0, 4.0])
    rbm.init_visible_bias(mean)
    torch.testing.assert_close(rbm.visible_mean(torch.zeros(1, 2))[0], mean)
    with pytest.raises(ValueError, match="ReLU visible units need values >= 0"):
        ReLU().check(torch.tensor([[0.5, -0.1]]))


def test_exact_log_z_and_ais_refuse_what_they_cannot_compute():
    with pytest.raises(ValueError, match="relu hidden units"):
        exact_log_partition(make_rbm(3, 2, "bernoulli", "relu"))
    with pytest.raises(ValueError, match="at most 25 units"):
        exact_log_partition(RBM(3, 26, visible="gaussian"))
    with pytest.raises(ValueError, match="Bernoulli units only.*use exact_log_partition"):
        ais_log_partition(make_rbm(3, 2), n_chains=10, n_betas=10)


# --- CD gradients ----------------------------------------------------------------------------------------------
def cd_closed_form(rbm: RBM, v_data: torch.Tensor, v_model: torch.Tensor, mask: torch.Tensor | None = None):
    """Ascent directions of W, b, c, z for Gaussian visible units (Cho, Raiko & Ilin 2011), with p = E[h | v]:

        ΔW_ji = <p_j v_i/σ_i²>_d - <.>_m,   Δb_i = <m_i (v_i - b_i)/σ_i²>_d - <.>_m,   Δc_j = <p_j>_d - <.>_m,
        Δz_i = <m_i (v_i - b_i)²/(2σ_i²) - v_i (Wᵀp)_i/σ_i²>_d - <.>_m,

    m the mask of observed entries (v zero where m = 0).
    """
    var = torch.ones_like(rbm.visible_bias) if rbm.log_variance is None else torch.exp(rbm.log_variance)
    m_d = torch.ones_like(v_data) if mask is None else mask
    m_m = torch.ones_like(v_model) if mask is None else mask
    with torch.no_grad():
        def stats(v, m):
            p = rbm.hidden_mean(v)
            dev = (v - rbm.visible_bias) * m
            return (p.T @ (v / var) / len(v), (dev / var).mean(0), p.mean(0),
                    (dev.square() / (2 * var) - v * (p @ rbm.weight) / var).mean(0))
        return [d - m for d, m in zip(stats(v_data, m_d), stats(v_model, m_m))]


def _check_gradients(rbm: RBM, step) -> None:
    dW, db, dc, dz = cd_closed_form(rbm, step.v_data, step.v_model, step.mask)
    torch.testing.assert_close(rbm.weight.grad, -dW)
    torch.testing.assert_close(rbm.visible_bias.grad, -db)
    torch.testing.assert_close(rbm.hidden_bias.grad, -dc)
    if rbm.log_variance is not None:
        torch.testing.assert_close(rbm.log_variance.grad, -dz)


@pytest.mark.parametrize("visible", GAUSSIAN)
@pytest.mark.parametrize("hidden", ["bernoulli", "relu"])
@pytest.mark.parametrize("k", [1, 3])
def test_cd_loss_gradient_is_minus_the_closed_form_update_for_gaussian_units(visible, hidden, k):
    rbm = make_rbm(6, 4, visible, hidden, scale=0.5, seed=10)
    v = torch.randn(8, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    step = contrastive_divergence(rbm, v, k=k, generator=torch.Generator().manual_seed(1))
    cd_loss(rbm, step).backward()
    _check_gradients(rbm, step)
    if k == 1:  # replay the chain: the negative phase is the mean b + Wᵀh0, but a sample with learned variances
        with torch.no_grad():
            h0 = rbm.hidden.sample(rbm.hidden_mean(v), torch.Generator().manual_seed(1))
            mean = rbm.visible_mean(h0)
        if visible == "gaussian":
            torch.testing.assert_close(step.v_model, mean)
        else:  # a mean carries no noise variance and would bias the log-variance gradient upwards
            assert float((step.v_model - mean).abs().min()) > 0


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian", "gaussian_learned"])
def test_masked_cd_gradient_leaves_missing_entries_out(visible):
    """With a mask, autograd of the unmasked loss equals the closed form over observed entries only, and no
    weight of an entry missing in every row moves."""
    rbm = make_rbm(6, 4, visible, scale=0.5, seed=11)
    g = torch.Generator().manual_seed(2)
    mask = (torch.rand(8, 6, generator=g) < 0.6).double()
    mask[:, 5] = 0.0
    if visible == "bernoulli":
        v = (torch.rand(8, 6, generator=g) < 0.5).double() * mask
    else:
        v = torch.randn(8, 6, generator=g, dtype=torch.float64) * mask
    step = contrastive_divergence(rbm, v, k=2, generator=torch.Generator().manual_seed(3), mask=mask)
    assert torch.equal(step.v_model * (1 - mask), torch.zeros_like(v))
    loss = cd_loss(rbm, step)
    loss.backward()
    _check_gradients(rbm, step)
    assert torch.equal(rbm.weight.grad[:, 5], torch.zeros(4, dtype=torch.float64))
    assert float(rbm.visible_bias.grad[5]) == 0.0
    # the loss value is the masked free-energy difference: the missing terms cancel row by row
    with torch.no_grad():
        masked = rbm.free_energy(step.v_data, mask=mask).mean() - rbm.free_energy(step.v_model, mask=mask).mean()
    assert float(loss.detach()) == pytest.approx(float(masked), abs=1e-10)
    with pytest.raises(ValueError, match="missing values need CD"):
        contrastive_divergence(rbm, v, mask=mask, chains=torch.zeros(3, 6, dtype=torch.float64))


@pytest.mark.parametrize("hidden", ["bernoulli", "relu"])
def test_free_energy_gradient_of_the_log_variance_matches_finite_differences(hidden):
    rbm = make_rbm(4, 3, "gaussian_learned", hidden, seed=12)
    v = torch.randn(5, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 1.5
    rbm.free_energy(v).sum().backward()
    eps = 1e-6
    z = rbm.log_variance.data
    for i in range(4):
        old = float(z[i])
        with torch.no_grad():
            z[i] = old + eps
            up = float(rbm.free_energy(v).sum())
            z[i] = old - eps
            down = float(rbm.free_energy(v).sum())
            z[i] = old
        assert float(rbm.log_variance.grad[i]) == pytest.approx((up - down) / (2 * eps), abs=1e-6)


def test_module_trains_the_log_variance_without_weight_decay_and_saves_it(tmp_path):
    rbm = make_rbm(5, 3, "gaussian_learned", seed=13)
    module = RBMModule(rbm, lr=0.1, momentum=0.0, final_momentum=0.0, weight_decay=0.5)
    opt = module.configure_optimizers()
    groups = {id(p): group["weight_decay"] for group in opt.param_groups for p in group["params"]}
    assert groups[id(rbm.log_variance)] == 0.0 and groups[id(rbm.weight)] == 0.5
    z0 = rbm.log_variance.detach().clone()
    v = torch.randn(16, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2
    module.training_step((v,), 0)  # the update itself, with the module's own optimizer when called by hand
    assert not torch.equal(rbm.log_variance.detach(), z0)
    # a DBN keeps the unit types and the learned variances through save/load
    model = DBN([5, 3, 2], visible="gaussian_learned", hidden=["relu", "bernoulli"]).double()
    with torch.no_grad():
        model.layers[0].log_variance.copy_(torch.linspace(-1, 1, 5))
    model.input_scaling = {"kind": "standard", "offset": [1.0] * 5, "scale": [2.0] * 5}
    model.save(tmp_path / "m.pt")
    loaded = DBN.load(tmp_path / "m.pt")
    types = [(r.visible.name, r.hidden.name) for r in loaded.layers]
    assert types == [("gaussian_learned", "relu"), ("relu", "bernoulli")]
    torch.testing.assert_close(loaded.layers[0].log_variance, torch.linspace(-1, 1, 5))
    assert loaded.input_scaling == model.input_scaling
    torch.testing.assert_close(loaded.preprocess(torch.full((2, 5), 3.0)), torch.ones(2, 5))


# --- K-way softmax visible units ---------------------------------------------------------------------------------
def one_hot_states(groups: int, k: int) -> torch.Tensor:
    """Every visible state with exactly one unit on per group, (k**groups, groups*k)."""
    codes = torch.cartesian_prod(*[torch.arange(k)] * groups).reshape(-1, groups)
    return F.one_hot(codes, k).flatten(1).double()


def test_softmax_visible_conditional_matches_enumeration_of_one_hot_states():
    rbm = make_rbm(6, 3, "softmax3", seed=14)
    vs, hs = one_hot_states(2, 3), all_binary(3)
    with torch.no_grad():
        for h in hs:
            p = torch.softmax(-rbm.energy(vs, h.expand(len(vs), -1)), 0)  # p(v | h) over the 9 legal states
            torch.testing.assert_close(rbm.visible_mean(h[None])[0], p @ vs)
        # the free energy sums the hidden units out as for binary visible units
        energies = torch.stack([rbm.energy(vs, h.expand(len(vs), -1)) for h in hs], dim=1)
        torch.testing.assert_close(rbm.free_energy(vs), -torch.logsumexp(-energies, dim=1))


def test_softmax_gibbs_chain_samples_the_model_distribution():
    rbm = make_rbm(6, 3, "softmax3", scale=0.8, seed=15)
    vs = one_hot_states(2, 3)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        p_exact = torch.softmax(-rbm.free_energy(vs), 0)
        v = rbm.gibbs(vs[torch.zeros(20_000, dtype=torch.long)], steps=30, generator=g)
        assert torch.equal(v.view(-1, 2, 3).sum(-1), torch.ones(20_000, 2, dtype=torch.float64))
        codes = (v.view(-1, 2, 3).argmax(-1) * torch.tensor([3, 1])).sum(1)
        p_emp = torch.bincount(codes, minlength=9).double() / len(v)
    # as for binary units (test_rbm.py): an exact sampler is ~0.01 from p in total variation, a wrong one > 0.1
    assert 0.5 * (p_emp - p_exact).abs().sum() < 0.03


def test_softmax_encode_decode_and_data_check():
    units = get_units("softmax5")
    assert units is get_units("SOFTMAX5") and units.group == 5
    hot = units.encode(torch.tensor([[1.0, float("nan"), 5.0]]))
    assert torch.equal(hot[0, :5], torch.tensor([1.0, 0, 0, 0, 0])) and torch.isnan(hot[0, 5:10]).all()
    assert float(units.decode(torch.nan_to_num(hot))[0, 2]) == 5.0
    with pytest.raises(ValueError, match=r"integer ratings 1\.\.5"):
        units.encode(torch.tensor([[0.0, 2.5]]))
    units.check(torch.nan_to_num(hot))  # a missing rating is a zero group
    with pytest.raises(ValueError, match=r"not one-hot in groups of 5.*data\.one_hot=5"):
        units.check(torch.full((1, 5), 0.5))
    with pytest.raises(ValueError, match="not a multiple of K = 5"):
        units.check(torch.zeros(2, 7))
    with pytest.raises(ValueError, match="softmax5 units can only be visible"):
        RBM(3, 5, hidden="softmax5")


def test_masked_cd_gradient_with_softmax_units_leaves_missing_ratings_out():
    rbm = make_rbm(12, 4, "softmax3", scale=0.5, seed=16)
    g = torch.Generator().manual_seed(6)
    v = F.one_hot(torch.randint(0, 3, (8, 4), generator=g), 3).flatten(1).double()
    mask = (torch.rand(8, 4, generator=g) < 0.6).double().repeat_interleave(3, 1)  # whole ratings go missing
    step = contrastive_divergence(rbm, v * mask, k=2, generator=torch.Generator().manual_seed(7), mask=mask)
    cd_loss(rbm, step).backward()
    _check_gradients(rbm, step)
    # a distribution over the K levels where observed, zeros elsewhere
    torch.testing.assert_close(step.v_model.view(8, 4, 3).sum(-1), mask[:, ::3])


def test_fast_softplus_keeps_torch_accuracy_without_log1p():
    """dbn.special.softplus (max(x, 0) - log sigmoid(|x|) without autograd) against float64 over [-120, 120]."""
    x = torch.linspace(-120.0, 120.0, 2_000_001, dtype=torch.float64)
    y = x.float()
    ref = F.softplus(y.double())
    # float32: within 1.2e-7 absolute plus 1.2e-7 relative (torch's own float32 softplus: 5.4e-7 at 120)
    torch.testing.assert_close(softplus(y).double(), ref, atol=1.2e-7, rtol=1.2e-7)
    # bfloat16: two roundings then the sum's, within 1.5 half-ulps (2^-8 relative) plus 2^-9 absolute
    z = x.to(torch.bfloat16)
    ref = F.softplus(z.double())
    assert float(((softplus(z).double() - ref).abs() / (ref * 2**-8 + 2**-9)).max()) <= 1.5
    edges = torch.tensor([float("inf"), -float("inf"), 1e38, -1e38, 0.0])
    torch.testing.assert_close(softplus(edges), F.softplus(edges))
    assert softplus(torch.tensor([float("nan")])).isnan().all()


def test_fast_softplus_leaves_gradients_and_float64_to_torch():
    """Under autograd the result and its gradient are F.softplus's (backward: sigmoid); float64 is F.softplus."""
    x = torch.linspace(-30.0, 30.0, 601, requires_grad=True)
    x_torch = x.detach().clone().requires_grad_()
    softplus(x).sum().backward()
    F.softplus(x_torch).sum().backward()
    assert torch.equal(x.grad, x_torch.grad)
    torch.testing.assert_close(x.grad, torch.sigmoid(x.detach()))
    x64 = torch.linspace(-30.0, 30.0, 601, dtype=torch.float64)
    assert torch.equal(softplus(x64), F.softplus(x64))


def test_fast_softplus_is_for_the_cpu_only(monkeypatch):
    """Off the CPU (here the meta device) F.softplus, one fused kernel on a GPU, is used; on the CPU the fast form."""
    import dbn.special

    seen = []
    monkeypatch.setattr(dbn.special.F, "softplus", lambda x: seen.append(x.device.type) or x)
    softplus(torch.zeros(3, device="meta"))
    softplus(torch.zeros(3))
    assert seen == ["meta"]
