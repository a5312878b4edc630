"""The XOR network (fastdl.xor, kernels xor.*): the course's iteration counts, every backend
against tests/naive.py, the lazy search's streams and thread-count independence, bad input."""

import math

import numpy as np
import pytest

import fastdl
from fastdl import xor as X
from fastdl.kernels.npy.xor import _solves

import naive
from conftest import ready_backends

# Iteration counts of the course's runs (initial state counted as 1).
COURSE_RUNS = [("normal", 0.3, 7899), ("normal", 0.6, 3950), ("normal", 0.8, 2963), ("uniform", 0.3, 5273)]


def course_weights(init):
    rs = np.random.RandomState(42)
    normal = rs.normal(0, 1, 9)
    return normal if init == "normal" else rs.uniform(-1, 1, 9)


@pytest.mark.parametrize("init,lr,expected", COURSE_RUNS)
def test_course_iteration_counts(backend, dtype, init, lr, expected):
    result = X.train_xor(course_weights(init).astype(dtype), lr, backend=backend)
    assert result.n_iterations == expected
    assert result.converged
    assert result.weights.dtype == dtype and result.mse.dtype == dtype
    assert result.mse.shape == result.n_misclassified.shape == (expected,)
    assert result.n_misclassified[-1] == 0 and (result.n_misclassified[:-1] > 0).all()
    outputs = X.xor_forward(result.weights)
    assert ((outputs > 0.5) == (X.TARGETS > 0.5)).all()


