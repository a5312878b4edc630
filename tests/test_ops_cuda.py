"""fastdl.ops' layer operations with backend="cuda" against the numpy reference backend.

NumPy arrays in, NumPy arrays out: the op copies them to the device, runs there and brings the
results back. Tiny shapes (numba's simulator runs every GPU thread as Python), every stride and
padding kind the layers use, and both dtypes.
"""

import numpy as np
import pytest

from conftest import RTOL
from fastdl import ops

pytestmark = pytest.mark.cuda


def _same(actual, expected, dtype):
    actual = actual if isinstance(actual, tuple) else (actual,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for a, e in zip(actual, expected):
        assert isinstance(a, np.ndarray) and a.dtype == e.dtype and a.shape == e.shape
        np.testing.assert_allclose(a, e, rtol=RTOL[dtype], atol=RTOL[dtype])


def test_dense_ops(cuda_backend, dtype):
    n = 3
    rng = np.random.default_rng(0)
    x, kernel, bias = rng.standard_normal((n, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)
    x, kernel, bias = x.astype(dtype), kernel.astype(dtype), bias.astype(dtype)
    dout = rng.standard_normal((n, 5)).astype(dtype)
    for activation in ("relu", "sigmoid", "tanh", "leaky_relu", None):
        out = ops.dense(x, kernel, bias, activation, backend="numpy")
        _same(ops.dense(x, kernel, bias, activation, backend="cuda"), out, dtype)
        _same(ops.activation_grad(out, dout, activation, backend="cuda"),
              ops.activation_grad(out, dout, activation, backend="numpy"), dtype)
    _same(ops.dense_grad(x, kernel, dout, backend="cuda"), ops.dense_grad(x, kernel, dout, backend="numpy"), dtype)


@pytest.mark.parametrize("kernel_size, strides, padding", [(3, 1, "same"), (2, 2, "valid"), (1, 1, "valid"),
                                                           (3, 2, "same")])
def test_convolution_ops(cuda_backend, dtype, kernel_size, strides, padding):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 4, 2)).astype(dtype)
    kernel = rng.standard_normal((kernel_size, kernel_size, 2, 3)).astype(dtype)
    bias = rng.standard_normal(3).astype(dtype)
    out = ops.conv2d(x, kernel, bias, strides, padding, backend="numpy")
    _same(ops.conv2d(x, kernel, bias, strides, padding, backend="cuda"), out, dtype)
    dout = rng.standard_normal(out.shape).astype(dtype)
    _same(ops.conv2d_grad(x, kernel, dout, strides, padding, backend="cuda"),
          ops.conv2d_grad(x, kernel, dout, strides, padding, backend="numpy"), dtype)

    # The transposed convolution maps x's 2 channels onto 3 filters: kernel (kh, kw, 3, 2).
    tkernel = np.ascontiguousarray(kernel.transpose(0, 1, 3, 2))
    out = ops.conv2d_transpose(x, tkernel, bias, strides, padding, backend="numpy")
    _same(ops.conv2d_transpose(x, tkernel, bias, strides, padding, backend="cuda"), out, dtype)
    dout = rng.standard_normal(out.shape).astype(dtype)
    _same(ops.conv2d_transpose_grad(x, tkernel, dout, strides, padding, backend="cuda"),
          ops.conv2d_transpose_grad(x, tkernel, dout, strides, padding, backend="numpy"), dtype)


@pytest.mark.parametrize("kernel_size, padding", [(3, "same"), (2, "valid"), (3, ((2, 0), (1, 3)))])
def test_few_filter_convolution_ops(cuda_backend, dtype, kernel_size, padding):
    """Fewer filters than input channels at stride 1: kn2row (a GEMM into per-tap products)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 4, 4)).astype(dtype)
    kernel = rng.standard_normal((kernel_size, kernel_size, 4, 2)).astype(dtype)
    bias = rng.standard_normal(2).astype(dtype)
    out = ops.conv2d(x, kernel, bias, 1, padding, backend="numpy")
    _same(ops.conv2d(x, kernel, bias, 1, padding, backend="cuda"), out, dtype)
    dout = rng.standard_normal(out.shape).astype(dtype)
    _same(ops.conv2d_grad(x, kernel, dout, 1, padding, backend="cuda"),
          ops.conv2d_grad(x, kernel, dout, 1, padding, backend="numpy"), dtype)


@pytest.mark.parametrize("pool_size, strides, padding", [(2, None, "valid"), (3, 1, "same"), (2, 2, "same")])
def test_pooling_ops(cuda_backend, dtype, pool_size, strides, padding):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 4, 3)).astype(dtype)
    x[0, :2, :2, 0] = 1.0  # a tie: the first maximum takes the gradient
    out = ops.max_pool2d(x, pool_size, strides, padding, backend="numpy")
    _same(ops.max_pool2d(x, pool_size, strides, padding, backend="cuda"), out, dtype)
    dout = rng.standard_normal(out.shape).astype(dtype)
    _same(ops.max_pool2d_grad(x, dout, pool_size, strides, padding, backend="cuda"),
          ops.max_pool2d_grad(x, dout, pool_size, strides, padding, backend="numpy"), dtype)
