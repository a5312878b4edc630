"""fastdl.ops.pairwise_distances against the naive loops and scipy, on every backend and dtype."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import cdist

import fastdl
import naive
from conftest import RTOL, ready_backends
from fastdl.ops import pairwise_distances
from test_knn import far_and_near

# The backend and dtype fixtures hold immutable names, so sharing them across examples is safe.
FAST_SETTINGS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _scale(reference):
    """An absolute tolerance floor: distances are accurate relative to the data's magnitude."""
    return max(1.0, float(np.abs(reference).max()))


@pytest.mark.parametrize("squared", [False, True], ids=["dist", "sqdist"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 5, 3), (13, 9, 17)], ids=lambda s: "x".join(map(str, s)))
def test_matches_naive(backend, dtype, rng, squared, shape):
    n, m, d = shape
    A = rng.normal(size=(n, d)).astype(dtype)
    B = rng.normal(size=(m, d)).astype(dtype)
    out = pairwise_distances(A, B, squared=squared, backend=backend)
    expected = naive.pairwise_distances(A, B, squared=squared)
    assert out.shape == (n, m)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * _scale(expected))


@pytest.mark.parametrize("squared", [False, True], ids=["dist", "sqdist"])
def test_single_argument_is_self_distance(backend, dtype, rng, squared):
    A = rng.normal(size=(9, 4)).astype(dtype)
    out = pairwise_distances(A, squared=squared, backend=backend)
    expected = naive.pairwise_distances(A, squared=squared)
    np.testing.assert_allclose(out, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * _scale(expected))
    # A row's distance to itself is recomputed directly, so it is exactly zero.
    np.testing.assert_array_equal(np.diag(out), 0.0)
    np.testing.assert_allclose(out, out.T, rtol=RTOL[dtype], atol=RTOL[dtype])


@FAST_SETTINGS
@given(data=st.data())
def test_matches_scipy_cdist(backend, dtype, data):
    n = data.draw(st.integers(1, 8), label="n")
    m = data.draw(st.integers(1, 8), label="m")
    d = data.draw(st.integers(1, 6), label="d")
    elements = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
    A = data.draw(arrays(dtype, (n, d), elements=elements), label="A")
    B = data.draw(arrays(dtype, (m, d), elements=elements), label="B")
    squared = data.draw(st.booleans(), label="squared")
    out = pairwise_distances(A, B, squared=squared, backend=backend)
    expected = cdist(A.astype(np.float64), B.astype(np.float64), "sqeuclidean" if squared else "euclidean")
    assert out.dtype == dtype
    assert (out >= 0).all()
    # Errors are relative to |a|^2 + |b|^2 (the GEMM formula), so bound them by the data's scale.
    magnitude = max(1.0, float(np.abs(A).max()), float(np.abs(B).max())) ** (2 if squared else 1)
    np.testing.assert_allclose(out, expected, rtol=RTOL[dtype], atol=10 * d * RTOL[dtype] * magnitude)


@pytest.mark.parametrize("squared", [False, True], ids=["dist", "sqdist"])
def test_offset_1e6_float64_keeps_precision(backend, rng, squared):
    """Data far from the origin: |a|^2 + |b|^2 - 2ab would cancel catastrophically without the shift."""
    A = rng.normal(size=(11, 5))
    B = rng.normal(size=(8, 5))
    out = pairwise_distances(A + 1e6, B + 1e6, squared=squared, backend=backend)
    expected = cdist(A, B, "sqeuclidean" if squared else "euclidean")
    assert (out >= 0).all()
    # 1e6 + x stores x to about 1e-10 absolute, so that is the accuracy left to ask for.
    np.testing.assert_allclose(out, expected, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("squared", [False, True], ids=["dist", "sqdist"])
def test_offset_1e6_float32_no_negative(backend, rng, squared):
    A = (rng.normal(size=(11, 5)) + 1e6).astype(np.float32)
    B = (rng.normal(size=(8, 5)) + 1e6).astype(np.float32)
    out = pairwise_distances(A, B, squared=squared, backend=backend)
    sq = pairwise_distances(A, B, squared=True, backend=backend)
    assert not (sq < 0).any()
    assert out.dtype == np.float32
    # Compare with the exact distances of the float32 values actually stored.
    expected = cdist(A.astype(np.float64), B.astype(np.float64), "sqeuclidean" if squared else "euclidean")
    np.testing.assert_allclose(out, expected, rtol=RTOL[np.float32], atol=RTOL[np.float32])


def test_offset_self_distances_are_zero_not_negative(backend, dtype, rng):
    A = (rng.normal(size=(10, 3)) + 1e6).astype(dtype)
    sq = pairwise_distances(A, squared=True, backend=backend)
    assert (sq >= 0).all()
    np.testing.assert_array_equal(np.diag(sq), 0.0)


def test_duplicate_and_zero_rows(backend, dtype):
    A = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 4.0]], dtype=dtype)
    B = np.array([[0.0, 0.0], [3.0, 4.0]], dtype=dtype)
    out = pairwise_distances(A, B, backend=backend)
    np.testing.assert_array_equal(out, np.array([[0.0, 5.0], [5.0, 0.0], [5.0, 0.0]], dtype=dtype))


