"""The explicit CD update (dbn.sampling.cd_gradients, dbn.update.cd_update) against autograd and torch's SGD."""

from __future__ import annotations

import itertools
from functools import partial

import pytest
import torch

from dbn.rbm import RBM
from dbn.sampling import cd_gradients, cd_loss, contrastive_divergence, sparsity_coefficients, sparsity_penalty
from dbn.training.rbm_module import RBMModule
from dbn.update import cd_update

UNIT_PAIRS = list(itertools.product(["bernoulli", "gaussian", "gaussian_learned", "relu", "softmax3"],
                                    ["bernoulli", "relu"]))
MODES = ["cd", "pcd", "missing", "sparsity"]


def perturbed_rbm(visible: str, hidden: str, seed: int = 0, n_visible: int = 12, n_hidden: int = 5) -> RBM:
    """A float64 RBM with every parameter (biases and variances too) away from its initial value."""
    g = torch.Generator().manual_seed(seed)
    rbm = RBM(n_visible, n_hidden, visible=visible, hidden=hidden, init_std=0.3, generator=g).double()
    with torch.no_grad():
        for p in rbm.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return rbm


def data_for(rbm: RBM, n: int = 8, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if rbm.visible.name.startswith("softmax"):
        return rbm.visible.sample(rbm.visible.mean(torch.randn(n, rbm.n_visible, generator=g, dtype=torch.float64)),
                                  generator=g)
    if rbm.visible.name.startswith("gaussian"):
        return torch.randn(n, rbm.n_visible, generator=g, dtype=torch.float64)
    return torch.rand(n, rbm.n_visible, generator=g, dtype=torch.float64)


def step_for(rbm: RBM, v: torch.Tensor, mode: str):
    g = torch.Generator().manual_seed(2)
    mask = None
    if mode == "missing":
        mask = (torch.rand(v.shape, generator=g) < 0.75).double()
        v = v * mask
    chains = None
    if mode == "pcd":  # 6 chains for 8 data rows: the two phases have different sizes
        chains = rbm.visible.sample(v[torch.arange(6) % len(v)], generator=g, log_var=rbm.log_variance).detach()
    return contrastive_divergence(rbm, v, k=2, chains=chains, mask=mask, generator=g)


@pytest.mark.parametrize("visible,hidden", UNIT_PAIRS)
@pytest.mark.parametrize("mode", MODES)
def test_closed_form_gradient_equals_autograd_of_the_free_energy_surrogate(visible, hidden, mode):
    rbm = perturbed_rbm(visible, hidden)
    step = step_for(rbm, data_for(rbm), mode)
    q = torch.full((rbm.n_hidden,), 0.3, dtype=torch.float64)
    loss = cd_loss(rbm, step)
    reference = loss + (sparsity_penalty(step.pre_data, q.clone(), 0.1, 0.5, rbm.hidden.mean) if mode == "sparsity"
                        else 0.0)
    reference.backward()
    coeffs = sparsity_coefficients(step.hidden_data, q.clone(), 0.1, 0.5) if mode == "sparsity" else None
    grads, value = cd_gradients(rbm, step, coeffs)
    assert set(grads) == {name for name, _ in rbm.named_parameters()}
    for name, p in rbm.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-10, atol=1e-12, msg=f"{name} of {visible}/{hidden}")
    torch.testing.assert_close(value, loss.detach())


def test_missing_entries_get_no_gradient():
    rbm = perturbed_rbm("gaussian_learned", "bernoulli")
    v = data_for(rbm)
    mask = torch.ones_like(v)
    mask[:, 3] = 0  # feature 3 missing in every row
    grads, _ = cd_gradients(rbm, contrastive_divergence(rbm, v * mask, mask=mask))
    assert grads["weight"][:, 3].abs().max() == 0
    assert grads["visible_bias"][3] == 0 and grads["log_variance"][3] == 0


def _torch_sgd_reference(rbm: RBM, steps, lr, momentum, weight_decay):
    """torch.optim.SGD on the autograd gradient of cd_loss, decay on the weights only, on the given chain steps."""
    groups = [{"params": [rbm.weight], "weight_decay": weight_decay},
              {"params": [rbm.visible_bias, rbm.hidden_bias], "weight_decay": 0.0}]
    opt = torch.optim.SGD(groups, lr=lr, momentum=momentum)
    for v, seed in steps:
        step = contrastive_divergence(rbm, v, generator=torch.Generator().manual_seed(seed))
        opt.zero_grad()
        cd_loss(rbm, step).backward()
        opt.step()
    return rbm


