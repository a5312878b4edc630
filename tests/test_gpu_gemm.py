"""The cuda backend's matrix products and array helpers (kernels/gpu/_gemm.py, _arrays.py) against NumPy.

Both GEMM kernels run here: the tiled one that a device without CuPy uses, and the plain one that
the simulator uses for the layers' products. Shapes are not multiples of the tile, and either
operand may be read transposed (a flag, as BLAS takes it), as the backward passes do.
"""

import math

import numba
import numpy as np
import pytest

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("kind", ["_tiled", "_plain"])
@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_kernels(cuda_backend, kind, transpose_a, transpose_b, dtype):
    """out = op(a) @ op(b) with the operands read in place through the transpose flags."""
    from numba import cuda

    from fastdl.kernels.gpu import _gemm

    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 5) if transpose_a else (5, 7)).astype(dtype)
    b = rng.standard_normal((6, 7) if transpose_b else (7, 6)).astype(dtype)
    out = cuda.device_array((5, 6), dtype)
    kernel = getattr(_gemm, kind)(numba.from_dtype(np.dtype(dtype)))
    if kind == "_tiled":
        grid, block = (math.ceil(6 / _gemm.TILE), math.ceil(5 / _gemm.TILE)), (_gemm.TILE, _gemm.TILE)
    else:
        grid, block = (1, 1), (8, 8)
    kernel[grid, block](cuda.to_device(a), cuda.to_device(b), out, transpose_a, transpose_b)
    expected = (a.T if transpose_a else a) @ (b.T if transpose_b else b)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out.copy_to_host(), expected, rtol=tol, atol=tol)

    result = cuda.device_array((5, 6), dtype)  # the entry point the ops call
    _gemm.gemm(cuda.to_device(a), cuda.to_device(b), result, transpose_a, transpose_b)
    np.testing.assert_allclose(result.copy_to_host(), expected, rtol=tol, atol=tol)


def test_array_helpers(cuda_backend):
    from numba import cuda

    from fastdl.kernels.gpu import _arrays

    rng = np.random.default_rng(1)
    source = rng.standard_normal((5, 3)).astype(np.float32)
    rows = np.array([4, 0, 4], np.int64)
    out = cuda.device_array((3, 3), np.float32)
    _arrays.take_rows(cuda.to_device(source), cuda.to_device(rows), out)
    np.testing.assert_array_equal(out.copy_to_host(), source[rows])

    a, b = rng.standard_normal(7), rng.standard_normal(7)
    result = cuda.to_device(b)
    _arrays.add(cuda.to_device(a), result, result)
    np.testing.assert_array_equal(result.copy_to_host(), a + b)
    _arrays.scale(cuda.to_device(a), 0.5, result)
    np.testing.assert_array_equal(result.copy_to_host(), a * 0.5)
    _arrays.add_scaled(cuda.to_device(a), 2.0, result)
    np.testing.assert_array_equal(result.copy_to_host(), a * 0.5 + a * 2.0)