@pytest.mark.parametrize(
    "dtype_a, dtype_b, expected",
    [
        (np.float32, np.float32, np.float32),
        (np.float32, np.float64, np.float64),
        (np.float64, np.float64, np.float64),
        (np.int64, np.int64, np.float64),
        (np.uint8, np.float32, np.float64),
        (np.bool_, np.bool_, np.float64),
    ],
)
def test_output_dtype(dtype_a, dtype_b, expected):
    A = np.ones((2, 3), dtype=dtype_a)
    B = np.zeros((4, 3), dtype=dtype_b)
    out = pairwise_distances(A, B, backend="numpy")
    assert out.dtype == expected
    np.testing.assert_allclose(out, np.sqrt(3.0), rtol=1e-6)


def test_backends_agree(rng, dtype):
    A = rng.normal(size=(12, 6)).astype(dtype)
    B = rng.normal(size=(10, 6)).astype(dtype)
    results = {name: pairwise_distances(A, B, backend=name) for name in ready_backends()}
    reference = results.pop("numpy")
    for name, out in results.items():
        np.testing.assert_allclose(out, reference, rtol=RTOL[dtype], atol=RTOL[dtype], err_msg=name)


def test_list_input(backend):
    out = pairwise_distances([[0, 0], [1, 1]], [[0, 1]], backend=backend)
    np.testing.assert_allclose(out, [[1.0], [1.0]])



@pytest.mark.parametrize("squared", [False, True], ids=["dist", "sqdist"])
@pytest.mark.parametrize("case", ["huge", "tiny"])
def test_small_distances_beside_a_far_row(backend, dtype, squared, case):
    """Refined entries come from the rows as given, each pair at its own scale: with the far row's
    scale for all, the near rows' distances came out 0 (squares below float64's range, or shifted
    float32 copies rounded to one value)."""
    B, A = far_and_near(dtype, case)
    out = pairwise_distances(A, B, squared=squared, backend=backend)
    with np.errstate(over="ignore"):  # the far row's squared distance may be beyond the dtype's range
        expected = (np.abs(A.astype(np.float64) - B.astype(np.float64).T) ** (2 if squared else 1)).astype(dtype)
    np.testing.assert_allclose(out, expected, rtol=2 * np.finfo(dtype).eps)


@pytest.mark.parametrize("squared", [False, True], ids=["dist", "sqdist"])
def test_distances_next_to_the_dtypes_limit(backend, dtype, squared):
    """The docstring's example, in each dtype's range: beyond it inf, the near pair exactly 1."""
    big = np.finfo(dtype).max
    X = np.array([[-0.8 * big, 0.0], [0.6 * big, 1.0], [0.6 * big, 2.0]], dtype=dtype)
    out = pairwise_distances(X, squared=squared, backend=backend)
    np.testing.assert_array_equal(out, [[0.0, np.inf, np.inf], [np.inf, 0.0, 1.0], [np.inf, 1.0, 0.0]])