def test_cd_update_is_torch_sgd_with_momentum_and_weight_decay_on_the_cd_gradient():
    """Five updates with momentum 0.9: the same parameters as torch's SGD stepping autograd's gradient."""
    data = [(data_for(perturbed_rbm("bernoulli", "bernoulli"), seed=s), 10 + s) for s in range(5)]
    ref = _torch_sgd_reference(perturbed_rbm("bernoulli", "bernoulli"), data, 0.1, 0.9, 0.01)
    rbm = perturbed_rbm("bernoulli", "bernoulli")
    opt = torch.optim.SGD([{"params": [rbm.weight], "weight_decay": 0.01},
                           {"params": [rbm.visible_bias, rbm.hidden_bias], "weight_decay": 0.0}], lr=0.1, momentum=0.9)
    for v, seed in data:
        cd_update(rbm, v, opt, generator=torch.Generator().manual_seed(seed))
    for (name, p), q in zip(rbm.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=name)
        assert p.grad is None  # the update leaves .grad alone: an optimizer.step after it does nothing
    # torch SGD's own state: a checkpoint of the optimizer holds the momentum
    assert all("momentum_buffer" in opt.state[p] for p in rbm.parameters())


def test_cd_update_averages_the_gradient_before_the_momentum():
    """Under DDP ``average`` is the all-reduce mean; halving the gradient there halves the first step."""
    v = data_for(perturbed_rbm("bernoulli", "bernoulli"))
    moved = []
    for average in (None, lambda flat: flat * 0.5):
        rbm = perturbed_rbm("bernoulli", "bernoulli")
        before = rbm.weight.detach().clone()
        opt = torch.optim.SGD(rbm.parameters(), lr=0.1, momentum=0.5)
        cd_update(rbm, v, opt, average=average, generator=torch.Generator().manual_seed(3))
        moved.append(rbm.weight.detach() - before)
    torch.testing.assert_close(moved[1], 0.5 * moved[0])


def test_cd_update_refuses_momentum_variants_it_does_not_implement():
    rbm = perturbed_rbm("bernoulli", "bernoulli")
    with pytest.raises(ValueError, match="nesterov"):
        cd_update(rbm, data_for(rbm), torch.optim.SGD(rbm.parameters(), lr=0.1, momentum=0.5, nesterov=True))
    with pytest.raises(TypeError, match="needs an SGD optimizer, got Adam"):
        cd_update(rbm, data_for(rbm), torch.optim.Adam(rbm.parameters()))


def test_bfloat16_update_runs_the_products_in_bfloat16_and_keeps_float32_master_weights():
    """Mixed precision: bf16 products on a working copy, fp32 weights and momentum, close to the fp32 update."""
    torch.manual_seed(0)
    x = (torch.rand(64, 40) < 0.3).float()
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        rbm = RBM(40, 20, generator=torch.Generator().manual_seed(1))
        w0 = rbm.weight.detach().clone()
        opt = torch.optim.SGD(rbm.parameters(), lr=0.1, momentum=0.5)
        step, _ = cd_update(rbm, x, opt, dtype=dtype, generator=torch.Generator().manual_seed(2))
        assert rbm.weight.dtype == torch.float32 and opt.state[rbm.weight]["momentum_buffer"].dtype == torch.float32
        assert step.v_model.dtype == dtype and step.pre_data.dtype == dtype
        results[dtype] = rbm.weight.detach() - w0
    delta, ref = results[torch.bfloat16], results[torch.float32]
    assert (delta - ref).norm() < 0.05 * ref.norm()  # bf16 keeps 8 bits: a percent-level difference in the step


