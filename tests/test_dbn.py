"""DBN: bottom-up features, classifier head, generation, save/load."""

from __future__ import annotations

import pytest
import torch

from dbn import DBN, RBM


def make_dbn(n_classes=None):
    torch.manual_seed(0)
    model = DBN([6, 5, 4], n_classes=n_classes, init_std=0.5)
    with torch.no_grad():
        for rbm in model.layers:
            rbm.visible_bias.normal_()
            rbm.hidden_bias.normal_()
    return model


def test_layers_are_chained_rbms():
    model = DBN([6, 5, 4, 3])
    assert [type(m) for m in model.layers] == [RBM] * 3
    assert [(r.n_visible, r.n_hidden) for r in model.layers] == [(6, 5), (5, 4), (4, 3)]
    assert model.sizes == [6, 5, 4, 3]


def test_transform_is_the_composition_of_hidden_means():
    model = make_dbn()
    x = torch.rand(9, 6)
    with torch.no_grad():
        expected = torch.sigmoid(torch.sigmoid(x @ model.layers[0].weight.T + model.layers[0].hidden_bias)
                                 @ model.layers[1].weight.T + model.layers[1].hidden_bias)
    torch.testing.assert_close(model.transform(x), expected)
    torch.testing.assert_close(model.transform(x, batch_size=2), expected)
    torch.testing.assert_close(model.transform(x.numpy()), expected)  # numpy in, tensor out
    with torch.no_grad():
        first = torch.sigmoid(x @ model.layers[0].weight.T + model.layers[0].hidden_bias)
    torch.testing.assert_close(model.transform(x, n_layers=1), first)
    with pytest.raises(ValueError, match="n_layers must be in 1..2"):
        model.transform(x, n_layers=3)


def test_head_gives_probabilities_and_predictions():
    model = make_dbn(n_classes=3)
    x = torch.rand(9, 6)
    p = model.predict_proba(x)
    torch.testing.assert_close(p.sum(1), torch.ones(9))
    assert torch.equal(model.predict(x), p.argmax(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.head(model.transform(x)))


def test_wrong_input_shape_is_reported():
    model = make_dbn()
    with pytest.raises(ValueError, match=r"expected input of shape \(n, 6\), got \(4, 5\)"):
        model.transform(torch.rand(4, 5))
    with pytest.raises(RuntimeError, match="no classifier head"):
        model.predict(torch.rand(2, 6))


def test_save_load_round_trip(tmp_path):
    model = make_dbn(n_classes=3)
    model.save(tmp_path)  # a directory gets dbn.pt
    loaded = DBN.load(tmp_path)
    x = torch.rand(5, 6)
    torch.testing.assert_close(loaded.predict_proba(x), model.predict_proba(x))
    assert loaded.spec() == model.spec()
    with pytest.raises(FileNotFoundError, match="no saved DBN"):
        DBN.load(tmp_path / "missing")


def test_generate_gives_data_space_probabilities():
    model = make_dbn()
    g = torch.Generator().manual_seed(0)
    samples = model.generate(7, steps=5, generator=g)
    assert samples.shape == (7, 6)
    assert ((samples >= 0) & (samples <= 1)).all()


def test_reset_for_backprop_uses_glorot_scale():
    model = DBN([100, 50])
    model.reset_for_backprop(torch.Generator().manual_seed(0))
    bound = (6 / 150) ** 0.5
    w = model.layers[0].weight
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert torch.count_nonzero(model.layers[0].hidden_bias) == 0


def test_bad_structure_is_rejected():
    with pytest.raises(ValueError, match="at least one hidden layer"):
        DBN([10])
    with pytest.raises(ValueError, match=">= 1"):
        DBN([10, 0])
    with pytest.raises(ValueError, match="one per layer"):
        DBN([10, 5, 3], hidden=["bernoulli"])
