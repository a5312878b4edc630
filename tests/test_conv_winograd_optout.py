"""FASTDL_WINOGRAD=0: 3x3 convolutions and strided transposed convolutions keep off Winograd's
transforms (the direct sums' rounding, as PyTorch's CPU convolutions), and give the same answers."""

import numpy as np
import pytest

import naive
from conftest import RTOL
from fastdl.ops import _subpixel, _winograd
from fastdl.ops import conv as conv_ops
from fastdl.ops import conv_transpose as transpose_ops
from fastdl.ops.conv import conv2d, conv2d_grad
from fastdl.ops.conv_transpose import conv2d_transpose


def _plan_takes_winograd(x_shape, kernel_shape):
    geometry = conv_ops._geometry(x_shape, kernel_shape, 1, "same")
    return conv_ops._plan(np.empty(x_shape), np.empty(kernel_shape), geometry, np.float32)["winograd"]


@pytest.mark.parametrize("value, winograd", [("0", False), ("off", False), ("1", True), ("", True)])
def test_the_flag_decides_the_path(monkeypatch, value, winograd):
    monkeypatch.setenv("FASTDL_WINOGRAD", value)
    assert _plan_takes_winograd((1, 14, 14, 64), (3, 3, 64, 128)) == winograd
    args = transpose_ops.transpose_geometry((2, 5, 4, 16), (3, 3, 16, 16), 2, "same")[1]
    assert _subpixel.fits((2, 5, 4, 16), (3, 3, 16, 16), args, (10, 8)) == winograd


def test_a_flag_that_is_not_yes_or_no_is_refused(monkeypatch):
    monkeypatch.setenv("FASTDL_WINOGRAD", "sometimes")
    with pytest.raises(ValueError, match="FASTDL_WINOGRAD"):
        _winograd.fits((3, 3, 64, 64), (1, 1), (14, 14))


@pytest.mark.parametrize("channels", [16, 64], ids=["F2x2-size", "F4x4-size"])
def test_without_winograd_convolutions_match_the_direct_sums(backend, dtype, monkeypatch, channels):
    monkeypatch.setenv("FASTDL_WINOGRAD", "0")
    rng = np.random.default_rng(channels)
    x = rng.normal(size=(2, 9, 9, channels)).astype(dtype)
    kernel = rng.normal(size=(3, 3, channels, channels)).astype(dtype)
    dout = rng.normal(size=(2, 9, 9, channels)).astype(dtype)
    tol = RTOL[dtype] * np.sqrt(9 * channels)
    np.testing.assert_allclose(conv2d(x, kernel, padding="same", backend=backend),
                               naive.conv2d(x, kernel, None, 1, "same"), rtol=tol, atol=tol)
    dx, dkernel, _ = conv2d_grad(x, kernel, dout, padding="same", backend=backend)
    expected_dx, expected_dkernel, _ = naive.conv2d_grad(x, kernel, dout, 1, "same")
    np.testing.assert_allclose(dx, expected_dx, rtol=tol, atol=tol)
    np.testing.assert_allclose(dkernel, expected_dkernel, rtol=tol, atol=tol * np.sqrt(2 * 81))


def test_without_winograd_a_strided_transposed_convolution_matches(backend, dtype, monkeypatch):
    monkeypatch.setenv("FASTDL_WINOGRAD", "0")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 4, 16)).astype(dtype)
    kernel = rng.normal(size=(3, 3, 16, 16)).astype(dtype)
    tol = RTOL[dtype] * np.sqrt(9 * 16)
    np.testing.assert_allclose(conv2d_transpose(x, kernel, strides=2, padding="same", backend=backend),
                               naive.conv2d_transpose(x, kernel, None, 2, "same"), rtol=tol, atol=tol)