def test_working_copy_is_kept_between_updates_and_always_equals_the_cast_parameters():
    """Mixed precision's bf16 copy is one object per RBM, refreshed in place from the fp32 master at every call: the
    values of ``p.to(bfloat16)`` (the rounding of the copy made afresh at every update before)."""
    rbm = RBM(40, 20, visible="gaussian_learned", generator=torch.Generator().manual_seed(1))
    opt = torch.optim.SGD(rbm.parameters(), lr=0.1, momentum=0.5)
    first = rbm.working_copy(torch.bfloat16)
    assert rbm.working_copy(torch.float32) is rbm
    x = torch.randn(16, 40, generator=torch.Generator().manual_seed(2))
    for _ in range(3):
        cd_update(rbm, x, opt, dtype=torch.bfloat16)
        twin = rbm.working_copy(torch.bfloat16)
        assert twin is first and twin is not rbm
        for (name, p), (twin_name, q) in zip(rbm.named_parameters(), twin.named_parameters(), strict=True):
            assert name == twin_name and q.dtype == torch.bfloat16 and not q.requires_grad
            assert torch.equal(q, p.detach().to(torch.bfloat16))  # the update moved p; the copy followed
    assert set(rbm.state_dict()) == {name for name, _ in rbm.named_parameters()}  # the copy is no submodule
    rbm.double()  # float64 masters, or a parameter replaced by another tensor: the copy follows them too
    rbm.hidden_bias = torch.nn.Parameter(torch.linspace(-1, 1, 20, dtype=torch.float64))
    twin = rbm.working_copy(torch.bfloat16)
    for p, q in zip(rbm.parameters(), twin.parameters(), strict=True):
        assert torch.equal(q, p.detach().to(torch.bfloat16))


@pytest.mark.slow
def test_compiled_bfloat16_update_traces_whole_and_keeps_compiling_through_a_deep_stack(monkeypatch):
    """pretrain.compile with bf16-mixed: the step compiles as one graph (making the working copy inside it broke
    the graph, and the broken-off frames, shared by every layer, hit dynamo's recompilation limit at the ninth
    layer of a stack and ran eagerly from then on; here that limit raises)."""
    import torch._dynamo.config as dynamo_config
    from torch._dynamo.utils import counters

    monkeypatch.setattr(dynamo_config, "fail_on_recompile_limit_hit", True)
    breaks = sum(counters["graph_break"].values())
    widths = list(range(30, 8, -2))  # 10 layers
    v = (torch.rand(37, widths[0], generator=torch.Generator().manual_seed(0)) < 0.4).float()
    for layer, (n_v, n_h) in enumerate(itertools.pairwise(widths)):
        module = RBMModule(RBM(n_v, n_h, generator=torch.Generator().manual_seed(layer)), batch_size=10,
                           steps_per_batch=4, lr=0.1, momentum=0.5, compile=True)
        w0 = module.rbm.weight.detach().clone()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            module.training_step((v,), 0)
        assert module.rbm.weight.dtype == torch.float32 and not torch.equal(module.rbm.weight, w0)
        v = module.rbm.hidden_mean(v).detach()
    assert sum(counters["graph_break"].values()) == breaks


