"""Multi-class perceptron: kernels against tests/naive.py, the estimator, bad input, assignment 2."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

import naive
from conftest import RTOL, ready_backends
from fastdl import backend as fastdl_backend
from fastdl.linear import MultiClassPerceptron

RULES = {"sigmoid": 0, "classic": 1}
COURSE_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "leiden-digits"


def _problem(rng, dtype, n=40, n_features=6, n_classes=4, std=1.5):
    X = rng.uniform(-1, 1, (n, n_features))
    X1 = np.hstack([X, np.ones((n, 1))]).astype(dtype)
    codes = rng.integers(0, n_classes, n).astype(np.int64)
    W = rng.normal(0, std, (n_features + 1, n_classes)).astype(dtype)
    return X1, codes, W


def _blobs(rng, n_per_class=30, n_classes=3, n_features=5):
    centres = rng.normal(0, 6, (n_classes, n_features))
    X = np.concatenate([c + rng.normal(0, 0.5, (n_per_class, n_features)) for c in centres])
    y = np.repeat(np.arange(n_classes), n_per_class)
    order = rng.permutation(len(y))
    return X[order], y[order]


# Kernels -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
def test_batch_epoch_matches_naive(backend, dtype, rule, rng):
    X1, codes, W0 = _problem(rng, dtype)
    kernels, _ = fastdl_backend.kernels("perceptron", backend)
    W = W0.copy()
    scores = np.empty((X1.shape[0], W.shape[1]), dtype)
    grad = np.empty_like(W)
    n_correct = kernels.batch_epoch(X1, codes, dtype(0.2), RULES[rule], W, scores, grad, 2)
    expected_W, expected_correct = naive.perceptron_batch_epoch(X1, codes, 0.2, rule, W0)
    assert n_correct == expected_correct
    np.testing.assert_allclose(W, expected_W, rtol=RTOL[dtype], atol=10 * RTOL[dtype])


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("n", [1, 2, 17, 203])
def test_batch_epoch_delta_is_the_same_bits_on_the_compiled_backends(dtype, rule, n, rng):
    """The batch epoch's update directions (scores comes back holding them) and W: Numba's and
    Cython's bits, over scores from saturated (beyond exp's range) to small, each row's class
    anywhere; the sigmoid rule's directions as onehot - sigmoid, worked in float64 and rounded
    once to the dtype."""
    names = [name for name in ready_backends() if name in ("numba", "cython")]
    if len(names) < 2:
        pytest.skip("needs the numba and cython backends")
    X1, codes, W0 = _problem(rng, dtype, n=n, n_classes=10)
    W0 = (W0 * rng.choice([1e-3, 1.0, 300.0], W0.shape[1])).astype(dtype)  # columns at three scales
    codes[0], codes[-1] = 0, 9
    results = {}
    for name in names:
        kernels, _ = fastdl_backend.kernels("perceptron", name)
        W, scores = W0.copy(), np.empty((n, 10), dtype)
        n_correct = kernels.batch_epoch(X1, codes, dtype(0.2), RULES[rule], W, scores, np.empty_like(W), 2)
        results[name] = (W, scores, n_correct)
    (W_a, delta_a, correct_a), (W_b, delta_b, correct_b) = results.values()
    assert correct_a == correct_b
    np.testing.assert_array_equal(delta_a, delta_b)
    np.testing.assert_array_equal(W_a, W_b)
    if rule == "sigmoid":
        z = (X1 @ W0).astype(np.float64)  # the scores as the kernels' GEMM gives them
        with np.errstate(over="ignore"):
            expected = (np.eye(10)[codes] - 1 / (1 + np.exp(-z))).astype(dtype)
        np.testing.assert_allclose(delta_a, expected, rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).eps)


def test_batch_epoch_ignores_codes_outside_the_classes(backend, rng):
    """A code outside 0..c-1 (the estimator never passes one) marks no entry in either rule: the
    compiled kernels write nothing outside the rows (numpy's reference raises IndexError)."""
    if backend == "numpy":
        pytest.skip("numpy indexes with checks")
    X1, codes, W0 = _problem(rng, np.float64, n=6, n_classes=4)
    codes[:] = [0, 4, -1, 3, 9, 2]
    kernels, _ = fastdl_backend.kernels("perceptron", backend)
    for rule in RULES.values():
        buffer = np.zeros((7, 4))  # the scores and one row past them
        scores = buffer[:6]
        W = W0.copy()
        kernels.batch_epoch(X1, codes, 0.2, rule, W, scores, np.empty_like(W), 2)
        assert np.all(buffer[6] == 0)
        assert np.all(np.isfinite(W))


@pytest.mark.parametrize("rule", RULES)
def test_online_epoch_matches_naive(backend, dtype, rule, rng):
    X1, codes, W0 = _problem(rng, dtype)
    kernels, _ = fastdl_backend.kernels("perceptron", backend)
    W = W0.copy()
    n_correct = kernels.online_epoch(X1, codes, dtype(0.2), RULES[rule], W, np.empty(W.shape[1], dtype), 2)
    expected_W, expected_correct = naive.perceptron_online_epoch(X1, codes, 0.2, rule, W0)
    assert n_correct == expected_correct
    np.testing.assert_allclose(W, expected_W, rtol=RTOL[dtype], atol=10 * RTOL[dtype])


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("n_features", [1, 31, 70, 256])
def test_online_epoch_wide_rows(dtype, rule, n_features, rng):
    """Rows that fill several vector blocks with a remainder: the naive result, and the same bits
    on the compiled backends (they add every score in the same order)."""
    X1, codes, W0 = _problem(rng, dtype, n=25, n_features=n_features, n_classes=10)
    expected_W, expected_correct = naive.perceptron_online_epoch(X1, codes, 0.2, rule, W0)
    results = {}
    for name in ready_backends():
        kernels, _ = fastdl_backend.kernels("perceptron", name)
        W = W0.copy()
        n_correct = kernels.online_epoch(X1, codes, dtype(0.2), RULES[rule], W, np.empty(10, dtype), 1)
        assert n_correct == expected_correct, name
        np.testing.assert_allclose(W, expected_W, rtol=RTOL[dtype], atol=10 * RTOL[dtype], err_msg=name)
        results[name] = W
    if "numba" in results and "cython" in results:
        np.testing.assert_array_equal(results["numba"], results["cython"])


@pytest.mark.parametrize("epoch", ["batch_epoch", "online_epoch"])
def test_saturated_units_raise_no_warnings(backend, dtype, epoch, rng):
    """Scores of +-1e4 saturate the sigmoid; exp(-|z|) keeps every step finite and silent."""
    X1, codes, W = _problem(rng, dtype, std=2000.0)
    kernels, _ = fastdl_backend.kernels("perceptron", backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
            if epoch == "batch_epoch":
                kernels.batch_epoch(X1, codes, dtype(0.2), 0, W, np.empty((X1.shape[0], W.shape[1]), dtype),
                                    np.empty_like(W), 1)
            else:
                kernels.online_epoch(X1, codes, dtype(0.2), 0, W, np.empty(W.shape[1], dtype), 1)
    assert np.isfinite(W).all()


# Estimator -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["batch", "online"])
@pytest.mark.parametrize("rule", ["sigmoid", "classic"])
def test_learns_a_separable_problem(backend, method, rule, rng):
    X, y = _blobs(rng)
    labels = np.array(["a", "b", "c"])[y]
    model = MultiClassPerceptron(method=method, rule=rule, init_std=1.0, backend=backend).fit(X, labels)
    assert model.score(X, labels) == 1.0
    assert model.history_["train_accuracy"][-1] == 1.0  # stopped at 100%
    assert len(model.history_["train_accuracy"]) == model.n_epochs_ < model.max_epochs
    assert list(model.classes_) == ["a", "b", "c"]
    assert model.weights_.shape == (X.shape[1] + 1, 3)


@pytest.mark.parametrize("method", ["batch", "online"])
def test_same_result_on_every_backend(method, rng):
    X, y = _blobs(rng, n_classes=4, n_features=8)
    X = X + rng.normal(0, 3, X.shape)  # overlapping classes: training runs until patience ends
    fits = {name: MultiClassPerceptron(method=method, patience=5, max_epochs=40, backend=name).fit(X, y)
            for name in ready_backends()}
    first = next(iter(fits.values()))
    for name, model in fits.items():
        assert model.n_epochs_ == first.n_epochs_, name
        np.testing.assert_allclose(model.history_["train_accuracy"], first.history_["train_accuracy"])
        np.testing.assert_allclose(model.weights_, first.weights_, rtol=1e-9, atol=1e-9, err_msg=name)


def test_history_and_best_weights(rng):
    X, y = _blobs(rng, n_classes=4)
    X = X + rng.normal(0, 4, X.shape)
    X_val, y_val = X[:30], y[:30]
    model = MultiClassPerceptron(patience=4, max_epochs=50).fit(X, y, validation_data=(X_val, y_val))
    history = model.history_
    assert len(history["train_accuracy"]) == len(history["val_accuracy"]) == model.n_epochs_
    best = max(history["train_accuracy"])
    assert model.score(X, y) >= best  # the kept weights are the best epoch's (or the initial ones)
    if model.best_epoch_:
        assert history["train_accuracy"][model.best_epoch_ - 1] == best
        assert model.score(X_val, y_val) == pytest.approx(history["val_accuracy"][model.best_epoch_ - 1])
    # patience: no new best in the last `patience` epochs, unless training hit 100% or max_epochs
    assert model.n_epochs_ == 50 or best == 1.0 or model.n_epochs_ - model.best_epoch_ == 4


def test_initial_weights_follow_the_course(rng):
    X, y = _blobs(rng)
    model = MultiClassPerceptron(max_epochs=1, patience=1, lr=1e-300).fit(X, y)
    expected = np.random.RandomState(21).normal(0, 5.0, (X.shape[1] + 1, 3))
    np.testing.assert_allclose(model.weights_, expected, rtol=1e-12)


def test_float32_is_kept(rng):
    X, y = _blobs(rng)
    model = MultiClassPerceptron().fit(X.astype(np.float32), y)
    assert model.weights_.dtype == np.float32
    assert model.score(X, y) == 1.0


def test_sklearn_api(rng):
    X, y = _blobs(rng)
    model = MultiClassPerceptron(lr=0.5, method="online")
    assert model.get_params()["lr"] == 0.5
    model.set_params(patience=3)
    assert model.patience == 3
    with pytest.raises(NotFittedError):
        model.predict(X)


def test_binary_decision_function_follows_sklearn(backend, dtype, rng):
    """Two classes: one score per sample, positive where predict gives classes_[1] (scikit-learn's
    convention, which roc_auc scoring needs); more classes keep a column per class."""
    from sklearn.model_selection import cross_val_score

    X, y = _blobs(rng, n_classes=2)
    X = X.astype(dtype)
    labels = np.array(["no", "yes"])[y]
    model = MultiClassPerceptron(max_epochs=20, backend=backend).fit(X, labels)
    scores = model.decision_function(X)
    assert scores.shape == (len(y),)
    full = np.hstack([X, np.ones((len(y), 1))]).astype(dtype) @ model.weights_
    np.testing.assert_allclose(scores, full[:, 1] - full[:, 0], rtol=RTOL[dtype])
    np.testing.assert_array_equal(model.predict(X), model.classes_[(scores > 0).astype(int)])
    auc = cross_val_score(MultiClassPerceptron(max_epochs=20, backend=backend), X, labels, cv=3, scoring="roc_auc")
    assert np.isfinite(auc).all() and auc.min() > 0.9
    X3, y3 = _blobs(rng, n_classes=3)
    assert MultiClassPerceptron(max_epochs=5, backend=backend).fit(X3, y3).decision_function(X3).shape == (len(y3), 3)


@parametrize_with_checks([MultiClassPerceptron(max_epochs=20)])
def test_sklearn_estimator_checks(estimator, check):
    """scikit-learn's own estimator checks: all pass, so none is listed as an expected failure."""
    check(estimator)


# Bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("params, error, match", [
    ({"lr": 0}, ValueError, "lr"),
    ({"lr": -0.1}, ValueError, "lr"),
    ({"lr": "fast"}, TypeError, "lr"),
    ({"patience": 0}, ValueError, "patience"),
    ({"patience": 1.5}, TypeError, "patience"),
    ({"max_epochs": 0}, ValueError, "max_epochs"),
    ({"method": "minibatch"}, ValueError, "method"),
    ({"rule": "hebb"}, ValueError, "rule"),
    ({"init_std": float("nan")}, ValueError, "init_std"),
])
def test_bad_parameters(params, error, match, rng):
    X, y = _blobs(rng)
    with pytest.raises(error, match=match):
        MultiClassPerceptron(**params).fit(X, y)


