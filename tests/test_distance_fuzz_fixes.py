"""Regressions from a fuzzing hunt: pairwise_distances(A) exactly symmetric, KnnIndex.query's
checks, the numpy reference's bits (one-column sums, max-pool gradients), huge pooling windows on
the numpy backend, and argument checks that came too late or not at all."""

import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cdist, squareform

import fastdl
from conftest import RTOL, ready_backends
from fastdl import _parallel
from fastdl import backend as _backend
from fastdl.data.clock_render import render_clocks
from fastdl.data.face_render import render_faces
from fastdl.ops import avg_pool2d, class_centroids, distance, knn, max_pool2d, pairwise_distances
from fastdl.ops import pool as pool_ops
from fastdl.ops.neighbors import KnnIndex


# pairwise_distances(A): exactly symmetric on the GEMM path ------------------------------------

@pytest.mark.parametrize("n_rows", [300, 600])  # 600: three row blocks, an odd count of them
@pytest.mark.parametrize("squared", [False, True])
def test_distances_of_a_with_itself_are_exactly_symmetric(backend, dtype, rng, n_rows, squared):
    """Entry (i, j) came from row block i's GEMM and (j, i) from block j's, which round apart:
    232 of 300 x 300 float64 entries differed by an ulp and scipy's squareform refused D."""
    A = rng.standard_normal((n_rows, 8)).astype(dtype)
    assert n_rows * n_rows * (8 + distance.DIRECT_PAIR_COST) > distance.DIRECT_MAX_WORK  # the GEMM path
    D = pairwise_distances(A, squared=squared, backend=backend)
    np.testing.assert_array_equal(D, D.T)
    assert (np.diag(D) == 0).all()
    expected = cdist(A.astype(np.float64), A.astype(np.float64), "sqeuclidean" if squared else "euclidean")
    np.testing.assert_allclose(D, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * expected.max())
    if not squared:
        squareform(D)  # raised "Distance matrix 'X' must be symmetric"


def test_symmetric_distances_are_the_same_bits_everywhere(dtype, rng, monkeypatch):
    """Small row blocks and thread ranges (forced here) give every backend and thread count the
    same bits, for even and odd counts of blocks, with near-duplicate rows."""
    monkeypatch.setattr(distance, "ROW_BLOCK", 16)
    monkeypatch.setattr(_parallel, "MIN_WORK_PER_THREAD", 1)
    base = rng.standard_normal((140, 32))
    A = np.concatenate([base, base[:10] + 1e-9]).astype(dtype)
    for n_rows in (150, 129, 33):  # 10, 9 and 3 blocks
        results = {}
        for name in ready_backends():
            for threads in (1, 2, 3):
                fastdl.set_num_threads(threads)
                results[name, threads] = pairwise_distances(A[:n_rows], backend=name)
        reference = results[ready_backends()[0], 1]
        np.testing.assert_array_equal(reference, reference.T)
        for key, out in results.items():
            np.testing.assert_array_equal(out, reference, err_msg=str(key))
        # The same entries as the general path, to its accuracy.
        general = pairwise_distances(A[:n_rows], A[:n_rows].copy(), backend="numpy")
        np.testing.assert_allclose(reference, general, rtol=RTOL[dtype], atol=RTOL[dtype])


# KnnIndex.query: k, dtype, width and order checked before the kernels ----------------------------

@pytest.mark.parametrize("n_features", [3, 20])  # the kd-tree (numba, cython) and the GEMM path
def test_knn_index_query_checks_k(backend, dtype, rng, n_features):
    X_ref = rng.standard_normal((50, n_features)).astype(dtype)
    index = KnnIndex(X_ref.copy(), backend)
    X_query = rng.standard_normal((2, n_features)).astype(dtype)
    for k in (51, 60, 0, -1):  # past n_ref: duplicated rows (numba) or uninitialised memory (cython)
        with pytest.raises(ValueError, match="k must be between 1 and 50"):
            index.query(X_query, k)
    with pytest.raises(TypeError, match="k must be an integer"):
        index.query(X_query, 2.0)
    distances, indices = index.query(X_query, 50)
    assert sorted(indices[0].tolist()) == list(range(50))


def test_knn_index_query_converts_or_refuses_other_queries(backend, rng):
    """Cython's kernels took only C-ordered queries of the rows' dtype (raw buffer errors otherwise)."""
    X_ref = rng.standard_normal((300, 20))
    X_query = rng.standard_normal((5, 20))
    index = KnnIndex(X_ref.copy(), backend)
    expected = index.query(X_query, 4)
    np.testing.assert_array_equal(expected[1], knn(X_query, X_ref, 4, backend=backend)[1])
    strided = np.zeros((5, 40))
    strided[:, ::2] = X_query
    for query in (X_query.astype(np.float32), np.asfortranarray(X_query), X_query.astype(">f8"), strided[:, ::2]):
        exact = knn(np.asarray(query, dtype=np.float64), X_ref, 4, backend=backend)
        distances, indices = index.query(query, 4)
        np.testing.assert_array_equal(indices, exact[1])
        np.testing.assert_array_equal(distances, exact[0])
    index32 = KnnIndex(X_ref.astype(np.float32), backend)
    with pytest.raises(TypeError, match="float64"):
        index32.query(X_query, 4)  # float64 rows ranked in float32 would lose digits silently
    with pytest.raises(ValueError, match="20 features"):
        index.query(X_query[:, :3], 4)
    with pytest.raises(TypeError, match="real numbers"):
        index.query(X_query.astype(complex), 4)
    distances, indices = index.query(X_query[:0], 4)
    assert distances.shape == indices.shape == (0, 4)


