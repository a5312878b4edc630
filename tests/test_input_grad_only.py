"""The backward ops with the weights' gradients left out (dkernel and dbias None: a frozen layer, as
the GAN's discriminator inside the GAN), on every path of each op, every backend and dtype: the
same input gradient, to the bit, as with them."""

import numpy as np
import pytest

from fastdl.ops import _winograd
from fastdl.ops import conv as conv_ops
from fastdl.ops.conv import conv2d_grad_into
from fastdl.ops.conv_pool import conv2d_pool_grad_into, conv2d_pool_into
from fastdl.ops.conv_transpose import conv2d_transpose_grad_into, transpose_geometry
from fastdl.ops.dense import dense_grad_into

# (x shape, kernel shape (kh, kw, in, out), strides, padding, the path conv._plan takes)
CONV_CASES = [
    ((2, 9, 8, 3), (3, 3, 3, 5), 2, "same", "im2col"),
    ((2, 6, 6, 4), (1, 1, 4, 6), 1, "valid", "direct"),
    ((2, 8, 7, 16), (3, 3, 16, 16), 1, "same", "winograd"),
    ((2, 8, 8, 64), (3, 3, 64, 64), 1, "same", "large_tiles"),
    ((2, 7, 6, 8), (3, 3, 8, 3), 1, "same", "kn2row"),
]

# (x shape, kernel shape (kh, kw, filters, in), strides, padding, whether it takes the sub-pixel path)
TRANSPOSE_CASES = [
    ((2, 5, 4, 3), (3, 3, 4, 3), 1, "same", False),  # stride 1: a convolution with the flipped kernel
    ((2, 4, 5, 16), (3, 3, 16, 16), 2, "same", True),
    ((2, 4, 4, 3), (3, 3, 2, 3), 3, "valid", False),
]


@pytest.fixture
def large_tiles_anywhere(monkeypatch):
    """F(4x4, 3x3) for small layers too."""
    monkeypatch.setattr(_winograd, "LARGE_TILE_SHARE", np.inf)
    monkeypatch.setattr(_winograd, "LARGE_TILE_MIN_SIZE", 0)


@pytest.mark.parametrize("case", CONV_CASES, ids=[case[-1] for case in CONV_CASES])
def test_conv2d(backend, dtype, rng, case, large_tiles_anywhere):
    x_shape, kernel_shape, strides, padding, path = case
    x = rng.normal(size=x_shape).astype(dtype)
    kernel = rng.normal(size=kernel_shape).astype(dtype)
    geometry = conv_ops._geometry(x.shape, kernel.shape, strides, padding)
    plan = conv_ops._plan(x, kernel, geometry, dtype)
    assert plan[path] if path != "im2col" else not any(plan[k] for k in ("direct", "winograd", "kn2row"))
    dout = rng.normal(size=(x_shape[0], *geometry[2], kernel_shape[3])).astype(dtype)
    want, got = np.empty_like(x), np.full_like(x, np.nan)
    conv2d_grad_into(x, kernel, dout, geometry, want, np.empty_like(kernel), np.empty(kernel_shape[3], dtype),
                     backend)
    conv2d_grad_into(x, kernel, dout, geometry, got, None, None, backend)
    np.testing.assert_array_equal(got, want)


def test_conv2d_pooled(backend, dtype, rng):
    x = rng.normal(size=(2, 8, 8, 3)).astype(dtype)
    kernel = rng.normal(size=(3, 3, 3, 16)).astype(dtype)
    geometry = conv_ops._geometry(x.shape, kernel.shape, 1, "same")
    pooled, code = np.empty((2, 4, 4, 16), dtype), np.empty((2, 4, 4, 16), np.int32)
    conv2d_pool_into(x, kernel, None, geometry, 1, (2, 2), pooled, code, backend)
    dpooled = rng.normal(size=pooled.shape).astype(dtype)
    want, got = np.empty_like(x), np.full_like(x, np.nan)
    conv2d_pool_grad_into(x, kernel, dpooled, code, geometry, (2, 2), want, np.empty_like(kernel), None, backend)
    conv2d_pool_grad_into(x, kernel, dpooled, code, geometry, (2, 2), got, None, None, backend)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=["stride 1", "sub-pixel", "im2col"])
def test_conv2d_transpose(backend, dtype, rng, case):
    x_shape, kernel_shape, strides, padding, subpixel = case
    x = rng.normal(size=x_shape).astype(dtype)
    kernel = rng.normal(size=kernel_shape).astype(dtype)
    geometry = transpose_geometry(x.shape, kernel.shape, strides, padding)
    assert (strides > 1 and kernel_shape[2] >= 16) == subpixel
    dout = rng.normal(size=(x_shape[0], *geometry[0], kernel_shape[2])).astype(dtype)
    want, got = np.empty_like(x), np.full_like(x, np.nan)
    conv2d_transpose_grad_into(x, kernel, dout, geometry, want, np.empty_like(kernel),
                               np.empty(kernel_shape[2], dtype), backend)
    conv2d_transpose_grad_into(x, kernel, dout, geometry, got, None, None, backend)
    np.testing.assert_array_equal(got, want)


def test_dense(dtype, rng):
    x, kernel = rng.normal(size=(7, 5)).astype(dtype), rng.normal(size=(5, 3)).astype(dtype)
    dout = rng.normal(size=(7, 3)).astype(dtype)
    want, got = np.empty_like(x), np.full_like(x, np.nan)
    dense_grad_into(x, kernel, dout, want, np.empty_like(kernel), np.empty(3, dtype))
    dense_grad_into(x, kernel, dout, got, None, None)
    np.testing.assert_array_equal(got, want)
