"""Means of float32 data kept to one rounding (an accuracy hunt's findings).

Average pooling sums each window in float64 whatever the dtype, rounding once at the end: float32
means within one rounding of the exact mean (GlobalAveragePooling2D over 150x150 maps was 30-40x
worse than PyTorch), in one order (row-major cells from zero) on every backend, to the bit.

NearestCentroid keeps float64 centroids for float32 rows (as scikit-learn's centroids_) and ranks
with them: float32 centroids near 1e6 moved by up to half an ulp (0.03) and changed predictions.
"""

import importlib

import numpy as np
import pytest

import fastdl
import fastdl._parallel
import naive
from conftest import ready_backends
from fastdl import nn
from fastdl.backend import PACKAGES
from fastdl.neighbors import NearestCentroid
from fastdl.ops.pool import avg_pool2d, pool_geometry


def _exactly_summable(rng, shape, dtype):
    """Values in [64, 128) on float32's grid there (multiples of 2**-17): every float64 sum of up to
    2**18 of them is exact, so float64(sum) / count is the exact mean rounded once."""
    return (64 + np.floor(rng.uniform(0, 64, shape) * 2**17) / 2**17).astype(dtype)


@pytest.mark.parametrize("pool_size, strides, padding", [((40, 36), None, "valid"), ((7, 5), 3, "same")],
                         ids=["global", "7x5-same"])
def test_avg_pool_rounds_once(backend, dtype, pool_size, strides, padding):
    x = _exactly_summable(np.random.default_rng(0), (2, 40, 36, 5), dtype)
    got = avg_pool2d(x, pool_size, strides, padding, backend=backend)
    # naive sums Python floats: exact here, its mean rounded once to float64, then once to dtype.
    want = naive.avg_pool2d(x, pool_size, strides, padding).astype(dtype)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)


def test_global_average_pooling_rounds_once(backend, dtype):
    x = _exactly_summable(np.random.default_rng(1), (3, 30, 26, 4), dtype)
    got = nn.GlobalAveragePooling2D(backend=backend)(x)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, x.astype(np.float64).mean(axis=(1, 2)).astype(dtype))


def test_avg_pool_adds_row_major_from_zero_in_float64(backend, dtype):
    """One 2x7 window per channel, whose float64 sum depends on the order: in channel 0 row 0 is
    2**53 and six ones (each lost: 2**53 + 1 rounds back to 2**53), row 1 cancels the 2**53 and
    keeps its six ones (6, mean 6 / 14); adding a row's four ones first, or by columns, gives 10 or
    12. Channel 1 has the 2**53 in column 4: 4 + 2**53 is exact, the next five ones round back to it
    (ties to even), 6 again; by columns 12. Channel 2 mirrors channel 0. The 7-cell rows take every
    path of the kernels' unrolled loops (four cells, two, one)."""
    big = 2.0**53
    x = np.ones((1, 2, 7, 3))
    x[0, 0, 0, [0, 2]] = big
    x[0, 1, 0, [0, 2]] = -big
    x[0, 0, 4, 1] = big
    x[0, 1, 4, 1] = -big
    x[0, :, :, 2] *= -1
    got = avg_pool2d(x.astype(dtype), (2, 7), backend=backend)
    want = (np.array([6.0, 6.0, -6.0]) / 14).astype(dtype)
    np.testing.assert_array_equal(got.reshape(3), want)


@pytest.mark.parametrize("pool_size, strides, padding", [((5, 9), (2, 3), "same"), ((6, 11), None, "valid")],
                         ids=["5x9-same", "global"])
