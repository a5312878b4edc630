"""Convolutions with few filters by kn2row (fastdl/ops/_kn2row.py): its kernels shift_sum and
shift_spread against the naive loops, and the convolution against the naive one, finite
differences and the other paths, on every backend and dtype."""

import importlib

import numpy as np
import pytest

import fastdl
import naive
from conftest import RTOL
from fastdl.backend import PACKAGES
from fastdl.ops import _kn2row
from fastdl.ops import conv as conv_ops
from fastdl.ops.conv import conv2d, conv2d_grad

# (n_images, height, width, in_channels, kh, kw, filters, padding): stride 1, fewer filters than
# input channels and than _kn2row.MAX_FILTERS.
KN2ROW_CONFIGS = [
    (2, 6, 7, 4, 3, 3, 3, "same"),
    (1, 7, 6, 3, 3, 3, 1, "valid"),
    (2, 5, 5, 20, 3, 3, 15, "same"),  # the most filters kn2row takes
    (1, 6, 8, 5, 2, 4, 2, "same"),  # even kernel: one more pixel of padding after than before
    (2, 4, 5, 3, 5, 3, 2, ((1, 3), (0, 2))),  # explicit asymmetric padding
    (1, 4, 4, 2, 3, 3, 1, 3),  # padding past the kernel's reach: outputs no input touches
    (1, 3, 9, 6, 3, 1, 4, ((0, 0), (4, 0))),  # a column kernel, padding on one side only
]

# (n_images, height, width, filters, kh, kw, pad_top, pad_left, out_h, out_w) for the kernels alone.
SHIFT_CONFIGS = [
    (2, 5, 6, 3, 3, 3, 1, 1, 5, 6),
    (1, 6, 4, 1, 2, 3, 0, 2, 7, 6),
    (2, 3, 3, 2, 3, 3, 3, 0, 5, 1),  # top padding past the kernel's reach
]


def _kernels(backend):
    return importlib.import_module(f"{PACKAGES[backend]}.conv")


def _data(rng, config, dtype):
    n, height, width, in_channels, kh, kw, filters, padding = config
    x = rng.normal(size=(n, height, width, in_channels)).astype(dtype)
    kernel = rng.normal(size=(kh, kw, in_channels, filters)).astype(dtype)
    bias = rng.normal(size=filters).astype(dtype)
    return x, kernel, bias, padding


def _close(actual, expected, dtype, terms):
    tol = RTOL[dtype] * max(1.0, np.sqrt(terms))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("config", SHIFT_CONFIGS, ids=str)
def test_shift_kernels_match_naive(backend, dtype, rng, config, n_threads):
    n, height, width, filters, kh, kw, pad_top, pad_left, out_h, out_w = config
    z = rng.normal(size=(n, height, width, kh * kw * filters)).astype(dtype)
    out = np.full((n, out_h, out_w, filters), np.nan, dtype)
    _kernels(backend).shift_sum(z, kh, kw, pad_top, pad_left, out, n_threads)
    _close(out, naive.shift_sum(z, kh, kw, pad_top, pad_left, out_h, out_w), dtype, kh * kw)
    dout = rng.normal(size=out.shape).astype(dtype)
    dz = np.full(z.shape, np.nan, dtype)
    _kernels(backend).shift_spread(dout, kh, kw, pad_top, pad_left, dz, n_threads)
    np.testing.assert_array_equal(dz, naive.shift_spread(dout, kh, kw, pad_top, pad_left, height, width))
    # Adjoints: <shift_sum(z), dout> = <z, shift_spread(dout)>.
    np.testing.assert_allclose(np.vdot(out, dout), np.vdot(z, dz), rtol=RTOL[dtype] * 10)


def test_shift_kernels_without_images(backend):
    z, out = np.empty((0, 3, 3, 9)), np.empty((0, 3, 3, 1))
    _kernels(backend).shift_sum(z, 3, 3, 1, 1, out, 2)
    _kernels(backend).shift_spread(out, 3, 3, 1, 1, z, 2)


