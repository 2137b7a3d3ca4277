"""ConvRBM: the dense RBM with the Toeplitz weight matrix, probabilistic max-pooling against enumeration, CD through RBMModule."""

from __future__ import annotations

import itertools
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dbn import RBM
from dbn.conv import ConvRBM
from dbn.sampling import cd_gradients, cd_loss, contrastive_divergence
from dbn.training.rbm_module import RBMModule


def _conv(visible="bernoulli", pooling=None, shape=(2, 5, 5), filters=3, kernel=2, seed=0, hidden="bernoulli"):
    g = torch.Generator().manual_seed(seed)
    rbm = ConvRBM(shape, filters, kernel, visible=visible, pooling=pooling, init_std=0.5, generator=g,
                  hidden=hidden).double()
    with torch.no_grad():
        rbm.visible_bias.normal_(0, 0.5, generator=g)
        rbm.hidden_bias.normal_(0, 0.5, generator=g)
    return rbm


def _toeplitz(conv: ConvRBM) -> RBM:
    """The dense RBM with the conv layer's weight matrix (columns = responses to unit images) and repeated biases."""
    dense = RBM(conv.n_visible, conv.n_hidden, visible=conv.visible.name, hidden=conv.hidden_units, init_std=0.0).double()
    eye = torch.eye(conv.n_visible, dtype=torch.float64)
    with torch.no_grad():
        c_full = conv.hidden_bias.repeat_interleave(conv.n_hidden // conv.hidden_shape[0])
        dense.weight.copy_((conv.hidden_pre(eye) - c_full).t())
        dense.hidden_bias.copy_(c_full)
        dense.visible_bias.copy_(conv.unit_visible_bias())
    return dense


#: (visible, hidden, pooling) of the layers checked against the dense RBM and autograd: binary maps with and
#: without probabilistic pooling, and noisy rectified maps (above pixels, and above a ReLU layer below)
UNITS = [("bernoulli", "bernoulli", None), ("gaussian", "bernoulli", None), ("bernoulli", "bernoulli", "probabilistic"),
         ("gaussian", "bernoulli", "probabilistic"), ("bernoulli", "relu", None), ("relu", "relu", None),
         ("gaussian", "relu", None)]


def _visible_states(conv: ConvRBM, n: int, g: torch.Generator):
    v = torch.rand(n, conv.n_visible, generator=g, dtype=torch.float64)
    return {"bernoulli": (v < 0.5).double(), "relu": 3 * v * (v > 0.3)}.get(conv.visible.name, v)


# one channel: the products as matrix products on unfolded patches; two: conv2d (see ConvRBM._unfolded)
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(("visible", "hidden", "pooling"), UNITS)
def test_conv_rbm_is_the_dense_rbm_with_the_toeplitz_matrix(visible, hidden, pooling, channels):
    conv = _conv(visible, pooling, shape=(channels, 5, 5), hidden=hidden)
    dense = _toeplitz(conv)
    g = torch.Generator().manual_seed(1)
    v = _visible_states(conv, 7, g)
    h = (torch.rand(7, conv.n_hidden, generator=g, dtype=torch.float64) < 0.5).double()
    # pooled hidden units are not the dense layer's independent ones: with pooling only the products must agree
    for name in ("hidden_pre", "hidden_mean", "free_energy") if pooling is None else ("hidden_pre",):
        torch.testing.assert_close(getattr(conv, name)(v), getattr(dense, name)(v), msg=name)
    for name in ("visible_pre", "visible_mean"):
        torch.testing.assert_close(getattr(conv, name)(h), getattr(dense, name)(h), msg=name)
    torch.testing.assert_close(conv.energy(v, h), dense.energy(v, h))
    # the transposed product really is the transpose: Wᵀh against the dense matrix
    torch.testing.assert_close(conv.visible_pre(h) - conv.unit_visible_bias(), h @ dense.weight)
    # in the layer's hidden layout (block-major with probabilistic pooling), the maps are conv2d's
    maps = torch.nn.functional.conv2d(v.view(-1, channels, 5, 5), conv.weight, conv.hidden_bias)
    torch.testing.assert_close(conv.hidden_maps(conv.hidden_pre(v)), maps)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(("visible", "hidden", "pooling"), UNITS)
def test_closed_form_cd_gradient_equals_autograd_for_conv_layers(visible, hidden, pooling, channels):
    conv = _conv(visible, pooling, shape=(channels, 5, 5), kernel=2, hidden=hidden)  # 4x4 maps: 2x2 blocks fit
    v = _visible_states(conv, 6, torch.Generator().manual_seed(2))
    step = contrastive_divergence(conv, v, k=2, generator=torch.Generator().manual_seed(3))
    conv.zero_grad()
    cd_loss(conv, step).backward()
    with torch.no_grad():
        closed, _ = cd_gradients(conv, step)
    for name, p in conv.named_parameters():
        torch.testing.assert_close(closed[name], p.grad, msg=name)


def test_probabilistic_max_pooling_against_enumeration():
    """One map, 2x2 hidden units in one block: 5 allowed states (all off, or exactly one on)."""
    conv = _conv("bernoulli", "probabilistic", shape=(1, 3, 3), filters=1, kernel=2)
    states = torch.tensor([[0, 0, 0, 0]] + [[float(i == j) for j in range(4)] for i in range(4)], dtype=torch.float64)
    vs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=9)), dtype=torch.float64)
    # free energy: -log Σ_{allowed h} exp(-E(v, h))
    energies = torch.stack([conv.energy(vs, s.expand(len(vs), 4)) for s in states], dim=1)
    torch.testing.assert_close(conv.free_energy(vs), -torch.logsumexp(-energies, dim=1))
    # conditionals: p(h_a = 1 | v) and p(pool on | v) from the enumerated posterior over the 5 states
    post = torch.softmax(-energies, dim=1)
    torch.testing.assert_close(conv.hidden_mean(vs), post @ states)
    torch.testing.assert_close(conv.output(vs), 1 - post[:, :1])
    # samples: at most one unit on per block, with the right frequencies
    v = vs[100:101].expand(40000, 9)
    h = conv.hidden.sample(conv.hidden_mean(v), torch.Generator().manual_seed(4))
    assert h.sum(1).max() <= 1
    torch.testing.assert_close(h.mean(0), conv.hidden_mean(vs[100:101])[0], atol=0.01, rtol=0)
    # several maps of several blocks: at most one unit on in each 2x2 block of each map, at the block's frequencies
    conv = _conv("bernoulli", "probabilistic", shape=(1, 5, 5), filters=2, kernel=2)
    v = (torch.rand(1, 25, generator=torch.Generator().manual_seed(5)) < 0.5).double().expand(20000, 25)
    mean = conv.hidden_mean(v[:1])
    h = conv.hidden.sample(mean.expand(20000, -1), torch.Generator().manual_seed(6))
    blocks = conv.hidden_maps(h).view(20000, 2, 2, 2, 2, 2).sum((3, 5))  # (batch, map, block row, block col)
    assert blocks.max() == 1 and blocks.min() == 0
    torch.testing.assert_close(h.mean(0), mean[0], atol=0.015, rtol=0)


