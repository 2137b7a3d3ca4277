"""Parallel tempering (dbn.sampling.parallel_tempering) on a bimodal RBM small enough to enumerate."""

from __future__ import annotations

import pytest
import torch

from dbn.eval import free_energies
from dbn.eval.partition import binary_states
from dbn.rbm import RBM
from dbn.sampling import geometric_betas, parallel_tempering


def bimodal_rbm() -> RBM:
    """8 visible units, 1 hidden unit: two equally likely modes (all off / all on), Gibbs barely crosses."""
    rbm = RBM(8, 1, init_std=0.0).double()
    with torch.no_grad():
        # with b = -3, W = 6, c = -24 both modes carry the same mass: e^c (1 + e^3)^8 = (1 + e^-3)^8
        rbm.weight.fill_(6.0)
        rbm.visible_bias.fill_(-3.0)
        rbm.hidden_bias.fill_(-24.0)
    return rbm


def exact_count_distribution(rbm: RBM) -> torch.Tensor:
    """p(Σ_i v_i = s), s = 0..8, by enumeration of the 256 visible states."""
    states = binary_states(8, 0, 256, torch.float64, torch.device("cpu"))
    p = torch.softmax(-free_energies(rbm, states), 0)
    return torch.zeros(9, dtype=torch.float64).index_add_(0, states.sum(1).long(), p)


def empirical(samples: list[torch.Tensor]) -> torch.Tensor:
    counts = torch.zeros(9, dtype=torch.float64)
    for v in samples:
        counts.index_add_(0, v.sum(1).long(), torch.ones(len(v), dtype=torch.float64))
    return counts / counts.sum()


def test_tempered_chains_sample_the_exact_distribution_where_gibbs_is_stuck():
    rbm, g = bimodal_rbm(), torch.Generator().manual_seed(0)
    exact = exact_count_distribution(rbm)
    chains = torch.zeros(8, 100, 8, dtype=torch.float64)  # every chain starts in the all-off mode
    gibbs = torch.zeros(100, 8, dtype=torch.float64)
    pt_samples, gibbs_samples = [], []
    for sweep in range(400):
        rates = parallel_tempering(rbm, chains, geometric_betas(8, 0.05), generator=g)
        gibbs = rbm.gibbs(gibbs, 1, g)
        if sweep >= 100:
            pt_samples.append(chains[0].clone())
            gibbs_samples.append(gibbs)
    tv_pt = float((empirical(pt_samples) - exact).abs().sum() / 2)
    tv_gibbs = float((empirical(gibbs_samples) - exact).abs().sum() / 2)
    assert tv_pt < 0.03, f"β = 1 chains are {tv_pt:.3f} in total variation from the exact distribution"
    assert tv_gibbs > 0.3, f"plain Gibbs was expected to stay in its starting mode (TV {tv_gibbs:.3f})"
    assert rates.shape == (7,) and bool(((rates > 0) & (rates <= 1)).all())
    assert set(chains.unique().tolist()) <= {0.0, 1.0}


def test_geometric_ladder_and_input_checks():
    betas = geometric_betas(4, 0.125)
    torch.testing.assert_close(betas, torch.tensor([1.0, 0.5, 0.25, 0.125], dtype=torch.float64))
    with pytest.raises(ValueError, match="n_temperatures must be >= 2"):
        geometric_betas(1)
    with pytest.raises(ValueError, match="Bernoulli visible and hidden"):
        parallel_tempering(RBM(4, 2, visible="gaussian"), torch.zeros(2, 3, 4), torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="betas\\[0\\] = 1"):
        parallel_tempering(RBM(4, 2), torch.zeros(2, 3, 4), torch.tensor([0.9, 0.5]))


def test_rbm_module_trains_with_tempered_chains_and_logs_swap_rates():
    """pretrain.sampler=pt: the chains buffer holds the ladder, the β = 1 rows give the gradient, rates are logged."""
    import lightning as L

    from dbn.data import PretrainDataModule
    from dbn.training.rbm_module import RBMModule

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(120, 10, generator=g) < 0.3).float()
    module = RBMModule(RBM(10, 6, generator=g), persistent=True, n_chains=7, sampler="pt", n_temperatures=4,
                       batch_size=20, steps_per_batch=3, epochs=2, log_prefix="t")
    assert module.chains.shape == (28, 10)
    w0 = module.rbm.weight.detach().clone()
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_model_summary=False,
                        accelerator="cpu", num_sanity_val_steps=0)
    trainer.fit(module, datamodule=PretrainDataModule(x, x[:20], batch_size=module.loader_batch_size, monitor_size=20))
    rates = [float(trainer.callback_metrics[f"t/pt/swap_rate_{t}_{t + 1}"]) for t in range(3)]
    assert all(0 < r <= 1 for r in rates)
    assert not torch.equal(module.rbm.weight.detach(), w0) and set(module.chains.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("kwargs,msg", [
    ({"sampler": "pt"}, "set persistent=true"),
    ({"sampler": "pt", "persistent": True, "n_temperatures": 1}, "n_temperatures must be >= 2"),
    ({"sampler": "metropolis"}, "sampler must be one of"),
])
def test_rbm_module_rejects_impossible_tempering(kwargs, msg):
    from dbn.training.rbm_module import RBMModule

    with pytest.raises(ValueError, match=msg):
        RBMModule(RBM(4, 2), **kwargs)
    with pytest.raises(ValueError, match="Bernoulli visible and hidden"):
        RBMModule(RBM(4, 2, visible="gaussian"), sampler="pt", persistent=True)


def test_dbn_train_refuses_tempering_of_real_valued_layers_before_any_data_is_loaded(tmp_path):
    from hydra import compose, initialize_config_module

    from dbn.errors import ConfigError
    from dbn.training.build import check_config

    with initialize_config_module("dbn.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"run_dir={tmp_path}", "pretrain.sampler=pt", "pretrain.persistent=true",
                                          "model.hidden_units=[bernoulli,relu]"])
    with pytest.raises(ConfigError, match="layer 1 has bernoulli visible and relu hidden units.*layers.1.sampler=gibbs"):
        check_config(cfg)