def test_kn2row_where_filters_are_few():
    def kn2row(x_shape, kernel_shape, strides=1):
        geometry = conv_ops._geometry(x_shape, kernel_shape, strides, "same")
        return conv_ops._plan(np.empty(x_shape), np.empty(kernel_shape), geometry, np.float32)["kn2row"]

    assert kn2row((1, 64, 64, 128), (3, 3, 128, 3))  # a decoder's last layer: 128 channels to RGB
    assert kn2row((1, 28, 28, 32), (5, 5, 32, 1))
    assert kn2row((1, 9, 9, 20), (3, 3, 20, 15))
    assert not kn2row((1, 9, 9, 20), (3, 3, 20, 16))  # enough filters for im2col's GEMM
    assert not kn2row((1, 9, 9, 4), (3, 3, 4, 4))  # as many filters as channels
    assert not kn2row((1, 9, 9, 20), (3, 3, 20, 3), strides=2)  # Z for every pixel, outputs for a quarter
    assert not kn2row((1, 9, 9, 20), (1, 1, 20, 3))  # one tap: x itself is the patch matrix


@pytest.mark.parametrize("config", KN2ROW_CONFIGS, ids=str)
def test_kn2row_matches_naive(backend, dtype, rng, config):
    x, kernel, bias, padding = _data(rng, config, dtype)
    geometry = conv_ops._geometry(x.shape, kernel.shape, 1, padding)
    assert conv_ops._plan(x, kernel, geometry, dtype)["kn2row"]
    expected = naive.conv2d(x, kernel, bias, 1, padding)
    out = conv2d(x, kernel, bias, padding=padding, backend=backend)
    assert out.dtype == dtype and out.shape == expected.shape
    _close(out, expected, dtype, kernel[..., 0].size)
    dout = rng.normal(size=expected.shape).astype(dtype)
    grads = conv2d_grad(x, kernel, dout, padding=padding, backend=backend)
    for got, want, terms in zip(grads, naive.conv2d_grad(x, kernel, dout, 1, padding),
                                (kernel.size, dout[..., 0].size, dout[..., 0].size)):
        assert got.dtype == dtype and got.shape == want.shape
        _close(got, want, dtype, terms)


@pytest.mark.parametrize("config", KN2ROW_CONFIGS[:2] + KN2ROW_CONFIGS[4:6], ids=str)
def test_kn2row_gradients_match_finite_differences(backend, rng, config):
    """Directional derivatives of a weighted sum of the outputs along random directions."""
    x, kernel, bias, padding = _data(rng, config, np.float64)
    weights = rng.normal(size=naive.conv2d(x, kernel, None, 1, padding).shape)

    def loss(x_, kernel_, bias_):
        return float((conv2d(x_, kernel_, bias_, padding=padding, backend=backend) * weights).sum())

    grads = conv2d_grad(x, kernel, weights, padding=padding, backend=backend)
    step = 1e-6
    for which, grad in enumerate(grads):
        direction = rng.normal(size=grad.shape)
        up, down = [x, kernel, bias], [x, kernel, bias]
        up[which] = up[which] + step * direction
        down[which] = down[which] - step * direction
        numeric = (loss(*up) - loss(*down)) / (2 * step)
        np.testing.assert_allclose(np.sum(grad * direction), numeric, rtol=1e-7)


def test_kn2row_without_the_input_gradient(backend, dtype, rng):
    x, kernel, _, padding = _data(rng, KN2ROW_CONFIGS[0], dtype)
    geometry = conv_ops._geometry(x.shape, kernel.shape, 1, padding)
    dout = rng.normal(size=(*x.shape[:3], kernel.shape[3])).astype(dtype)
    want = conv2d_grad(x, kernel, dout, padding=padding, backend=backend)
    dkernel, dbias = np.empty_like(kernel), np.empty(kernel.shape[3], dtype)
    conv_ops.conv2d_grad_into(x, kernel, dout, geometry, None, dkernel, dbias, backend)
    np.testing.assert_array_equal(dkernel, want[1])
    np.testing.assert_array_equal(dbias, want[2])