def test_pooling_shapes_and_errors():
    conv = ConvRBM((1, 8, 8), 4, 3, pooling="max")  # 6x6 hidden maps -> 3x3
    assert conv.hidden_shape == (4, 6, 6) and conv.output_shape == (4, 3, 3) and conv.n_output == 36
    v = torch.rand(5, 64)
    out = conv.output(v)
    assert out.shape == (5, 36)
    blocks = conv.hidden_mean(v).view(5, 4, 3, 2, 3, 2)  # (batch, map, block row, row in block, block col, col)
    torch.testing.assert_close(out, blocks.amax(dim=(3, 5)).flatten(1))
    assert ConvRBM((1, 8, 8), 4, 3).n_output == 4 * 6 * 6
    with pytest.raises(ValueError, match="multiples of 2"):
        ConvRBM((1, 8, 8), 4, 4, pooling="probabilistic")  # 5x5 hidden maps
    with pytest.raises(ValueError, match="larger than the 8x8 input"):
        ConvRBM((1, 8, 8), 4, 9)
    with pytest.raises(ValueError, match="pooling must be one of"):
        ConvRBM((1, 8, 8), 4, 3, pooling="avg")
    with pytest.raises(ValueError, match="must have shape"):
        conv.hidden_pre(torch.rand(5, 63))


