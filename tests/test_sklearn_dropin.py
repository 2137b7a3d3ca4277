"""RBMTransformer against scikit-learn's BernoulliRBM itself: draw for draw on the CPU, attribute by attribute.

Both estimators get the same data and the same ``random_state``; on the CPU RBMTransformer consumes the
same numpy ``RandomState`` stream in the same order, so sampled bits (``h_samples_``, ``gibbs``) are equal
and real values agree to rounding: torch's matrix products and sigmoids against numpy's.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import load_digits
from sklearn.neural_network import BernoulliRBM

from dbn.sklearn import RBMTransformer

FITTED = ("components_", "intercept_hidden_", "intercept_visible_", "h_samples_")
#: (rtol, atol, atol per unit of the array's largest magnitude): the same operations in another library's order.
#: float32 differs by a few ulps compounded over a fit's updates (measured: below 3e-7 on these data); an entry
#: that cancels to near 0 keeps the rounding error of the large terms it came from (huge inputs).
TOL = {np.dtype(np.float64): (1e-10, 1e-13, 1e-14), np.dtype(np.float32): (1e-4, 2e-6, 1e-6)}


def assert_close(actual, desired, err_msg: str = "") -> None:
    """``actual`` equals ``desired`` to the rounding of ``desired``'s dtype."""
    rtol, atol, per_magnitude = TOL[np.dtype(desired.dtype)]
    scale = float(np.abs(np.asarray(desired, dtype=np.float64)).max(initial=0.0))
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol + per_magnitude * scale, err_msg=err_msg)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These matrices are tiny: a second intra-op thread only adds synchronisation, which costs ~8 ms per
    product when the 2 cores are busy with other work (measured: 1000x slower than one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """Pixels in [0, 1] (digits) and standard-normal values (which BernoulliRBM takes as well)."""
    return {"digits": load_digits().data[:100] / 16,
            "normal": np.random.RandomState(0).standard_normal((50, 20))}


def _as(x: np.ndarray, dtype, sparse: bool):
    x = x.astype(dtype)
    return sp.csr_matrix(x) if sparse else x


def _float64_twin(model) -> BernoulliRBM:
    """A BernoulliRBM with ``model``'s parameters in float64: the exact value of what float32 arithmetic rounds."""
    twin = BernoulliRBM(n_components=model.n_components, random_state=model.random_state)
    for name in FITTED:
        setattr(twin, name, np.asarray(getattr(model, name), dtype=np.float64))
    twin.n_features_in_ = model.n_features_in_
    return twin


def assert_same_model(ours: RBMTransformer, theirs: BernoulliRBM) -> None:
    for name in FITTED:
        a, b = getattr(ours, name), getattr(theirs, name)
        assert (a.dtype, a.shape) == (b.dtype, b.shape), name
        assert_close(a, b, err_msg=name)
    np.testing.assert_array_equal(ours.h_samples_, theirs.h_samples_)  # sampled bits: exactly BernoulliRBM's
    assert ours.n_features_in_ == theirs.n_features_in_


def assert_same_outputs(ours: RBMTransformer, theirs: BernoulliRBM, X) -> None:
    """transform, gibbs (twice: random_state_ goes on across calls in both) and score_samples."""
    h_ours, h_theirs = ours.transform(X), theirs.transform(X)
    assert h_ours.dtype == h_theirs.dtype
    assert_close(h_ours, h_theirs)
    for _ in range(2):
        v_ours, v_theirs = ours.gibbs(X), theirs.gibbs(X)
        assert v_ours.dtype == v_theirs.dtype == bool
        np.testing.assert_array_equal(v_ours, v_theirs)
    exact = _float64_twin(theirs).score_samples(X.astype(np.float64))
    assert_same_scores(ours.score_samples(X), theirs.score_samples(X), exact, np.result_type(X.dtype, ours.components_))


def assert_same_scores(ours: np.ndarray, theirs: np.ndarray, exact: np.ndarray, dtype: np.dtype) -> None:
    """Equal in float64; in float32, ours (float64 arithmetic, rounded once) is at least as close to the exact
    score as BernoulliRBM's float32 arithmetic, whose free energies lose digits to cancellation.

    Ours come in ``dtype``, X's and the parameters' common one. (BernoulliRBM's come in float64 for a float32
    ``scipy.sparse.csr_matrix``: its flipped copy passes through ``np.matrix``, which widens it.)
    """
    assert ours.dtype == dtype
    if dtype == np.float64:
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)
        return
    np.testing.assert_allclose(ours, exact, rtol=1e-6, atol=1e-6)
    assert np.abs(ours - theirs).max() <= np.abs(theirs - exact).max() + 1e-6 * np.abs(exact).max() + 1e-6


