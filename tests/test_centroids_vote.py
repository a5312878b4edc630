"""fastdl.ops.majority_vote and fastdl.ops.class_centroids against the naive loops and scikit-learn."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.neighbors import NearestCentroid as SkNearestCentroid

import fastdl
import naive
from conftest import RTOL
from fastdl.ops import class_centroids, majority_vote

FAST_SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# Majority vote -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "codes, n_classes, expected",
    [
        ([[2, 1, 1, 2]], 3, [1]),  # 2-2 tie: the smaller code
        ([[3, 0, 3, 0, 1]], 4, [0]),
        ([[4, 4, 0]], 5, [4]),  # a clear majority beats a smaller code
        ([[2]], 3, [2]),  # k = 1
        ([[0, 1, 2, 3]], 4, [0]),  # all different
        ([[3, 2, 1, 0], [1, 1, 0, 0], [2, 2, 2, 1]], 4, [0, 0, 2]),
    ],
)
def test_vote_cases(backend, codes, n_classes, expected):
    out = majority_vote(np.array(codes), n_classes, backend=backend)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, expected)


@FAST_SETTINGS
@given(data=st.data())
def test_vote_matches_naive(backend, data):
    n_classes = data.draw(st.integers(1, 5), label="n_classes")
    n = data.draw(st.integers(1, 10), label="n")
    k = data.draw(st.integers(1, 8), label="k")
    codes = data.draw(arrays(np.int64, (n, k), elements=st.integers(0, n_classes - 1)), label="codes")
    np.testing.assert_array_equal(majority_vote(codes, n_classes, backend=backend),
                                  naive.majority_vote(codes, n_classes))


def test_vote_many_rows(backend, rng):
    """Enough rows for the parallel kernels to split the work."""
    codes = rng.integers(0, 4, size=(3000, 6))
    before = fastdl.get_num_threads()
    try:
        fastdl.set_num_threads(2)
        out = majority_vote(codes, 4, backend=backend)
    finally:
        fastdl.set_num_threads(before)
    np.testing.assert_array_equal(out, naive.majority_vote(codes, 4))


def test_vote_matches_scipy_mode_smallest(backend, rng):
    """scipy.stats.mode (used by scikit-learn's vote) also returns the smallest of the most frequent."""
    from scipy.stats import mode

    codes = rng.integers(0, 3, size=(200, 4))
    np.testing.assert_array_equal(majority_vote(codes, 3, backend=backend), mode(codes, axis=1).mode)


# Class centroids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n_samples", [3, 40, 1500], ids=lambda n: f"n{n}")
def test_centroids_match_naive(backend, dtype, rng, n_samples):
    n_classes = 3
    X = rng.normal(size=(n_samples, 4)).astype(dtype)
    y = np.arange(n_samples) % n_classes
    rng.shuffle(y)
    out = class_centroids(X, y, backend=backend)
    assert out.shape == (n_classes, 4)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, naive.class_centroids(X, y), rtol=RTOL[dtype], atol=RTOL[dtype])


def test_centroids_two_threads_equal_one(backend, rng):
    X = rng.normal(size=(2000, 3))
    y = rng.integers(0, 4, size=2000)
    before = fastdl.get_num_threads()
    try:
        fastdl.set_num_threads(1)
        one = class_centroids(X, y, backend=backend)
        fastdl.set_num_threads(2)
        two = class_centroids(X, y, backend=backend)
    finally:
        fastdl.set_num_threads(before)
    np.testing.assert_allclose(one, two, rtol=1e-12)


def test_centroids_explicit_n_classes(backend, dtype):
    X = np.array([[0.0, 2.0], [2.0, 4.0], [10.0, 10.0]], dtype=dtype)
    out = class_centroids(X, [0, 0, 1], n_classes=2, backend=backend)
    np.testing.assert_array_equal(out, np.array([[1.0, 3.0], [10.0, 10.0]], dtype=dtype))


def test_centroids_offset_1e6(backend, rng):
    X = rng.normal(size=(50, 3))
    y = rng.integers(0, 2, size=50)
    np.testing.assert_allclose(class_centroids(X + 1e6, y, backend=backend) - 1e6,
                               naive.class_centroids(X, y), atol=1e-8)


def test_centroids_match_sklearn(backend, dtype, rng):
    X = rng.normal(size=(60, 5)).astype(dtype)
    y = rng.integers(0, 4, size=60)
    expected = SkNearestCentroid().fit(X.astype(np.float64), y).centroids_
    np.testing.assert_allclose(class_centroids(X, y, backend=backend), expected, rtol=RTOL[dtype],
                               atol=RTOL[dtype])


def test_centroids_integer_valued_float_labels(backend):
    X = np.array([[1.0], [3.0], [5.0]])
    np.testing.assert_array_equal(class_centroids(X, np.array([1.0, 0.0, 1.0]), backend=backend), [[3.0], [3.0]])


def test_centroids_uint8_no_wraparound(backend):
    X = np.array([[250, 10], [255, 0], [1, 1]], dtype=np.uint8)
    out = class_centroids(X, [0, 0, 1], backend=backend)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[252.5, 5.0], [1.0, 1.0]])
