"""DBNClassifier's documented defaults, its epoch plan for small data sets, early stopping, and a digits sanity check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import train_test_split

from dbn.sklearn import DBNClassifier
from dbn.sklearn.classifier import EPOCH_ROWS, _epoch_plan

#: the defaults docs/sklearn.md documents, chosen by experiments/sklearn_defaults (tuning seeds 100-102; label
#: smoothing on seeds 100-119)
DEFAULTS = {
    "hidden_layer_sizes": (128, 128), "pretrain": True, "pretrain_epochs": 5, "pretrain_lr": 0.05, "pretrain_k": 1,
    "pretrain_batch_size": 64, "pretrain_momentum": 0.5, "pretrain_final_momentum": 0.9, "pretrain_weight_decay": 2e-4,
    "finetune_epochs": 70, "finetune_lr": 1.5e-2, "finetune_batch_size": 64, "finetune_schedule": "cosine",
    "dropout": 0.2, "label_smoothing": 0.1, "early_stopping": False, "validation_fraction": 0.1, "n_iter_no_change": 10, "device": "cpu",
    "random_state": None, "verbose": 0,
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_defaults_are_the_documented_ones():
    assert DBNClassifier().get_params() == DEFAULTS


@pytest.mark.parametrize("n_rows", [1, 30, 142, 455, 1437, 5000, 60000])
@pytest.mark.parametrize("passes", [1, 5, 20, 100])
def test_epoch_plan_makes_about_the_passes_asked_for(n_rows, passes):
    epochs, repeats = _epoch_plan(n_rows, passes)
    assert epochs >= 1 and 1 <= repeats <= passes
    assert abs(epochs * repeats - passes) <= epochs / 2  # rounding each epoch's copies, never more
    if n_rows >= EPOCH_ROWS:
        assert (epochs, repeats) == (passes, 1)  # a large set: one pass an epoch, as before
    else:
        assert repeats * n_rows >= min(EPOCH_ROWS, passes * n_rows) / 2


def test_early_stopping_holds_out_rows_and_still_learns():
    x = np.random.default_rng(0).random((200, 6))
    y = (x[:, 0] > 0.5).astype(int)
    params = {"hidden_layer_sizes": (16,), "pretrain_epochs": 1, "finetune_epochs": 30, "early_stopping": True,
              "n_iter_no_change": 2, "random_state": 0}
    a, b = DBNClassifier(**params).fit(x, y), DBNClassifier(**params).fit(x, y)
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))  # the split follows random_state
    assert a.score(x, y) > 0.8
    assert 0 < a.best_validation_loss_ < np.log(2) and a.n_iter_ <= 30


def test_early_stopping_stops_when_the_held_out_loss_stops_falling():
    """Labels without signal: the held-out cross-entropy rises once the net memorises, so Lightning's EarlyStopping
    ends the fit long before its budget; without early stopping the whole budget runs."""
    rng = np.random.default_rng(1)
    x, y = rng.random((300, 8)), rng.integers(0, 2, 300)
    params = {"hidden_layer_sizes": (64,), "pretrain": False, "finetune_epochs": 300, "random_state": 0}
    stopped = DBNClassifier(**params, early_stopping=True, n_iter_no_change=10).fit(x, y)
    assert stopped.n_iter_ < 150 and stopped.best_validation_loss_ > 0
    full = DBNClassifier(**(params | {"finetune_epochs": 24})).fit(x, y)
    assert full.n_iter_ == 24 and full.best_validation_loss_ is None


def test_validation_fraction_and_schedule_are_validated():
    x, y = np.random.default_rng(0).random((20, 3)), np.arange(20) % 2
    with pytest.raises(ValueError, match="validation_fraction"):
        DBNClassifier(validation_fraction=1.0, early_stopping=True).fit(x, y)
    with pytest.raises(ValueError, match="finetune_schedule"):
        DBNClassifier(finetune_schedule="linear").fit(x, y)


def test_defaults_beat_the_prior_on_digits_by_a_wide_margin():
    """The defaults, unchanged, on the 8x8 digits (about 5 s on one thread; the protocol's seed 0 split)."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.2, stratify=y, random_state=0)
    prior = DummyClassifier(strategy="prior").fit(x_train, y_train).score(x_test, y_test)
    accuracy = DBNClassifier(random_state=0).fit(x_train, y_train).score(x_test, y_test)
    assert accuracy > prior + 0.8, (accuracy, prior)  # the prior scores about 0.1


def test_compare_script_pairs_the_methods_by_seed():
    """experiments/sklearn_defaults/compare.py's paired table: per seed, ours minus the other on the same split."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "sklearn_defaults" / "compare.py"
    spec = importlib.util.spec_from_file_location("sklearn_defaults_compare", path)
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    accs = {"DBNClassifier()": [0.98, 0.97, 1.00], "MLP()": [0.97, 0.97, 0.99]}
    rows = [{"data": "wine", "method": m, "seed": s, "test_acc": a, "fit_s": 0.1}
            for m, seeds in accs.items() for s, a in enumerate(seeds)]
    # differences +1, 0, +1 points: mean 0.67, standard error sd/sqrt(3) = 0.577/1.732 = 0.33; 2 wins, 1 tie
    assert "| wine | +0.67 ± 0.33 (2/1/0) |" in compare.paired(rows)
    assert "| wine | +0.67 ± 0.33 (2/1/0) |" in compare.table(rows)
    assert compare.paired([r for r in rows if r["method"] == "MLP()"]) == ""  # nothing to pair with


def test_label_smoothing_caps_the_confidence_it_trains_towards():
    """With smoothing ε over K classes the training target of the true class is 1 - ε + ε/K (0.55 for ε = 0.5,
    K = 10): the fitted net's probabilities approach it from below instead of 1."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:400] / 16, y[:400]
    confidence = {}
    for eps in (0.0, 0.5):
        est = DBNClassifier((32,), pretrain=False, finetune_epochs=40, label_smoothing=eps, random_state=0).fit(X, y)
        confidence[eps] = est.predict_proba(X).max(1).mean()
    assert confidence[0.0] > 0.9 and 0.4 < confidence[0.5] < 0.6