# --- fit, partial_fit: the same models ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("name", ["digits", "normal"])
def test_fit_equals_bernoulli_rbm_draw_for_draw(data, name, sparse, dtype):
    X = _as(data[name], dtype, sparse)
    params = {"n_components": 16, "learning_rate": 0.05, "batch_size": 8, "n_iter": 4, "random_state": 3}
    ours, theirs = RBMTransformer(**params).fit(X), BernoulliRBM(**params).fit(X)
    assert ours.components_.dtype == dtype
    assert not np.allclose(ours.components_, BernoulliRBM(**params | {"n_iter": 0}).fit(X).components_)  # it moved
    assert_same_model(ours, theirs)
    assert_same_outputs(ours, theirs, X)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_partial_fit_calls_equal_bernoulli_rbms(data, sparse, dtype):
    X = _as(data["digits"], dtype, sparse)
    ours, theirs = (cls(n_components=12, learning_rate=0.1, batch_size=10, random_state=5)
                    for cls in (RBMTransformer, BernoulliRBM))
    for start in range(0, X.shape[0], 20):  # several calls: random_state_ carries the stream between them
        assert ours.partial_fit(X[start:start + 20]) is ours  # BernoulliRBM's returns None (a documented difference)
        theirs.partial_fit(X[start:start + 20])
    assert ours.components_.dtype == np.float64  # partial_fit takes X as float64, as BernoulliRBM does
    assert_same_model(ours, theirs)
    assert_same_outputs(ours, theirs, X)


def test_partial_fit_after_a_float32_fit_keeps_float32_like_bernoulli_rbm(data):
    X = data["digits"].astype(np.float32)
    ours, theirs = (cls(n_components=10, n_iter=2, random_state=1).fit(X) for cls in (RBMTransformer, BernoulliRBM))
    for start in range(0, len(X), 25):
        ours.partial_fit(X[start:start + 25])
        theirs.partial_fit(X[start:start + 25])
    assert ours.components_.dtype == np.float32
    assert_same_model(ours, theirs)


def test_random_state_instance_or_none_shares_the_callers_stream():
    # scikit-learn's own test_fit_gibbs: a RandomState instance is consumed by fit, then by gibbs
    X = np.array([[0.0], [1.0]])
    models = [cls(n_components=2, batch_size=2, n_iter=42, random_state=np.random.RandomState(42)).fit(X)
              for cls in (RBMTransformer, BernoulliRBM)]
    np.testing.assert_allclose(models[0].components_, [[0.02649814], [0.02009084]], atol=1e-8)
    samples = [[model.gibbs(X) for _ in range(2)] for model in models]
    np.testing.assert_array_equal(samples[0][0], X)
    np.testing.assert_array_equal(samples[0], samples[1])
    # None draws from numpy's global stream, as BernoulliRBM does
    fits = []
    for cls in (RBMTransformer, BernoulliRBM):
        np.random.seed(11)
        fits.append(cls(n_components=3, batch_size=2, n_iter=3).fit(X))
    assert_same_model(*fits)


def test_an_int_seed_leaves_global_streams_alone(data):
    numpy_state, torch_state = np.random.get_state()[1].copy(), torch.random.get_rng_state()
    model = RBMTransformer(n_components=4, n_iter=2, random_state=0).fit(data["digits"])
    model.gibbs(data["digits"])
    model.score_samples(data["digits"])
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    assert torch.equal(torch.random.get_rng_state(), torch_state)


@pytest.mark.parametrize("seed", ["int", "RandomState"])
def test_verbose_prints_bernoulli_rbms_lines_with_its_own_name(data, seed, capsys):
    # the per-sweep score_samples draws from check_random_state(random_state): a fresh stream for an int,
    # the fit's own for an instance; either way both estimators draw the same numbers
    lines, models = {}, {}
    for cls in (RBMTransformer, BernoulliRBM):
        state = 7 if seed == "int" else np.random.RandomState(7)
        models[cls] = cls(n_components=8, n_iter=3, verbose=1, random_state=state).fit(data["digits"])
        lines[cls] = capsys.readouterr().out.splitlines()
    assert len(lines[RBMTransformer]) == 3
    pattern = r"\[{}\] Iteration (\d+), pseudo-likelihood = (-?\d+\.\d\d), time = \d+\.\d\ds"
    ours = [re.fullmatch(pattern.format("RBMTransformer"), line).groups() for line in lines[RBMTransformer]]
    theirs = [re.fullmatch(pattern.format("BernoulliRBM"), line).groups() for line in lines[BernoulliRBM]]
    assert ours == theirs
    assert_same_model(models[RBMTransformer], models[BernoulliRBM])


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_feature_names_out_are_the_lower_cased_class_name(data, method):
    ours = getattr(RBMTransformer(n_components=5), method)(data["digits"])
    theirs = BernoulliRBM(n_components=5)
    getattr(theirs, method)(data["digits"])
    names = ours.get_feature_names_out()
    np.testing.assert_array_equal(names, [f"{type(ours).__name__.lower()}{i}" for i in range(5)])
    np.testing.assert_array_equal(names, [n.replace("bernoullirbm", "rbmtransformer")
                                          for n in theirs.get_feature_names_out()])


