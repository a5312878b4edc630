"""Kernels called directly (as the ops call them), every backend and dtype, against tests/naive.py."""

import importlib

import numpy as np
import pytest

import naive
from fastdl.backend import PACKAGES


def _kernels(backend, family):
    return importlib.import_module(f"{PACKAGES[backend]}.{family}")


@pytest.mark.parametrize("out_dtype", [np.float32, np.float64], ids=["to-float32", "to-float64"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_shift_rows(backend, dtype, rng, out_dtype, n_threads):
    X = (rng.normal(size=(37, 11)) * 100 + 1e3).astype(dtype)
    origin = X.mean(axis=0, dtype=np.float64)
    out = np.empty(X.shape, dtype=out_dtype)
    norms = np.empty(X.shape[0])
    _kernels(backend, "distance").shift_rows(X, origin, 2.0**-10, out, norms, n_threads)
    expected, expected_norms = naive.shift_rows(X, origin, 2.0**-10, out_dtype)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_allclose(norms, expected_norms, rtol=1e-13)


def test_shift_rows_empty(backend):
    X = np.empty((0, 3))
    out = np.empty((0, 3), dtype=np.float32)
    norms = np.empty(0)
    _kernels(backend, "distance").shift_rows(X, np.zeros(3), 1.0, out, norms, 2)
    assert out.shape == (0, 3)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("shape", [(1, 1), (37, 11), (5, 64), (23, 150)], ids=str)
def test_column_stats(backend, dtype, rng, shape, n_threads):
    # 150 columns: two full column blocks of 64 and a partial one.
    X = (rng.normal(size=shape) * 100 + 1e3).astype(dtype)
    sums, low, high = np.empty(shape[1]), np.empty(shape[1]), np.empty(shape[1])
    _kernels(backend, "distance").column_stats(X, sums, low, high, n_threads)
    expected_sums, expected_low, expected_high = naive.column_stats(X)
    np.testing.assert_allclose(sums, expected_sums, rtol=1e-14)
    np.testing.assert_array_equal(low, expected_low)
    np.testing.assert_array_equal(high, expected_high)


@pytest.mark.parametrize("squared", [False, True])
def test_distances_from_gram_refines_cancellation(backend, dtype, squared):
    # Rows 0 and 1 are nearly equal far from the origin: the GEMM formula loses every digit there,
    # so the kernel must recompute that entry directly.
    A = np.array([[1e4, 1e4], [1e4 + 1e-3, 1e4]], dtype=np.float64).astype(dtype)
    norms = np.einsum("ij,ij->i", A.astype(np.float64), A.astype(np.float64))
    gram = (A @ A.T).astype(dtype)
    _kernels(backend, "distance").distances_from_gram(gram, A, A, norms, norms, 2.0**-12, 1.0, squared, 1)
    exact = float(A[1, 0]) - float(A[0, 0])
    expected = exact**2 if squared else abs(exact)
    np.testing.assert_allclose(gram[0, 1], expected, rtol=1e-6)
    assert gram[0, 0] == 0 and gram[1, 1] == 0


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("nan_columns", [slice(None, None, 3), slice(None)], ids=["some-nan", "all-nan"])
def test_knn_from_gram_nan_terms_rule_nothing_out(backend, dtype, rng, nan_columns, n_threads):
    """A NaN in the Gram block (which the ops never pass) bounds nothing: its rows are ranked
    exactly, so every output is written and the answer is still the exact one."""
    X_ref = rng.normal(size=(70, 3)).astype(dtype)
    X_query = rng.normal(size=(9, 3)).astype(dtype)
    as64 = X_query.astype(np.float64), X_ref.astype(np.float64)
    gram = (as64[0] @ as64[1].T).astype(np.float32)
    gram[:, nan_columns] = np.nan
    norms_q, norms_r = (np.einsum("ij,ij->i", a, a) for a in as64)
    out_dist, out_idx = np.full((9, 4), -1.0), np.full((9, 4), -1, dtype=np.int64)
    _kernels(backend, "neighbors").knn_from_gram(gram, norms_q, norms_r, 1e-6, 1e-30, X_query, X_ref, 1.0,
                                                 out_dist, out_idx, n_threads)
    expected_d, expected_i = naive.knn(X_query, X_ref, 4)
    np.testing.assert_array_equal(out_idx, expected_i)
    np.testing.assert_allclose(out_dist, expected_d, rtol=1e-12)
