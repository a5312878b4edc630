"""The cuda backend's matrix products and array helpers (kernels/gpu/_gemm.py, _arrays.py) against NumPy.

Both GEMM kernels run here: the tiled one that a device without CuPy uses, and the plain one that
the simulator uses for the layers' products. Shapes are not multiples of the tile, and a is
read through a transpose, as the backward passes do.
"""

import math

import numba
import numpy as np
import pytest

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("kind", ["_tiled", "_plain"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_kernels(cuda_backend, kind, dtype):
    from numba import cuda

    from fastdl.kernels.gpu import _gemm

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 5)).astype(dtype), rng.standard_normal((7, 6)).astype(dtype)
    out = cuda.device_array((5, 6), dtype)
    kernel = getattr(_gemm, kind)(numba.from_dtype(np.dtype(dtype)))
    if kind == "_tiled":
        grid, block = (math.ceil(6 / _gemm.TILE), math.ceil(5 / _gemm.TILE)), (_gemm.TILE, _gemm.TILE)
    else:
        grid, block = (1, 1), (8, 8)
    kernel[grid, block](cuda.to_device(a).T, cuda.to_device(b), out)
    np.testing.assert_allclose(out.copy_to_host(), a.T @ b, rtol=1e-5 if dtype == np.float32 else 1e-12)


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