def test_explicit_cd1_update_costs_four_products_of_five_products_work():
    """Positive and negative pre-activations, the reconstruction, and one stacked weight-gradient product."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountProducts(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.flops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in ("mm", "addmm"):
                a, b = args[-2], args[-1]
                self.flops.append(2 * a.shape[0] * a.shape[1] * b.shape[1])
            return func(*args, **(kwargs or {}))

    rbm = RBM(20, 12)
    opt = torch.optim.SGD(rbm.parameters(), lr=0.1, momentum=0.5)
    with CountProducts() as counter:
        cd_update(rbm, (torch.rand(16, 20) < 0.5).float(), opt, monitor=False)
    assert len(counter.flops) == 4 and sum(counter.flops) == 5 * 2 * 16 * 20 * 12


def test_module_steps_per_batch_splits_a_loader_batch_into_updates():
    """A loader batch of 3 x 8 rows with batch_size 8 is three updates: the same as three batches of 8."""
    x = (torch.rand(24, 10, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    split = RBMModule(RBM(10, 6, generator=torch.Generator().manual_seed(1)), batch_size=8, steps_per_batch=3,
                      lr=0.1, momentum=0.5)
    single = RBMModule(RBM(10, 6, generator=torch.Generator().manual_seed(1)), lr=0.1, momentum=0.5)
    assert split.loader_batch_size == 24 and single.loader_batch_size is None
    torch.manual_seed(5)
    split.training_step((x,), 0)
    torch.manual_seed(5)
    for rows in x.split(8):
        single.training_step((rows,), 0)
    for p, q in zip(split.rbm.parameters(), single.rbm.parameters()):
        torch.testing.assert_close(p, q)


def test_module_rejects_steps_per_batch_without_a_batch_size():
    with pytest.raises(ValueError, match="steps_per_batch=4 needs a batch_size"):
        RBMModule(RBM(4, 2), steps_per_batch=4)
    with pytest.raises(ValueError, match="steps_per_batch must be >= 1"):
        RBMModule(RBM(4, 2), batch_size=8, steps_per_batch=0)


def test_finetune_steps_per_batch_takes_the_same_steps_as_one_batch_each():
    """Fine-tuning: one epoch with loader batches of 3 x 8 rows and batch_size 8 ends where 8-row batches end."""
    import lightning as L

    from dbn import DBN
    from dbn.data.base import batch_loader
    from dbn.training.finetune import FineTuneModule

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(48, 10, generator=g), torch.randint(0, 3, (48,), generator=g)
    finals = []
    for steps in (3, 1):
        torch.manual_seed(0)
        net = DBN([10, 8, 6], n_classes=3)
        module = FineTuneModule(net, batch_size=8, steps_per_batch=steps)
        trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_model_summary=False,
                            accelerator="cpu", num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(module, train_dataloaders=batch_loader(x, y, batch_size=module.loader_batch_size))
        assert trainer.global_step == 6  # optimizer steps, whatever the loader batch
        finals.append([p.detach().clone() for p in net.parameters()])
    for p, q in zip(*finals):
        torch.testing.assert_close(p, q)


def test_finetune_epoch_train_metrics_cover_every_step_once():
    """The epoch's train loss and accuracy, updated once per loader batch of several steps (and a short last one),
    are the row-weighted loss and the accuracy over every row, each step counted once (L-BFGS's closure runs
    several times a step). With lr = 0 and no dropout the net is fixed, so they are its loss and accuracy."""
    import lightning as L
    import torch.nn.functional as F

    from dbn import DBN
    from dbn.data.base import batch_loader
    from dbn.training.finetune import FineTuneModule

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(45, 10, generator=g), torch.randint(0, 3, (45,), generator=g)
    for optimizer in (partial(torch.optim.SGD, lr=0.0), partial(torch.optim.LBFGS, lr=0.0, max_iter=3)):
        torch.manual_seed(0)
        net = DBN([10, 8, 6], n_classes=3)
        with torch.no_grad():
            logits = net(x)
        module = FineTuneModule(net, optimizer=optimizer, dropout=0.0, batch_size=8, steps_per_batch=3)
        trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_model_summary=False,
                            accelerator="cpu", num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(module, train_dataloaders=batch_loader(x, y, batch_size=module.loader_batch_size))
        metrics = trainer.callback_metrics
        torch.testing.assert_close(metrics["finetune/train/loss"], F.cross_entropy(logits, y))
        torch.testing.assert_close(metrics["finetune/train/acc"], (logits.argmax(1) == y).float().mean())


@pytest.mark.slow
def test_compiled_update_matches_the_eager_update_across_layers_schedules_and_short_batches(monkeypatch):
    """pretrain.compile: the compiled update takes the same steps (float rounding apart) as the eager one, through
    what a run asks of it: a stack of layers of different widths, a learning rate that changes between batches, a
    short last minibatch, weight decay and centering.

    Before the fix, the second layer (or a short batch) failed to trace (``torch.rand`` of symbolic sizes), and a
    learning-rate schedule or a fourth layer exhausted dynamo's recompilation limit, after which it ran eagerly
    without saying so; here that limit raises. Inductor draws its random numbers from its own generator;
    ``fallback_random`` makes it use torch's, so that both runs see the same chain.
    """
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config
    from torch._dynamo.utils import counters

    monkeypatch.setattr(inductor_config, "fallback_random", True)
    monkeypatch.setattr(dynamo_config, "fail_on_recompile_limit_hit", True)
    widths = [12, 9, 7, 6, 5]
    x = (torch.rand(37, widths[0], generator=torch.Generator().manual_seed(0)) < 0.4).float()  # 4 x 10 rows: 7 last
    finals = []
    for compiled in (False, True):
        graphs = counters["stats"]["unique_graphs"]
        params, v = [], x
        for layer, (n_v, n_h) in enumerate(itertools.pairwise(widths)):
            rbm = RBM(n_v, n_h, generator=torch.Generator().manual_seed(layer))
            module = RBMModule(rbm, batch_size=10, steps_per_batch=4, lr=0.1, momentum=0.5, weight_decay=1e-3,
                               centering=layer == 1, compile=compiled)
            torch.manual_seed(3)
            for lr in (0.1, 0.08, 0.06):  # a linear schedule's rates, one per batch of 4 updates
                module._optimizer().param_groups[0]["lr"] = lr
                module.training_step((v,), 0)
            params += [p.detach().clone() for p in module.rbm.parameters()]
            v = module.rbm.hidden_mean(v).detach()
        finals.append(params)
        if compiled:
            assert counters["stats"]["unique_graphs"] > graphs  # the compiled runs did compile
    for p, q in zip(*finals):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
