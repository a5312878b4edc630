"""fastdl.ops.knn: exact float64 ranking, ties to the lower index, on every backend and dtype."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

import naive
from conftest import RTOL, ready_backends
from fastdl.neighbors import KNeighborsClassifier
from fastdl.ops import knn

FAST_SETTINGS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _check_against_naive(X_query, X_ref, k, backend, dtype):
    distances, indices = knn(X_query, X_ref, k, backend=backend)
    expected_d, expected_i = naive.knn(X_query, X_ref, k)
    assert distances.shape == indices.shape == (X_query.shape[0], k)
    assert distances.dtype == dtype
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_allclose(distances, expected_d, rtol=RTOL[dtype], atol=RTOL[dtype])
    return distances, indices


@pytest.mark.parametrize("k", [1, 3, 20], ids=lambda k: f"k{k}")
def test_matches_naive_random(backend, dtype, rng, k):
    X_ref = rng.normal(size=(20, 4)).astype(dtype)
    X_query = rng.normal(size=(9, 4)).astype(dtype)
    _check_against_naive(X_query, X_ref, k, backend, dtype)


@pytest.mark.parametrize("k", [1, 2, 5, 20], ids=lambda k: f"k{k}")
def test_ties_go_to_lower_index(backend, dtype, rng, k):
    """Integer-valued data with duplicated reference rows: many exact ties, all decided by index."""
    base = rng.integers(-2, 3, size=(8, 3))
    X_ref = np.concatenate([base, base[::-1], base[:8:2]]).astype(dtype)  # 20 rows, each repeated
    X_query = np.concatenate([base[:3], rng.integers(-2, 3, size=(6, 3))]).astype(dtype)
    _, indices = _check_against_naive(X_query, X_ref, k, backend, dtype)
    # Equal-distance neighbours come out in increasing index order.
    d2 = naive.pairwise_distances(X_query, X_ref, squared=True)
    for row_d2, row_idx in zip(d2, indices):
        keys = [(row_d2[j], j) for j in row_idx]
        assert keys == sorted(keys)


def test_many_blocks_match_naive(backend, dtype, rng):
    """Enough reference rows for many scan blocks and a partial last one, a feature count that is
    not a multiple of the exact distance's lanes, and duplicates far apart (ties across blocks)."""
    X_ref = rng.normal(size=(1037, 19))
    X_ref[1000] = X_ref[3]
    X_ref[517] = X_ref[40] + 1e-9
    X_query = np.concatenate([X_ref[[3, 40, 1036]] + 1e-3, rng.normal(size=(30, 19))])
    _check_against_naive(X_query.astype(dtype), X_ref.astype(dtype), 4, backend, dtype)


def test_all_references_identical(backend, dtype):
    X_ref = np.ones((6, 2), dtype=dtype)
    X_query = np.array([[0.0, 0.0], [1.0, 1.0]], dtype=dtype)
    distances, indices = knn(X_query, X_ref, 6, backend=backend)
    np.testing.assert_array_equal(indices, np.tile(np.arange(6), (2, 1)))
    np.testing.assert_allclose(distances[0], np.sqrt(2.0), rtol=RTOL[dtype])
    np.testing.assert_array_equal(distances[1], 0.0)


def test_k_equals_n_ref_is_full_sort(backend, dtype, rng):
    X_ref = rng.normal(size=(15, 3)).astype(dtype)
    X_query = rng.normal(size=(4, 3)).astype(dtype)
    distances, indices = knn(X_query, X_ref, 15, backend=backend)
    for row in indices:
        assert sorted(row.tolist()) == list(range(15))
    assert (np.diff(distances, axis=1) >= 0).all()


def test_k1_single_reference(backend, dtype):
    distances, indices = knn(np.array([[1.0, 2.0]], dtype=dtype), np.array([[4.0, 6.0]], dtype=dtype), 1,
                             backend=backend)
    np.testing.assert_array_equal(indices, [[0]])
    np.testing.assert_allclose(distances, [[5.0]], rtol=RTOL[dtype])


def test_query_is_reference(backend, dtype, rng):
    X = rng.normal(size=(12, 5)).astype(dtype)
    distances, indices = knn(X, X, 1, backend=backend)
    np.testing.assert_array_equal(indices[:, 0], np.arange(12))
    np.testing.assert_array_equal(distances[:, 0], 0.0)