def test_avg_pool_backends_agree_to_the_bit_on_wide_windows(dtype, monkeypatch, pool_size, strides, padding):
    """Windows wider than four cells (the compiled kernels add several cells a pass) and values over
    16 orders of magnitude, where any other order or intermediate rounding would change bits."""
    monkeypatch.setattr(fastdl._parallel, "MIN_WORK_PER_THREAD", 1)
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(3, 6, 11, 5)) * np.exp(rng.uniform(-18, 18, (3, 6, 11, 5)))).astype(dtype)
    results = {}
    for name in ready_backends():
        for threads in (1, 2):
            fastdl.set_num_threads(threads)
            results[name, threads] = avg_pool2d(x, pool_size, strides, padding, backend=name)
    first = next(iter(results.values()))
    for key, out in results.items():
        np.testing.assert_array_equal(out, first, err_msg=str(key))


@pytest.mark.cuda
@pytest.mark.parametrize("pool_size, strides, padding", [((2, 7), 1, "valid"), ((3, 6), (2, 3), "same")], ids=str)
def test_cuda_avg_pool_wide_windows_match_the_reference_to_the_bit(cuda_backend, dtype, pool_size, strides,
                                                                   padding):
    from numba import cuda

    shape = (1, 3, 8, 2)
    *window, out_h, out_w = pool_geometry(shape, pool_size, strides, padding)
    rng = np.random.default_rng(3)
    x = (rng.normal(size=shape) * np.exp(rng.uniform(-18, 18, shape))).astype(dtype)
    want = np.empty((1, out_h, out_w, 2), dtype)
    importlib.import_module(f"{PACKAGES['numpy']}.pool").avg_pool2d_forward(x, want, *window, 1)
    d_out = cuda.to_device(np.full(want.shape, np.nan, dtype))
    importlib.import_module(f"{PACKAGES['cuda']}.pool").avg_pool2d_forward(cuda.to_device(x), d_out, *window, 1)
    np.testing.assert_array_equal(d_out.copy_to_host(), want)


# NearestCentroid --------------------------------------------------------------------------------

# Two classes of two features near 1e6, on float32's grid there (1/16 apart), and a query. The exact
# means are A = 1e6 + (3.5, 1.75) / 16 and B = 1e6 + (6.75, 5.75) / 16: the query is nearer B
# (squared distances 0.0286 and 0.0239); rounded to float32, A moves to (4, 2) / 16 and B to (7, 6) / 16,
# and the query is nearer A (0.0195 and 0.0313).
_GRID_A = [[5, 1], [4, 1], [2, 4], [3, 1]]
_GRID_B = [[7, 6], [9, 6], [9, 9], [2, 2]]
_GRID_QUERY = [[5, 4]]


def _near_1e6(cells, dtype):
    return (1e6 + np.array(cells, dtype=np.float64) / 16).astype(dtype)


def _nearest_centroid_case(dtype):
    X = _near_1e6(_GRID_A + _GRID_B, dtype)
    y = np.array(["a"] * 4 + ["b"] * 4)
    return X, y, _near_1e6(_GRID_QUERY, dtype)


def test_nearest_centroid_keeps_float64_centroids(backend, dtype):
    X, y, _ = _nearest_centroid_case(dtype)
    clf = NearestCentroid(backend=backend).fit(X, y)
    assert clf.centroids_.dtype == np.float64  # as scikit-learn's, for float32 X too
    want = np.array([X[:4].astype(np.float64).mean(axis=0), X[4:].astype(np.float64).mean(axis=0)])
    np.testing.assert_array_equal(clf.centroids_, want)  # exact: the sums and means are
    assert np.array_equal(want, 1e6 + np.array([[3.5, 1.75], [6.75, 5.75]]) / 16)


def test_nearest_centroid_ranks_with_the_exact_means(backend, dtype):
    X, y, query = _nearest_centroid_case(dtype)
    assert NearestCentroid(backend=backend).fit(X, y).predict(query).tolist() == ["b"]


@pytest.mark.cuda
def test_cuda_nearest_centroid_ranks_with_the_exact_means(cuda_backend, dtype):
    X, y, query = _nearest_centroid_case(dtype)
    clf = NearestCentroid(backend=cuda_backend).fit(X, y)
    assert clf.centroids_.dtype == np.float64
    assert clf.predict(query).tolist() == ["b"]