@pytest.mark.parametrize("squared", [False, True], ids=["dist", "sqdist"])
def test_near_rows_far_from_the_mean_keep_their_digits(backend, dtype, squared):
    """A's row is near B[2] but far from B's mean (the shift's origin): its distance to B[2] comes
    from the rows as given, not from their shifted copies, which had lost the low digits (2% off)."""
    far, offset = {np.float32: (1000.0, 1e-3), np.float64: (2e9, 1e-6)}[dtype]
    B = np.array([[far], [0.0], [1.0]], dtype=dtype)
    A = np.array([[1.0 + offset]], dtype=dtype)
    out = pairwise_distances(A, B, squared=squared, backend=backend)
    exact = float(A[0, 0]) - 1.0
    np.testing.assert_allclose(out[0, 2], exact**2 if squared else exact, rtol=2 * np.finfo(dtype).eps)


def test_near_copies_of_pixel_rows(backend, dtype, rng):
    """Pixel-like rows (0..255, 64 features) against copies nudged by 0.01 in one feature: each
    distance is that nudge as stored, to the dtype's precision (float32 was 4e-4 off, float64 1e-12)."""
    X = rng.uniform(0, 255, (20, 64)).astype(dtype)
    Y = X.copy()
    Y[:, 0] += dtype(0.01)
    out = np.diag(pairwise_distances(X, Y, backend=backend))
    exact = Y[:, 0].astype(np.float64) - X[:, 0].astype(np.float64)
    np.testing.assert_allclose(out, exact, rtol=np.finfo(dtype).eps)


def test_same_bits_on_every_backend_and_thread_count(dtype, rng):
    """Refined entries, GEMM entries and their norms are summed in one order on every CPU backend."""
    X = rng.normal(size=(30, 13)).astype(dtype)
    Y = np.concatenate([X[:10] + dtype(1e-3), rng.normal(size=(8, 13)).astype(dtype) + dtype(50)])
    assert_same_bits_everywhere(X, Y)


def assert_same_bits_everywhere(X, Y):
    """pairwise_distances(X, Y) has the numpy backend's bits on every CPU backend and thread count."""
    results = {}
    for name in ready_backends():
        for threads in (1, 2):
            fastdl.set_num_threads(threads)
            results[name, threads] = pairwise_distances(X, Y, backend=name)
    reference = results.pop(("numpy", 1))
    for key, out in results.items():
        np.testing.assert_array_equal(out, reference, err_msg=str(key))


@pytest.mark.skipif("numba" not in ready_backends(), reason="numba backend not available")
def test_refined_entries_under_fastmath(tmp_path):
    """FASTDL_FASTMATH=1 compiles Numba kernels with fastmath, whose no-NaN assumption dropped the
    test that finds the entries to recompute: near-duplicate rows got NaN distances, and reordered
    the sums of the shifted rows' norms (3 ulps from the other backends). The exact kernels are
    compiled without it."""
    import os
    import subprocess
    import sys

    script = (  # on the direct path, then the GEMM path (one process: tests/test_distance_small.py's
        # TestGemmPath, which forces it in this process, would not reach the subprocess)
        "import numpy as np\n"
        "from fastdl.ops import distance as distance_op, knn, pairwise_distances\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.standard_normal((1, 8)) + 1e-4 * rng.standard_normal((4, 8))\n"
        "for direct_max_work in (distance_op.DIRECT_MAX_WORK, -1):\n"
        "    distance_op.DIRECT_MAX_WORK = direct_max_work\n"
        "    for squared in (False, True):\n"
        "        got = pairwise_distances(X, squared=squared, backend='numba')\n"
        "        want = pairwise_distances(X, squared=squared, backend='numpy')\n"
        "        assert np.allclose(got, want, rtol=1e-12, atol=0), (direct_max_work, got, want)\n"
        "    assert np.array_equal(knn(X, X, 2, backend='numba')[1], knn(X, X, 2, backend='numpy')[1])\n"
        # The shifted rows' norms and the column sums stay exact too: the same bits as numpy's.
        "A, B = rng.random((70, 30)), rng.random((30, 30))\n"
        "assert np.array_equal(pairwise_distances(A, B, backend='numba'), pairwise_distances(A, B, backend='numpy'))\n"
    )
    env = dict(os.environ, FASTDL_FASTMATH="1", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