# The numpy reference's bits ---------------------------------------------------------------------

@pytest.mark.parametrize("n_features", [1, 2, 3, 9])
def test_column_sums_add_the_rows_in_order(backend, dtype, rng, n_features):
    """np.sum adds a single contiguous column pairwise, the compiled kernels row by row."""
    kernels = _backend.kernels("distance", backend)[0]
    X = (rng.standard_normal((100, n_features)) * 10.0 ** rng.integers(-3, 8, (100, n_features))).astype(dtype)
    sums, low, high = np.empty(n_features), np.empty(n_features), np.empty(n_features)
    kernels.column_stats(X, sums, low, high, 1)
    for f in range(n_features):
        total = 0.0
        for value in X[:, f]:
            total += float(value)
        assert sums[f] == total
    np.testing.assert_array_equal(low, X.min(axis=0))
    np.testing.assert_array_equal(high, X.max(axis=0))


def test_one_feature_distances_are_the_same_bits_everywhere(dtype):
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((515, 1)).astype(dtype), rng.standard_normal((8, 1)).astype(dtype)
    outs = {name: pairwise_distances(A, B, backend=name) for name in ready_backends()}
    for name, out in outs.items():
        np.testing.assert_array_equal(out, outs[ready_backends()[0]], err_msg=name)


@pytest.mark.parametrize("image, pool, strides", [
    ((4, 6), (7, 7), (2, 1)), ((7, 7), (2, 8), (2, 1)), ((6, 7), (6, 8), (8, 1)), ((7, 3), (8, 5), (9, 1)),
])
def test_max_pool_gradients_add_up_in_window_order_everywhere(dtype, image, pool, strides):
    """Windows sharing a winner add their gradients in row-major window order on every backend
    (the numpy reference added them in reverse)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, *image, 2)).astype(dtype)
    dout = rng.standard_normal(max_pool2d(x, pool, strides, "same", backend="numpy").shape).astype(dtype)
    grads = {name: pool_ops.max_pool2d_grad(x, dout, pool, strides, "same", backend=name) for name in ready_backends()}
    for name, grad in grads.items():
        np.testing.assert_array_equal(grad, grads[ready_backends()[0]], err_msg=name)


@pytest.mark.parametrize("window", [300, 2**20, 2**31 - 1])
def test_windows_far_larger_than_the_image(backend, dtype, window):
    """The numpy backend padded the image to every window's full extent: 48 TiB for 2**20."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 6, 3)).astype(dtype)
    out = max_pool2d(x, window, 1, "same", backend=backend)
    np.testing.assert_array_equal(out, np.broadcast_to(x.max(axis=(1, 2), keepdims=True), x.shape))
    mean = avg_pool2d(x, window, 1, "same", backend=backend)
    np.testing.assert_allclose(mean, np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape), rtol=RTOL[dtype])
    dout = np.ones_like(x)
    grad = pool_ops.max_pool2d_grad(x, dout, window, 1, "same", backend=backend)
    winners = x.reshape(2, 30, 3).argmax(axis=1)
    expected = np.zeros((2, 30, 3), dtype)
    expected[np.arange(2)[:, None], winners, np.arange(3)] = 30  # every window's winner
    np.testing.assert_array_equal(grad, expected.reshape(x.shape))
    avg_grad = pool_ops.avg_pool2d_grad(x, dout, window, 1, "same", backend=backend)
    np.testing.assert_allclose(avg_grad, np.ones_like(x), rtol=RTOL[dtype])


def test_far_queries_are_silent_on_every_backend(backend):
    """A query far outside the references overflows float32 in the shifted copy (then rescaled):
    the numpy backend warned "overflow encountered in cast"."""
    X_ref = np.random.default_rng(0).standard_normal((50, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        distances, indices = knn(np.array([[1e300, 0.0, 0.0]]), X_ref, 2, backend=backend)
    assert distances[0, 0] == 1e300


# Argument checks -----------------------------------------------------------------------------------

def test_squared_must_be_a_bool(backend):
    with pytest.raises(TypeError, match="squared must be a bool"):
        pairwise_distances(np.ones((3, 2)), squared="yes", backend=backend)
    assert pairwise_distances(np.ones((3, 2)), squared=np.True_, backend=backend).shape == (3, 3)


def test_timedelta_arrays_are_refused(backend):
    """numpy counts timedelta64 as an integer type."""
    with pytest.raises(TypeError, match="timedelta64"):
        pairwise_distances(np.ones((3, 2)).astype("m8[s]"), backend=backend)


def test_class_centroids_refuses_more_classes_than_samples_before_allocating(backend):
    """n_classes=2**40 raised MemoryError for the (n_classes, n_features) sums first."""
    with pytest.raises(ValueError, match="no samples"):
        class_centroids(np.ones((3, 2)), [0, 1, 1], n_classes=2**40, backend=backend)


@pytest.mark.parametrize("render", [render_clocks, render_faces])
def test_renderers_refuse_indices_past_int64(render):
    with pytest.raises(ValueError, match="first \\+ n - 1"):
        render(2, first=2**63 - 1, size=16)
    assert render(1, first=2**63 - 1, size=16)[0].shape[0] == 1
    assert render(0, first=2**63 - 1, size=16)[0].shape[0] == 0