def test_kn2row_in_batches_on_two_threads(backend, dtype, rng, monkeypatch):
    """One image a batch, several batches a thread: the same answers, and the same bits for
    the outputs and the input gradient as on one thread."""
    x, kernel, bias, padding = _data(rng, (7, 9, 8, 6, 3, 3, 2, "same"), dtype)
    dout = rng.normal(size=(7, 9, 8, 2)).astype(dtype)
    monkeypatch.setattr(_kn2row, "BATCH_BYTES", 1)
    monkeypatch.setattr(fastdl._parallel, "MIN_WORK_PER_THREAD", 1)
    results = {}
    for n_threads in (1, 2):
        fastdl.set_num_threads(n_threads)
        results[n_threads] = (conv2d(x, kernel, bias, padding=padding, backend=backend),
                              *conv2d_grad(x, kernel, dout, padding=padding, backend=backend))
    for got, want, terms in zip(results[2], (naive.conv2d(x, kernel, bias, 1, padding),
                                             *naive.conv2d_grad(x, kernel, dout, 1, padding)), (54, 18, 504, 504)):
        _close(got, want, dtype, terms)
    np.testing.assert_array_equal(results[1][0], results[2][0])
    np.testing.assert_array_equal(results[1][1], results[2][1])


def test_kn2row_agrees_with_im2col(rng, monkeypatch):
    """The same layer by kn2row and by im2col (kn2row turned off), a decoder's last layer's shape."""
    x, kernel, bias, padding = _data(rng, (2, 16, 16, 32, 3, 3, 3, "same"), np.float64)
    dout = rng.normal(size=(2, 16, 16, 3))
    kn2row = (conv2d(x, kernel, bias, padding=padding), *conv2d_grad(x, kernel, dout, padding=padding))
    monkeypatch.setattr(_kn2row, "MAX_FILTERS", 0)
    im2col = (conv2d(x, kernel, bias, padding=padding), *conv2d_grad(x, kernel, dout, padding=padding))
    for got, want in zip(kn2row, im2col):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_transposed_convolution_with_few_filters(backend, dtype, rng, padding):
    """A stride-1 Conv2DTranspose to few filters (Keras' MNIST VAE ends with one) runs as the
    convolution with the flipped kernel, and so by kn2row."""
    from fastdl.ops.conv_transpose import conv2d_transpose, conv2d_transpose_grad

    x = rng.normal(size=(2, 6, 5, 8)).astype(dtype)
    kernel = rng.normal(size=(3, 3, 2, 8)).astype(dtype)  # (kh, kw, filters, in_channels)
    bias = rng.normal(size=2).astype(dtype)
    assert _kn2row.fits((3, 3, 8, 2), (1, 1))  # the flipped kernel's convolution
    expected = naive.conv2d_transpose(x, kernel, bias, 1, padding)
    _close(conv2d_transpose(x, kernel, bias, padding=padding, backend=backend), expected, dtype, 72)
    dout = rng.normal(size=expected.shape).astype(dtype)
    x_ = x.astype(np.float64)

    def loss(x_, kernel_):
        return float((naive.conv2d_transpose(x_, kernel_, None, 1, padding) * dout).sum())

    dx, dkernel, dbias = conv2d_transpose_grad(x, kernel, dout, padding=padding, backend=backend)
    np.testing.assert_allclose(dbias, dout.sum(axis=(0, 1, 2)), rtol=RTOL[dtype] * 10, atol=RTOL[dtype] * 10)
    # Directional derivatives: the naive forward pass is linear in each argument.
    for which, grad in enumerate((dx, dkernel)):
        direction = rng.normal(size=grad.shape)
        args = [x_, kernel.astype(np.float64)]
        base = loss(*args)
        args[which] = args[which] + direction
        _close(np.sum(grad * direction), loss(*args) - base, dtype, grad.size)
