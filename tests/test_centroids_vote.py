"""fastdl.ops.majority_vote and fastdl.ops.class_centroids against the naive loops and scikit-learn."""

import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.neighbors import NearestCentroid as SkNearestCentroid

import fastdl
import naive
from conftest import RTOL
from fastdl.backend import PACKAGES
from fastdl.ops import class_centroids, majority_vote


def _kernels(backend, family):
    return importlib.import_module(f"{PACKAGES[backend]}.{family}")


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


def test_vote_with_more_classes_than_votes(backend, rng):
    """Codes spread over 2**40 classes: counters for every class would take terabytes per thread
    (numba raised a SystemError from its parallel region); the answers are those of the codes' ranks."""
    values = np.sort(rng.choice(2**40, size=5, replace=False))
    small = rng.integers(0, 5, size=(3000, 6))
    before = fastdl.get_num_threads()
    try:
        fastdl.set_num_threads(2)
        out = majority_vote(values[small], 2**40, backend=backend)
    finally:
        fastdl.set_num_threads(before)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, values[naive.majority_vote(small, 5)])


def test_vote_matches_scipy_mode_smallest(backend, rng):
    """scipy.stats.mode (used by scikit-learn's vote) also returns the smallest of the most frequent."""
    from scipy.stats import mode

    codes = rng.integers(0, 3, size=(200, 4))
    np.testing.assert_array_equal(majority_vote(codes, 3, backend=backend), mode(codes, axis=1, keepdims=False).mode)


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


@pytest.mark.parametrize("n_features", [1, 16, 17, 40], ids=lambda d: f"d{d}")
def test_centroids_match_naive_across_feature_blocks(backend, dtype, rng, n_features):
    """The compiled kernels sum blocks of FEATURE_BLOCK = 16 features per task: one feature, one
    full block, one feature past it, and two full blocks and a partial one."""
    n_samples, n_classes = 23, 4
    X = rng.normal(size=(n_samples, n_features)).astype(dtype)
    y = np.arange(n_samples) % n_classes
    rng.shuffle(y)
    out = class_centroids(X, y, backend=backend)
    assert out.shape == (n_classes, n_features) and out.dtype == dtype
    np.testing.assert_allclose(out, naive.class_centroids(X, y), rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("n_features", [1, 16, 17, 40], ids=lambda d: f"d{d}")
def test_class_sums_kernel_across_feature_blocks(backend, dtype, rng, n_features, n_threads):
    """The class_sums kernel itself (class_centroids starts one thread for inputs this small), its
    outputs filled with garbage first: every sum and count is written, on one thread or two."""
    n_samples, n_classes = 21, 3
    X = rng.normal(size=(n_samples, n_features)).astype(dtype)
    codes = (np.arange(n_samples) % n_classes).astype(np.int64)
    rng.shuffle(codes)
    sums = np.full((n_classes, n_features), np.nan)
    counts = np.full(n_classes, -7, dtype=np.int64)
    _kernels(backend, "neighbors").class_sums(X, codes, sums, counts, n_threads)
    np.testing.assert_array_equal(counts, np.bincount(codes, minlength=n_classes))
    np.testing.assert_allclose(sums / counts[:, None], naive.class_centroids(X, codes), rtol=1e-12, atol=1e-12)


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


# knn_from_bounds ---------------------------------------------------------------------------------


def _bounded_problem(dtype, gram_dtype, n_queries=20, n_ref=75, slack_factor=8.0):
    """Rows whose first two coordinates carry most of the spread, projected on those two (exactly:
    projected distances are at most the exact ones, sigma 1, shift 0), and knn_from_bounds' other
    arguments. Row 40 repeats row 3, and query 0 is that row: a tie at distance 0."""
    rng = np.random.default_rng(5)
    X_ref = rng.normal(size=(n_ref, 6)) * [5.0, 5.0, 1.0, 1.0, 1.0, 1.0]
    X_ref[40] = X_ref[3]
    X_query = rng.normal(size=(n_queries, 6)) * [5.0, 5.0, 1.0, 1.0, 1.0, 1.0]
    X_query[0] = X_ref[3]
    X_ref, X_query = X_ref.astype(dtype), X_query.astype(dtype)
    proj_ref, proj_query = X_ref[:, :2].astype(np.float64), X_query[:, :2].astype(np.float64)
    gram = np.ascontiguousarray((proj_query @ proj_ref.T).astype(gram_dtype))
    sq_norms_r = np.einsum("ij,ij->i", proj_ref, proj_ref)
    base = np.einsum("ij,ij->i", proj_query, proj_query)
    # The term sq_norms_r - 2 gram in gram's type is within slack of |a - b|^2 - |a|^2.
    slack = slack_factor * np.finfo(gram_dtype).eps * (base + sq_norms_r.max()) + 1e-300
    limits = np.column_stack([np.full(n_queries, 1 + 1e-12), np.zeros(n_queries), slack, base])
    return gram, sq_norms_r, np.ascontiguousarray(limits), X_query, X_ref


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("dtype, gram_dtype", [(np.float32, np.float32), (np.float64, np.float32),
                                               (np.float64, np.float64)], ids=["32-gram32", "64-gram32", "64-gram64"])
def test_knn_from_bounds_matches_brute_force(backend, dtype, gram_dtype, k, n_threads):
    """As its docstring says: with limits that hold (every row within exact distance t of a query
    has a term within (sigma t + shift)^2 + slack - base), the exact k nearest rows, ascending,
    equal distances in index order; returns how many rows it ranked exactly, which the bounds
    keep below all of them. 75 reference rows: two full scan blocks of 32 and a partial one."""
    gram, sq_norms_r, limits, X_query, X_ref = _bounded_problem(dtype, gram_dtype)
    out_dist = np.full((X_query.shape[0], k), np.nan)
    out_idx = np.full((X_query.shape[0], k), -1, dtype=np.int64)
    ranked = _kernels(backend, "neighbors").knn_from_bounds(
        gram, sq_norms_r, limits, X_query, X_ref, 1.0, out_dist, out_idx, n_threads)
    want_dist, want_idx = naive.knn(X_query, X_ref, k)
    np.testing.assert_array_equal(out_idx, want_idx)
    np.testing.assert_allclose(out_dist, want_dist, rtol=1e-14, atol=0)
    assert out_idx[0, 0] == 3 and (k == 1 or out_idx[0, 1] == 40)
    assert X_query.shape[0] * k <= ranked < X_query.shape[0] * X_ref.shape[0]


def test_knn_from_bounds_ranks_every_row_within_loose_limits(backend):
    """Limits that rule nothing out: every row is ranked exactly once, the result unchanged."""
    gram, sq_norms_r, limits, X_query, X_ref = _bounded_problem(np.float64, np.float64)
    limits[:, 2] = 1e30
    out_dist, out_idx = np.empty((X_query.shape[0], 3)), np.empty((X_query.shape[0], 3), dtype=np.int64)
    ranked = _kernels(backend, "neighbors").knn_from_bounds(
        gram, sq_norms_r, limits, X_query, X_ref, 1.0, out_dist, out_idx, 2)
    assert ranked == X_query.shape[0] * X_ref.shape[0]
    np.testing.assert_array_equal(out_idx, naive.knn(X_query, X_ref, 3)[1])