def test_train_matches_naive(backend, dtype):
    rng = np.random.default_rng(7)
    for _ in range(3):
        w0 = rng.normal(0, 1, 9)
        weights, mse, wrong = naive.train_xor(w0.astype(dtype), 0.7, 1500)
        result = X.train_xor(w0.astype(dtype), 0.7, max_iter=1500, backend=backend)
        assert result.n_iterations == len(mse)
        np.testing.assert_array_equal(result.n_misclassified, wrong)
        if dtype is np.float64:
            np.testing.assert_allclose(result.mse, mse, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(result.weights, weights, rtol=1e-9, atol=1e-12)
        else:  # the reference keeps float64 weights: compare loosely
            np.testing.assert_allclose(result.mse, mse, rtol=1e-3, atol=1e-6)
            # Against a reference that stores its weights in float32 after each step, as the kernels
            # do: the same roundings (a few ulps of slack for another libm's exp). Weights kept in
            # float64 across steps drift 1e-6 to 2e-6 from these over the 1500 steps.
            weights32, mse32, wrong32 = naive.train_xor(w0.astype(dtype), 0.7, 1500, store=np.float32)
            np.testing.assert_array_equal(result.n_misclassified, wrong32)
            assert result.weights.dtype == np.float32
            np.testing.assert_allclose(result.weights, weights32, rtol=5e-7, atol=1e-8)
            np.testing.assert_allclose(result.mse, mse32, rtol=5e-7, atol=1e-12)


def test_backends_train_identically(dtype):
    w0 = course_weights("uniform").astype(dtype)
    results = [X.train_xor(w0, 0.5, max_iter=20000, backend=name) for name in ready_backends()]
    for other in results[1:]:
        assert other.n_iterations == results[0].n_iterations
        np.testing.assert_allclose(other.weights, results[0].weights, rtol=1e-6 if dtype is np.float32 else 1e-12)


def test_max_iter_stops_unconverged(backend):
    result = X.train_xor(course_weights("normal"), 0.3, max_iter=5, backend=backend)
    assert result.n_iterations == 5 and not result.converged
    assert result.mse.shape == (5,) and (np.diff(result.mse) < 0).all()


def test_input_weights_untouched(backend):
    w0 = course_weights("normal")
    copy = w0.copy()
    X.train_xor(w0, 0.8, backend=backend)
    np.testing.assert_array_equal(w0, copy)


def test_draws_match_naive(backend):
    draws = X.draw_weights(6, search=3, seed=11, first_draw=1000, backend=backend)
    expected = np.array([naive.xor_draw(11, 3, 1000 + j) for j in range(6)])
    np.testing.assert_allclose(draws, expected, rtol=1e-14, atol=1e-15)


def test_draws_are_standard_normal():
    draws = X.draw_weights(200_000, backend="numpy")
    assert np.abs(draws.mean(axis=0)).max() < 0.015
    assert np.abs(draws.std(axis=0) - 1).max() < 0.015
    assert abs(np.corrcoef(draws[:, 6], draws[:, 7])[0, 1]) < 0.015  # the two normals of one pair


def test_every_backend_draws_the_same_bits():
    """20,000 draws (about 100,000 logs): the numpy reference takes libm's log as the compiled
    kernels do (numpy's own differed by an ulp in 0.2-21% of them, by numpy version)."""
    draws = [X.draw_weights(20_000, seed=0, backend=name) for name in ready_backends()]
    for other in draws[1:]:
        np.testing.assert_array_equal(other, draws[0])


def test_lazy_search_finds_first_solution(backend):
    seed = 5
    found = X.lazy_search(3, seed=seed, backend=backend)
    for search, n_draws in enumerate(found):
        assert naive.xor_solves(naive.xor_draw(seed, search, int(n_draws) - 1))
        earlier = X.draw_weights(int(n_draws) - 1, search=search, seed=seed, backend="numpy")
        assert not _solves(earlier).any()


def test_lazy_search_same_on_every_backend():
    results = [X.lazy_search(8, seed=2, backend=name) for name in ready_backends()]
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


@pytest.mark.parametrize("name", ["numba", "cython"])
def test_lazy_search_independent_of_threads(name):
    if name not in ready_backends():
        pytest.skip(f"{name} unavailable")
    answers = []
    for n_threads in (1, 2, 3):
        fastdl.set_num_threads(n_threads)
        answers.append(X.lazy_search(12, seed=9, backend=name))
    np.testing.assert_array_equal(answers[1], answers[0])
    np.testing.assert_array_equal(answers[2], answers[0])
    # and the first searches do not depend on how many searches run
    np.testing.assert_array_equal(X.lazy_search(4, seed=9, backend=name), answers[0][:4])


def test_lazy_search_stats():
    stats = X.lazy_search_stats([10, 30])
    assert stats["mean"] == 20 and stats["total_draws"] == 40
    assert math.isclose(stats["std"], math.sqrt(200))
    assert math.isclose(stats["p"], 0.05)
    assert stats["p_low"] < 0.05 < stats["p_high"]
    assert X.lazy_search_stats([7])["std"] == 0.0


@pytest.mark.parametrize("draws, error, message", [
    ([], ValueError, "must not be empty"),
    ([0], ValueError, r"draws must be >= 1.*got 0"),
    ([-3, 5], ValueError, r"draws must be >= 1.*got -3"),
    ([1.7, 2.9], TypeError, "integer counts"),
    ([True, False], TypeError, "integer counts"),
    ([[3, 4]], ValueError, "1-D"),
    (["3"], TypeError, "real numbers"),
])
def test_lazy_search_stats_bad_input(draws, error, message):
    with pytest.raises(error, match=message):
        X.lazy_search_stats(draws)


def test_lazy_search_stats_totals_never_wrap():
    """Three counts of 2**62 sum past int64's range: the total is exact, not wrapped negative."""
    stats = X.lazy_search_stats([2**62] * 3)
    assert stats["total_draws"] == 3 * 2**62 and stats["mean"] == 2.0**62
    assert 0 < stats["p_low"] < stats["p"] == 3 / (3 * 2**62) < stats["p_high"] < 1
    big = X.lazy_search_stats(np.array([2**63 + 1, 1], dtype=np.uint64))
    assert big["total_draws"] == 2**63 + 2


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_learning_rate(lr):
    with pytest.raises(ValueError, match="lr"):
        X.train_xor(np.zeros(9), lr)


def test_bad_learning_rate_type():
    with pytest.raises(TypeError, match="lr"):
        X.train_xor(np.zeros(9), "0.3")


@pytest.mark.parametrize("weights", [np.zeros(8), np.zeros(10), np.zeros((3, 3)), []])
def test_bad_weight_count(weights):
    with pytest.raises(ValueError, match="9"):
        X.train_xor(weights, 0.3)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights(bad):
    weights = np.zeros(9)
    weights[4] = bad
    with pytest.raises(ValueError, match="NaN"):
        X.train_xor(weights, 0.3)


def test_bad_weight_types():
    with pytest.raises(TypeError):
        X.train_xor(np.array(["a"] * 9), 0.3)
    with pytest.raises(TypeError):
        X.train_xor(np.zeros(9, dtype=complex), 0.3)


def test_bad_max_iter():
    with pytest.raises(ValueError, match="max_iter"):
        X.train_xor(np.zeros(9), 0.3, max_iter=0)
    with pytest.raises(TypeError, match="max_iter"):
        X.train_xor(np.zeros(9), 0.3, max_iter=2.5)


@pytest.mark.parametrize("n", [0, -3])
def test_bad_n_successes(n):
    with pytest.raises(ValueError, match="n_successes"):
        X.lazy_search(n)


def test_bad_n_successes_type_and_seed():
    with pytest.raises(TypeError, match="n_successes"):
        X.lazy_search(2.0)
    with pytest.raises(ValueError, match="seed"):
        X.lazy_search(1, seed=-1)


def test_integer_and_big_endian_weights(backend):
    w = np.zeros(9, dtype=np.int32)
    result = X.train_xor(w, 0.5, max_iter=3, backend=backend)
    assert result.weights.dtype == np.float64
    big = course_weights("normal").astype(">f8")
    assert X.train_xor(big, 0.8, backend=backend).n_iterations == 2963


def test_seeds_above_two_to_the_63_after_small_ones(backend):
    """Numba compiles a kernel per argument type: a small seed first must not break a huge one."""
    small = X.draw_weights(2, seed=0, backend=backend)
    huge = X.draw_weights(2, seed=2**64 - 1, search=2**63, backend=backend)
    np.testing.assert_array_equal(huge, X.draw_weights(2, seed=2**64 - 1, search=2**63, backend="numpy"))
    assert not np.array_equal(small, huge)
