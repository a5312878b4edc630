"""pairwise_distances' direct path for small inputs, and the column statistics behind the GEMM path."""

import warnings

import numpy as np
import pytest

import test_distance
from conftest import RTOL
from fastdl import backend as _backend
from fastdl.ops import distance as distance_op
from fastdl.ops import pairwise_distances

LANES = 8


def exact(A, B, squared):
    """The distances of every row of A to every row of B from float64 differences, each square
    added into lane f % 8 in order and the lanes added pairwise (the kernels' exact formula),
    rounded once to A's dtype. Fine for values whose squares stay inside float64's range."""
    diff = A.astype(np.float64)[:, None, :] - B.astype(np.float64)[None, :, :]
    squares = np.zeros(diff.shape[:2] + (-(-A.shape[1] // LANES) * LANES,))
    squares[..., : A.shape[1]] = diff * diff
    lane = np.zeros(diff.shape[:2] + (LANES,))
    for start in range(0, squares.shape[-1], LANES):
        lane += squares[..., start : start + LANES]
    l0, l1, l2, l3, l4, l5, l6, l7 = np.moveaxis(lane, -1, 0)
    total = ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))
    return (total if squared else np.sqrt(total)).astype(A.dtype)


@pytest.mark.parametrize("squared", [False, True], ids=["dist", "sqdist"])
@pytest.mark.parametrize("shape", [(1, 1, 2), (10, 10, 8), (13, 9, 17), (40, 30, 3), (3, 600, 9), (100, 3, 9),
                                   (1, 40, 100), (20, 300, 64)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_small_inputs_get_exact_distances(backend, dtype, rng, squared, shape, offset):
    """Small inputs skip the GEMM (whose fixed costs were 20-40x scipy's cdist there): every entry
    is computed from the rows as given, to the bit (the GEMM formula's were a few ulp off), by
    each kernel's paths (a pair at a time, or a row against blocks of rows: of B, or of A where
    B has fewer rows)."""
    n, m, d = shape
    A = (rng.normal(size=(n, d)) + offset).astype(dtype)
    B = (rng.normal(size=(m, d)) + offset).astype(dtype)
    out = pairwise_distances(A, B, squared=squared, backend=backend)
    assert out.dtype == dtype and out.shape == (n, m)
    np.testing.assert_array_equal(out, exact(A, B, squared))
    np.testing.assert_array_equal(pairwise_distances(A, squared=squared, backend=backend), exact(A, A, squared))


@pytest.mark.parametrize("squared", [False, True], ids=["dist", "sqdist"])
def test_direct_kernel_on_threads(backend, dtype, rng, squared):
    """The kernels' threaded variant (rows split between threads) gives the same bits, huge and
    tiny values included (their differences are scaled pair by pair)."""
    big, tiny = np.finfo(dtype).max, {np.float32: 1e-20, np.float64: 1e-140}[dtype]
    A = np.concatenate([rng.normal(size=(9, 5)), [[0.8 * big] * 5, [tiny] * 5]]).astype(dtype)
    B = np.concatenate([rng.normal(size=(6, 5)), [[-0.8 * big] * 5, [-tiny] * 5]]).astype(dtype)
    kernels, _ = _backend.kernels("distance", backend)
    outs = [np.empty((11, 8), dtype=dtype) for _ in range(2)]
    for out, threads in zip(outs, (1, 2)):
        kernels.direct_distances(A, B, out, squared, threads)
    np.testing.assert_array_equal(outs[1], outs[0])
    np.testing.assert_array_equal(outs[0][:9, :6], exact(A[:9], B[:6], squared))
    np.testing.assert_array_equal(outs[0][10, 7], exact(A[10:], B[7:], squared)[0, 0])
    assert np.isinf(outs[0][9, 6]) and outs[0][10, 7] > 0


def test_direct_kernel_scales_pairs_past_its_first_block(backend, dtype, rng):
    """The kernels take the pairs of a row in blocks (256 in the compiled ones): a pair whose
    squares underflow, in a later block, is scaled and put in its own place."""
    tiny = {np.float32: 1e-20, np.float64: 1e-140}[dtype]
    A, B = rng.normal(size=(2, 5)).astype(dtype), rng.normal(size=(600, 5)).astype(dtype)
    A[1], B[530] = tiny, -tiny
    kernels, _ = _backend.kernels("distance", backend)
    out = np.empty((2, 600), dtype=dtype)
    kernels.direct_distances(A, B, out, False, 1)
    np.testing.assert_array_equal(out, exact(A, B, False))
    np.testing.assert_allclose(out[1, 530], 2 * tiny * np.sqrt(5), rtol=1e-6)


def test_fast_checks_leave_odd_inputs_to_check_matrix(backend, dtype, rng):
    """Inputs the direct path's own checks do not pass (a list, Fortran order, a read-only array,
    mixed dtypes) still get check_matrix's conversions, and exact distances."""
    A = rng.normal(size=(6, 5)).astype(dtype)
    B = rng.normal(size=(4, 5)).astype(dtype)
    read_only = B.copy()
    read_only.flags.writeable = False
    other = np.float64 if dtype == np.float32 else np.float32
    for a, b in [(A.tolist(), B), (np.asfortranarray(A), B), (A, read_only), (A, B.astype(other))]:
        out = pairwise_distances(a, b, backend=backend)
        np.testing.assert_array_equal(out, exact(np.asarray(a, out.dtype), np.asarray(b, out.dtype), False))


@pytest.mark.parametrize("bad, message", [
    (np.array([[np.nan, 1.0]]), "A contains NaN or infinity"),
    (np.array([[np.inf, 1.0]]), "A contains NaN or infinity"),
    (np.ones((2, 3)), "same number of features"),
    (np.ones((0, 2)), "must not be empty"),
    (np.ones(2), "must be 2-D"),
])
def test_fast_checks_raise_check_matrix_errors(backend, dtype, bad, message):
    with pytest.raises(ValueError, match=message):
        pairwise_distances(bad.astype(dtype), np.ones((2, 2), dtype=dtype), backend=backend)


@pytest.mark.parametrize("squared", [False, True], ids=["dist", "sqdist"])
def test_both_paths_agree_across_the_threshold(backend, dtype, rng, squared, monkeypatch):
    """The direct path and the GEMM path answer alike (to the accuracy the GEMM path promises)."""
    A = (rng.normal(size=(20, 11)) + 50).astype(dtype)
    B = (rng.normal(size=(15, 11)) + 50).astype(dtype)
    direct = pairwise_distances(A, B, squared=squared, backend=backend)
    monkeypatch.setattr(distance_op, "DIRECT_MAX_WORK", -1)
    gemm = pairwise_distances(A, B, squared=squared, backend=backend)
    assert not np.array_equal(direct, gemm)  # the two paths did run
    np.testing.assert_allclose(direct, gemm, rtol=RTOL[dtype], atol=RTOL[dtype] * float(np.abs(gemm).max()))


class TestGemmPath:
    """tests/test_distance.py with the GEMM path forced: its shapes are small enough to take the
    direct path otherwise, and the GEMM path still serves every larger input."""

    @pytest.fixture(autouse=True)
    def _gemm_path(self, monkeypatch):
        monkeypatch.setattr(distance_op, "DIRECT_MAX_WORK", -1)


for _name in dir(test_distance):
    if _name.startswith("test_") and _name != "test_refined_entries_under_fastmath":  # runs both paths itself
        setattr(TestGemmPath, _name, staticmethod(getattr(test_distance, _name)))


# column_stats (the GEMM path's shift origin): rows outer now, the same bits -------------------


def column_stats_in_row_order(X):
    """Float64 column sums (the rows added in order, as the kernels promise), minima and maxima."""
    sums = X[0].astype(np.float64)
    for row in X[1:]:
        sums = sums + row.astype(np.float64)
    return sums, X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)


@pytest.mark.parametrize("shape", [(1, 5), (7, 3), (300, 64), (200, 130), (50, 257)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_column_stats_add_the_rows_in_order(backend, dtype, rng, shape, offset):
    """On every thread count (threads own ranges of columns; 130 and 257 columns split in two)."""
    X = (rng.normal(size=shape) * rng.uniform(0.1, 10, size=shape[1]) + offset).astype(dtype)
    kernels, _ = _backend.kernels("distance", backend)
    expected = column_stats_in_row_order(X)
    for threads in (1, 2, 3):
        stats = [np.full(shape[1], np.nan) for _ in range(3)]
        kernels.column_stats(X, *stats, threads)
        for got, want in zip(stats, expected):
            np.testing.assert_array_equal(got.view(np.int64), want.view(np.int64), err_msg=f"{threads} threads")


def test_gemm_path_bits_do_not_depend_on_threads(dtype, rng):
    """The GEMM path (large enough inputs) on every backend and thread count, 1e6 offset included."""
    X = (rng.normal(size=(70, 130)) + 1e6).astype(dtype)
    Y = (rng.normal(size=(60, 130)) + 1e6).astype(dtype)
    assert 70 * 60 * (130 + distance_op.DIRECT_PAIR_COST) > distance_op.DIRECT_MAX_WORK
    test_distance.assert_same_bits_everywhere(X, Y)


def test_reference_exact_distances_of_a_nan_row_warn_nothing():
    # A NaN row was rescaled like a row out of range: its other squares, scaled by 2**600, overflowed.
    from fastdl.kernels.npy import distance as npy_distance

    A = np.array([[np.nan, 1.0, 2.0], [1.0, 2.0, 3.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sums, unscales = npy_distance.exact_distances(A, np.zeros_like(A))
    assert np.isnan(sums[0]) and sums[1] == 14.0 and (unscales == 1.0).all()