def test_bad_data(rng):
    X, y = _blobs(rng)
    model = MultiClassPerceptron(max_epochs=2)
    with pytest.raises(ValueError, match="two classes"):
        model.fit(X, np.zeros(len(y)))
    with pytest.raises(ValueError):
        model.fit(X, y[:-1])
    with pytest.raises(ValueError):
        model.fit(X[:, 0], y)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(bad, y)
    with pytest.raises(ValueError, match="Unknown label type"):
        model.fit(X, y + 0.5)
    model.fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :-1])
    with pytest.raises(ValueError, match="not seen"):
        model.fit(X, y, validation_data=(X, y + 7))
    with pytest.raises(ValueError, match="labels"):
        model.fit(X, y, validation_data=(X, y[:-1]))
    with pytest.raises(TypeError, match="pair"):
        model.fit(X, y, validation_data=X)


# Assignment 2 on the course data -------------------------------------------------------------------


@pytest.mark.skipif(not COURSE_DATA.is_dir(), reason=f"course data not found at {COURSE_DATA}")
def test_reproduce_a2_matches_write_up(tmp_path):
    from fastdl.repro import a2

    result = a2.run(data_dir=COURSE_DATA, out_dir=tmp_path)
    assert result["source"] == "leiden-digits (course data)"
    for method, splits in a2.WRITE_UP_CORRECT.items():
        for split, expected in splits.items():
            got = result["classifiers"][method][split]["correct"]
            assert abs(got - expected) <= 10, (method, split, got, expected)
    for path in result["files"]:
        assert Path(path).is_file()
    assert (tmp_path / "a2" / "accuracy.png").is_file()


def test_reproduce_a2_quick_on_embedded_data(tmp_path, monkeypatch):
    from fastdl.repro import a2

    monkeypatch.delenv("FASTDL_DATA", raising=False)
    result = a2.run(out_dir=tmp_path, quick=True)
    assert "embedded" in result["source"]
    assert set(result["classifiers"]) == {"batch", "online"}
    assert all(len(h["train_accuracy"]) <= a2.QUICK_MAX_EPOCHS for h in result["history"].values())
    text = (tmp_path / "a2" / "accuracy.md").read_text()
    assert "embedded" in text and "| Online | Train |" in text