# --- dtypes ---------------------------------------------------------------------------------------------------
def test_float32_and_float64_fits_agree_as_closely_as_bernoulli_rbms(data):
    """scikit-learn's test_convergence_dtype_consistency setting; its own float32-float64 gaps are the yardstick."""
    X = data["digits"]

    def gaps(cls):
        fits = [cls(n_components=16, batch_size=5, n_iter=5, random_state=42) for _ in range(2)]
        h = [fit.fit_transform(X.astype(dtype)) for fit, dtype in zip(fits, (np.float64, np.float32))]
        gap = {name: np.abs(getattr(fits[0], name) - getattr(fits[1], name)).max() for name in FITTED}
        return gap | {"transform": np.abs(h[0] - h[1]).max()}

    ours, theirs = gaps(RBMTransformer), gaps(BernoulliRBM)
    assert ours["h_samples_"] == theirs["h_samples_"] == 0
    for name, gap in theirs.items():
        assert ours[name] <= 2 * gap + 1e-7, (name, ours[name], gap)


# --- inputs: whatever BernoulliRBM takes ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_any_finite_input_is_taken_like_bernoulli_rbm_without_warnings(data, dtype):
    x = data["digits"]
    huge = {"1e10 around 0": 1e10 * (x[:20] - 0.5), "-1e10": np.full((3, 64), -1e10),
            "issue 2785": np.arange(64.0)[None] * 100, "normal": np.random.RandomState(1).standard_normal((9, 64))}
    for what, values in huge.items():
        X = values.astype(dtype)
        params = {"n_components": 6, "batch_size": 5, "n_iter": 2, "random_state": 0}
        with warnings.catch_warnings(), np.errstate(all="raise"):
            warnings.simplefilter("error")
            ours = RBMTransformer(**params).fit(X)
            outputs = {"transform": ours.transform(X), "score_samples": ours.score_samples(X),
                       "gibbs": ours.gibbs(X), "partial_fit": RBMTransformer(**params).partial_fit(X).components_}
        with np.errstate(under="ignore"):
            theirs = BernoulliRBM(**params).fit(X)
        assert all(np.isfinite(value).all() for value in outputs.values()), what
        assert_same_model(ours, theirs)
        assert_close(outputs["transform"], theirs.transform(X))
        np.testing.assert_array_equal(outputs["gibbs"], theirs.gibbs(X))
        with np.errstate(under="ignore"):
            exact = _float64_twin(theirs).score_samples(X.astype(np.float64))
            assert_same_scores(outputs["score_samples"], theirs.score_samples(X), exact, np.dtype(dtype))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("method", ["fit", "partial_fit", "transform", "score_samples", "gibbs"])
def test_nan_and_inf_are_refused_by_every_method(data, method, bad):
    X = data["digits"][:10].copy()
    X[3, 7] = bad
    ours, theirs = (cls(n_components=3, n_iter=1, random_state=0).fit(data["digits"])
                    for cls in (RBMTransformer, BernoulliRBM))
    with pytest.raises(ValueError, match="NaN|infinity"):
        getattr(ours, method)(X)
    if method != "gibbs":  # BernoulliRBM's gibbs does not validate its input (a documented difference)
        with pytest.raises(ValueError, match="NaN|infinity"):
            getattr(theirs, method)(X)


def test_gibbs_takes_one_row_like_bernoulli_rbm(data):
    x = data["digits"]
    ours, theirs = (cls(n_components=5, n_iter=1, random_state=2).fit(x) for cls in (RBMTransformer, BernoulliRBM))
    for row in (x[0], list(x[1])):
        v_ours, v_theirs = ours.gibbs(row), theirs.gibbs(np.asarray(row))
        assert v_ours.shape == v_theirs.shape == (64,)
        np.testing.assert_array_equal(v_ours, v_theirs)


# --- other devices ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_start_is_bernoulli_rbms_and_the_gibbs_draws_torchs(data):
    x = data["digits"]
    params = {"n_components": 8, "learning_rate": 0.06, "random_state": 4}
    start = RBMTransformer(**params, n_iter=0, device="cuda").fit(x)
    np.testing.assert_array_equal(start.components_, BernoulliRBM(**params, n_iter=0).fit(x).components_)
    ours, again = (RBMTransformer(**params, n_iter=10, device="cuda").fit(x) for _ in range(2))
    np.testing.assert_array_equal(ours.components_, again.components_)  # reproducible, with the device's draws
    theirs = BernoulliRBM(**params, n_iter=10).fit(x)
    assert not np.allclose(ours.components_, theirs.components_, rtol=1e-6)  # other draws, so another fit
    on_cpu = RBMTransformer(**params).fit(x)
    for name in FITTED:  # the attributes are the model: the same ones give the same outputs on either device
        setattr(on_cpu, name, getattr(ours, name))
    np.testing.assert_allclose(ours.transform(x), on_cpu.transform(x), rtol=1e-6)
    np.testing.assert_allclose(ours.score_samples(x), on_cpu.score_samples(x), rtol=1e-6)
    assert ours.gibbs(x).dtype == bool
    # it learned as BernoulliRBM does: -22.7 ± 1.6 nats over 10 seeds on the CPU; untrained: -64 log 2 = -44.4
    assert -30 < ours.score_samples(x).mean() < -17