def test_relu_maps_pool_their_softplus_means_and_refuse_probabilistic_pooling():
    conv = ConvRBM((1, 8, 8), 4, 3, pooling="max", hidden="relu", init_std=0.5)
    assert conv.hidden_units == "relu" and "hidden=relu" in repr(conv)
    v = torch.rand(5, 64)
    pre = torch.nn.functional.conv2d(v.view(5, 1, 8, 8), conv.weight, conv.hidden_bias)
    torch.testing.assert_close(conv.output(v), torch.nn.functional.max_pool2d(torch.nn.functional.softplus(pre), 2).flatten(1))
    h = conv.hidden.sample(conv.hidden_mean(v), torch.Generator().manual_seed(0))
    assert h.min() >= 0 and (h > 1).any()  # rectified, not binary
    with pytest.raises(ValueError, match="probabilistic max-pooling is defined for binary hidden units, not relu"):
        ConvRBM((1, 8, 8), 4, 3, pooling="probabilistic", hidden="relu")
    with pytest.raises(ValueError, match="hidden units are bernoulli or relu, got gaussian"):
        ConvRBM((1, 8, 8), 4, 3, hidden="gaussian")
    with pytest.raises(ValueError, match="values down to -1 but ReLU visible units need values >= 0"):
        ConvRBM((1, 8, 8), 4, 3, visible="relu").visible.check(-torch.ones(2, 64))


def test_rbm_module_trains_a_conv_layer_by_cd(tmp_path):
    """The same RBMModule path as dense layers: bars images, reconstruction error falls, filters move."""
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(400, 1, 8, 8)
    rows, cols = torch.randint(0, 8, (400,), generator=g), torch.randint(0, 8, (400,), generator=g)
    x[torch.arange(400), 0, rows, :] = 1.0
    x[torch.arange(400), 0, :, cols] = 1.0
    x = x.flatten(1)
    conv = ConvRBM((1, 8, 8), 8, 3, pooling="probabilistic", generator=torch.Generator().manual_seed(1))
    conv.init_visible_bias(x.mean(0))
    module = RBMModule(conv, lr=0.05, epochs=8, batch_size=20, steps_per_batch=5, sparsity_target=0.1,
                       sparsity_cost=0.1)
    with torch.no_grad():
        before = float((conv.reconstruct(x) - x).square().mean())
    trainer = L.Trainer(max_epochs=8, default_root_dir=tmp_path)  # Lightning's defaults: progress bar, logger, checkpoints
    trainer.fit(module, DataLoader(TensorDataset(x), batch_size=100, shuffle=True))
    with torch.no_grad():
        after = float((conv.reconstruct(x) - x).square().mean())
    assert after < 0.6 * before
    assert module.q_running.shape == (conv.n_hidden,)