def test_near_ties_ranked_in_float64(backend, rng):
    """Distances differing by 1e-12 relative: a float32 GEMM cannot tell them apart, float64 can."""
    n_ref = 30
    directions = rng.normal(size=(n_ref, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    radii = 1.0 + 1e-12 * rng.permutation(n_ref)
    X_ref = 1e3 + directions * radii[:, None]
    X_query = np.full((1, 3), 1e3)
    _, indices = knn(X_query, X_ref, n_ref, backend=backend)
    _, expected = naive.knn(X_query, X_ref, n_ref)
    np.testing.assert_array_equal(indices, expected)


def test_query_far_outside_reference_cloud(backend, dtype):
    """Queries over 2**50 times the reference spread take the library's rescaling path."""
    X_ref = np.array([[-1.0], [0.5], [2.0], [-3.0]], dtype=dtype)
    X_query = np.array([[1e17], [-1e17], [0.4]], dtype=dtype)
    _check_against_naive(X_query, X_ref, 4, backend, dtype)


@pytest.mark.parametrize("query, ref", [
    ([[1.0]], [[3.0]]),
    ([[1.0], [0.0], [-2.5]], [[0.0], [0.0]]),
    ([[1.0, 0.0]], [[-0.5, 0.25]]),
])
def test_tiny_distances_to_identical_references(backend, dtype, query, ref):
    """References with no spread set no scale: the queries' spread must, or the squared distances
    of tiny values underflow to zero (or lose digits in the subnormal range)."""
    tiny = np.finfo(dtype).tiny  # the smallest normal number: its square underflows
    query, ref = (np.array(rows, dtype=dtype) * tiny for rows in (query, ref))
    distances, indices = knn(query, ref, 1, backend=backend)
    np.testing.assert_array_equal(indices, 0)
    expected = np.sqrt(((query.astype(np.float64) / tiny - ref[0] / tiny) ** 2).sum(axis=1)) * tiny
    np.testing.assert_allclose(distances[:, 0], expected, rtol=RTOL[dtype])


@pytest.mark.parametrize("query, ref, expected", [([[1e-200]], [[3e-200]], 2e-200), ([[1e-160]], [[0.0]], 1e-160)])
def test_tiny_float64_distances_from_the_bug_hunt(backend, query, ref, expected):
    distances, _ = knn(query, ref, 1, backend=backend)
    np.testing.assert_allclose(distances, [[expected]], rtol=1e-12)


# (a far row, the size of the near ones) per dtype: the far row sets the shift's scale, and the
# squares of the near rows' differences under that scale fell below float64's range (float64) or
# their shifted copies rounded to one value (float32).
FAR_AND_NEAR = {
    "huge": {np.float32: (1e38, 1.0), np.float64: (1e200, 1.0)},
    "tiny": {np.float32: (1.0, 1e-30), np.float64: (1.0, 1e-200)},
}


def far_and_near(dtype, case):
    """Reference rows [far, near, 2 near] and a query at 1.6 near, as `dtype`."""
    far, near = FAR_AND_NEAR[case][dtype]
    return np.array([[far], [near], [2 * near]], dtype=dtype), np.array([[1.6 * near]], dtype=dtype)


@pytest.mark.parametrize("case", FAR_AND_NEAR)
def test_small_distances_beside_a_far_row(backend, dtype, case):
    """The exact ranking computes each pair's distance at its own scale: with one scale for the whole
    data (the far row's), the near rows' distances underflowed to 0 and ties went to the wrong row."""
    X_ref, X_query = far_and_near(dtype, case)
    distances, indices = knn(X_query, X_ref, 2, backend=backend)
    np.testing.assert_array_equal(indices, [[2, 1]])
    expected = np.abs(X_query[0, 0].astype(np.float64) - X_ref[[2, 1], 0].astype(np.float64))
    np.testing.assert_allclose(distances[0], expected, rtol=np.finfo(dtype).eps)
    classifier = KNeighborsClassifier(n_neighbors=1, backend=backend).fit(X_ref, [0, 1, 2])
    np.testing.assert_array_equal(classifier.predict(X_query), [2])


def test_distances_next_to_float64s_limit(backend):
    """The range of pairwise_distances' docstring: distances beyond float64 are inf, the others exact."""
    X = np.array([[-1.5e308, 0.0], [1e308, 1.0], [1e308, 2.0]])
    distances, indices = knn(X, X, 3, backend=backend)
    np.testing.assert_array_equal(indices, [[0, 1, 2], [1, 2, 0], [2, 1, 0]])
    np.testing.assert_array_equal(distances, [[0.0, np.inf, np.inf], [0.0, 1.0, np.inf], [0.0, 1.0, np.inf]])


@pytest.mark.parametrize("offset", [1e6, -1e6])
def test_offset_data(backend, rng, offset):
    X_ref = rng.normal(size=(25, 4)) + offset
    X_query = rng.normal(size=(6, 4)) + offset
    _check_against_naive(X_query, X_ref, 5, backend, np.float64)


def test_indices_identical_across_backends(dtype, rng):
    """Same indices on every backend and the exact float64 ranking, near-ties and exact ties included."""
    base = rng.normal(size=(40, 6))
    X_ref = np.concatenate([base, base[:10], base[5:15] + 1e-7]).astype(dtype)
    X_query = np.concatenate([base[:5] + 1e-8, rng.normal(size=(10, 6))]).astype(dtype)
    _, expected = naive.knn(X_query, X_ref, 7)
    for name in ready_backends():
        _, indices = knn(X_query, X_ref, 7, backend=name)
        np.testing.assert_array_equal(indices, expected, err_msg=name)


@FAST_SETTINGS
@given(data=st.data())
def test_integer_data_matches_naive(backend, dtype, data):
    """Small integer values: every distance is exact, so ties are exact and must go to the lower index."""
    n_ref = data.draw(st.integers(1, 12), label="n_ref")
    n_query = data.draw(st.integers(1, 6), label="n_query")
    d = data.draw(st.integers(1, 4), label="d")
    k = data.draw(st.integers(1, n_ref), label="k")
    X_ref = data.draw(arrays(dtype, (n_ref, d), elements=st.integers(-4, 4)), label="X_ref")
    X_query = data.draw(arrays(dtype, (n_query, d), elements=st.integers(-4, 4)), label="X_query")
    _check_against_naive(X_query, X_ref, k, backend, dtype)


@FAST_SETTINGS
@given(data=st.data())
def test_distances_match_scipy(backend, dtype, data):
    n_ref = data.draw(st.integers(1, 12), label="n_ref")
    n_query = data.draw(st.integers(1, 6), label="n_query")
    d = data.draw(st.integers(1, 5), label="d")
    k = data.draw(st.integers(1, n_ref), label="k")
    elements = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)
    X_ref = data.draw(arrays(dtype, (n_ref, d), elements=elements), label="X_ref")
    X_query = data.draw(arrays(dtype, (n_query, d), elements=elements), label="X_query")
    distances, indices = knn(X_query, X_ref, k, backend=backend)
    exact = cdist(X_query.astype(np.float64), X_ref.astype(np.float64))
    magnitude = max(1.0, float(np.abs(X_ref).max()), float(np.abs(X_query).max()))
    np.testing.assert_allclose(distances, np.sort(exact, axis=1)[:, :k], rtol=RTOL[dtype],
                               atol=RTOL[dtype] * magnitude)
    # The indices point at rows with those distances.
    np.testing.assert_allclose(np.take_along_axis(exact, indices, axis=1), distances, rtol=RTOL[dtype],
                               atol=RTOL[dtype] * magnitude)


def test_matches_sklearn_nearest_neighbors(backend, dtype, rng):
    X_ref = rng.normal(size=(30, 5)).astype(dtype)
    X_query = rng.normal(size=(8, 5)).astype(dtype)
    distances, indices = knn(X_query, X_ref, 6, backend=backend)
    nn = NearestNeighbors(n_neighbors=6, algorithm="brute").fit(X_ref.astype(np.float64))
    expected_d, expected_i = nn.kneighbors(X_query.astype(np.float64))
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_allclose(distances, expected_d, rtol=RTOL[dtype], atol=RTOL[dtype])


def test_mixed_dtypes_give_float64(rng):
    X_ref = rng.normal(size=(6, 2)).astype(np.float32)
    X_query = rng.normal(size=(2, 2))
    distances, _ = knn(X_query, X_ref, 2, backend="numpy")
    assert distances.dtype == np.float64
    distances, _ = knn(X_query.astype(np.int32), X_ref.astype(np.int64), 2, backend="numpy")
    assert distances.dtype == np.float64