def test_dbn_train_model_conv_end_to_end(tmp_path):
    """model=conv through dbn-train: greedy conv + dense pretraining, CNN fine-tuning, saved stack, pictures."""
    from hydra import compose, initialize_config_module
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dbn import DBN
    from dbn.training.pipeline import run

    with initialize_config_module("dbn.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"run_dir={tmp_path}", "model=conv", "pretrain.epochs=2", "finetune.epochs=8",
                                          "finetune.optimizer.lr=0.01",
                                          "callbacks.pretrain.rbm_tensorboard.gibbs_steps=10"])
    results = run(cfg)
    assert [layer["n_hidden"] for layer in results["pretrain"]] == [32 * 6 * 6, 256]
    assert results["finetune"]["test_acc"] > 0.5  # 10 classes: far above chance after 8 epochs
    model = DBN.load(tmp_path)
    assert model.layers[0].convolutional and model.sizes == [64, 288, 256]
    x = torch.rand(5, 64)
    assert model.transform(x).shape == (5, 256) and model.predict(x).shape == (5,)
    # the fine-tuned net is the CNN with the pretrained filters: its first layer is conv2d with the layer's weights,
    # then the pooling units' p(on) = 1 - 1 / (1 + Σ_block exp(I)) over 2x2 blocks
    pre = torch.nn.functional.conv2d(x.view(5, 1, 8, 8), model.layers[0].weight, model.layers[0].hidden_bias)
    block_sum = 4 * torch.nn.functional.avg_pool2d(pre.exp(), 2)
    torch.testing.assert_close(model.up(x, n_layers=1), (1 - 1 / (1 + block_sum)).flatten(1))
    # the stack cannot be sampled top-down through pooling; its first layer can, and the message says how
    with pytest.raises(ValueError, match=r"cannot undo pooling.*dbn-sample layer=0"):
        model.generate(4, steps=2)
    assert model.layers[0].sample(4, steps=2).shape == (4, 64)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = set(events.Tags()["images"])
    assert {"pretrain/layer0/filters", "pretrain/layer0/hidden_maps", "pretrain/layer0/reconstructions"} <= tags


def test_dbn_train_relu_conv_stack_end_to_end(tmp_path):
    """model.conv with units=relu: each layer above takes relu visible units, the stack saves and reloads as such,
    and the fine-tuned net's first layer is max-pooled softplus(conv2d)."""
    from hydra import compose, initialize_config_module

    from dbn import DBN
    from dbn.training.pipeline import run

    with initialize_config_module("dbn.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"run_dir={tmp_path}", "model=conv", "pretrain.epochs=2", "finetune.epochs=8",
                                          "model.conv=[{filters: 16, kernel: 3, pooling: max, units: relu}]",
                                          "model.hidden_units=relu", "pretrain.lr=0.01", "finetune.optimizer.lr=0.01",
                                          "callbacks.pretrain.rbm_tensorboard.gibbs_steps=10"])
    results = run(cfg)
    assert results["finetune"]["test_acc"] > 0.5
    model = DBN.load(tmp_path)
    conv, dense = model.layers
    assert (conv.visible.name, conv.hidden_units, dense.visible.name, dense.hidden.name) == ("bernoulli", "relu",
                                                                                            "relu", "relu")
    x = torch.rand(5, 64)
    pre = torch.nn.functional.conv2d(x.view(5, 1, 8, 8), conv.weight, conv.hidden_bias)
    expected = torch.nn.functional.max_pool2d(torch.nn.functional.softplus(pre), 2).flatten(1)
    torch.testing.assert_close(model.up(x, n_layers=1), expected)
    assert torch.isfinite(model.transform(x)).all()


def test_model_conv_config_errors_name_the_key(tmp_path):
    from hydra import compose, initialize_config_module

    from dbn.errors import ConfigError
    from dbn.training.pipeline import run

    def cfg(*overrides):
        with initialize_config_module("dbn.conf", version_base="1.3"):
            return compose("train", overrides=[f"run_dir={tmp_path}", "model=conv", *overrides])

    with pytest.raises(ConfigError, match=r"model.conv.0: unknown keys \['filter'\], missing keys \['filters'\]"):
        run(cfg("model.conv=[{filter: 8, kernel: 3}]"))
    with pytest.raises(ConfigError, match="layer 0 is convolutional, which sampler=pt does not cover"):
        run(cfg("pretrain.persistent=true", "pretrain.sampler=pt", "model.hidden=[16]"))
    with pytest.raises(ConfigError, match=r"conv.0 on 8x8 maps: .*multiples of 2"):
        run(cfg("model.conv=[{filters: 8, kernel: 4}]"))  # 5x5 hidden maps cannot be pooled by 2
    with pytest.raises(ConfigError, match=r"conv.0 on 8x8 maps: probabilistic max-pooling is defined for binary"):
        run(cfg("model.conv=[{filters: 8, kernel: 3, units: relu}]"))  # the default pooling is probabilistic


def test_conv_recipe_composes_to_the_reported_settings(tmp_path):
    """experiment=fashion_mnist_conv: the settings experiments/fashion_conv_dbn/README.md reports."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("dbn.conf", version_base="1.3"):
        cfg = compose("train", overrides=["experiment=fashion_mnist_conv", f"run_dir={tmp_path}"])
        baseline = compose("train", overrides=["experiment=fashion_mnist_conv", f"run_dir={tmp_path}", "pretrain=none",
                                               "finetune.batch_norm=standard"])  # run.sh's random-init baseline
    assert [dict(layer) for layer in cfg.model.conv] == [
        {"filters": 32, "kernel": 5, "pooling": "probabilistic", "pool": 2},
        {"filters": 64, "kernel": 5, "pooling": "probabilistic", "pool": 2}]
    assert list(cfg.model.hidden) == [256] and cfg.data.name == "fashion_mnist"
    assert cfg.pretrain.epochs == 3 and cfg.pretrain.lr == 0.05
    assert cfg.pretrain.layers["0"].lr == cfg.pretrain.layers["1"].lr == 0.002  # conv layers: the rate / positions
    f = cfg.finetune
    assert (f.epochs, f.batch_size, f.dropout, f.optimizer.lr, f.scheduler.T_max) == (30, 100, 0.0, 0.004, 30)
    assert f.batch_norm == "identity" and not f.centering and dict(f.augment) == {"hflip": True, "shift": 1, "erase": 0.0}
    assert not baseline.pretrain.enabled and baseline.finetune.batch_norm == "standard"
    assert {k: v for k, v in baseline.finetune.items() if k != "batch_norm"} == {
        k: v for k, v in cfg.finetune.items() if k != "batch_norm"}


@pytest.mark.slow
def test_conv_recipe_dry_run_on_tiny_fashion_files(tmp_path):
    """Two epochs of every stage of experiment=fashion_mnist_conv on 300 written 28x28 images."""
    from hydra import compose, initialize_config_module

    from dbn.training.pipeline import run
    from tests.test_data import mnist_like, write_mnist

    write_mnist(tmp_path / "fashion", mnist_like(n_train=300, n_test=100), name="fashion_mnist")
    with initialize_config_module("dbn.conf", version_base="1.3"):
        cfg = compose("train", overrides=["experiment=fashion_mnist_conv", f"run_dir={tmp_path / 'run'}",
                                          f"data.root={tmp_path / 'fashion'}", "trainer.max_epochs=2"])
    results = run(cfg)
    assert [layer["n_hidden"] for layer in results["pretrain"]] == [32 * 24 * 24, 64 * 8 * 8, 256]
    assert all(layer["epochs"] == 2 for layer in results["pretrain"])
    assert results["finetune"]["epochs"] == 2 and 0.0 <= results["finetune"]["test_acc"] <= 1.0


def test_few_label_tuning_script_builds_run_sh_commands_that_compose(tmp_path, monkeypatch):
    """experiments/fashion_conv_dbn/tune_few_labels.py: its settings split as typed, and the dbn-train command it
    builds (run.sh's few-label overrides, a setting's, validation once after the last epoch) composes to them."""
    from hydra import compose, initialize_config_module

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "experiments" / "fashion_conv_dbn"))
    import tune_few_labels as tune

    setting = tune.split_overrides("finetune.augment={hflip:true,shift:2},finetune.label_smoothing=0.1")
    assert setting == ["finetune.augment={hflip:true,shift:2}", "finetune.label_smoothing=0.1"]
    overrides = [*tune.few_label_args(100), "data.val_fraction=0.0333333", "seed=10", *setting,
                 "+trainer.check_val_every_n_epoch=300", f"run_dir={tmp_path}"]
    with initialize_config_module("dbn.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    f = cfg.finetune
    assert (f.epochs, f.batch_size, f.label_smoothing, dict(f.augment)) == (300, 32, 0.1, {"hflip": True, "shift": 2, "erase": 0.0})
    assert cfg.data.labelled == 100 and cfg.data.val_fraction == 0.0333333 and cfg.seed == 10
    assert cfg.trainer.check_val_every_n_epoch == 300 and cfg.callbacks.finetune.model_checkpoint is None
    assert cfg.trainer.enable_progress_bar  # the tuning runs keep the user's default console
