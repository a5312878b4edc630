"""NaN and inf through ReLU, max pooling and the fused convolution + ReLU + max pooling: every
backend (numpy, numba, cython, cuda) gives what NumPy and PyTorch give.

- ReLU keeps NaN (np.maximum); its gradient is 0 wherever the output is not positive, even for an
  inf or NaN incoming gradient (a select, as PyTorch's threshold_backward, not dout * 0).
- A max-pooling window holding a NaN has the maximum NaN, and its gradient goes to the window's
  first NaN in row-major order (np.argmax's rule); otherwise to its first maximum, as for finite
  values.
- The fused convolution, ReLU and max pooling (what Conv2D followed by MaxPool2D runs) gives the
  separate layers' NaN, and no gradient where the ReLU's output is NaN (as ReLU's own backward).

The cuda cases run on numba's CUDA simulator where no device is present: tiny shapes.

The public ops refuse non-finite input (NonFiniteError), so these tests call the `*_into` ops the
layers call, and the layers themselves.
"""

import numpy as np
import pytest

from conftest import CPU_BACKENDS, skip_unless_available
from fastdl import nn
from fastdl.ops.conv import _geometry
from fastdl.ops.conv_pool import conv2d_pool_into
from fastdl.ops.dense import ACTIVATIONS, activation_grad_into, activation_into, dense_into
from fastdl.ops.pool import max_pool2d_grad_into, max_pool2d_into, pool_geometry

NAN, INF = np.nan, np.inf


@pytest.fixture(params=CPU_BACKENDS + ["cuda"])
def any_backend(request):
    """Each backend by name, the cuda one included, skipped where it is unavailable."""
    skip_unless_available(request.param)
    return request.param


def _to_device(array, backend):
    if backend != "cuda":
        return array
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(array))


def _host(array):
    return array.copy_to_host() if hasattr(array, "copy_to_host") else np.asarray(array)


def _same_nonfinite(actual, expected):
    """Equal where finite, and NaN, +inf and -inf in the same cells."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(actual), np.isposinf(expected))
    np.testing.assert_array_equal(np.isneginf(actual), np.isneginf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=1e-5, atol=1e-6)


def _layer_pass(layer, shape, x, dout, backend, dtype, weights=None):
    """(out, dx) of `layer` (a fresh Keras-style layer) after an Input of `shape` on `backend`."""
    model = nn.Sequential([nn.Input(shape), layer], seed=0, dtype=dtype, backend=backend)
    model.build()
    if weights is not None:
        model.set_weights(weights)
    layer.needs_input_grad = True  # a model's first layer computes no input gradient otherwise
    out = _host(layer(_to_device(np.ascontiguousarray(x, dtype), backend), training=True))
    dx = _host(layer.backward(_to_device(np.ascontiguousarray(dout, dtype), backend)))
    return out, dx


# ----------------------------------------------------------------------------------------------
# ReLU

SPECIAL = np.array([NAN, INF, -INF, -1.0, 2.0])
RELU = np.array([NAN, INF, 0.0, 0.0, 2.0])


@pytest.mark.parametrize("bias", [None, 0.0], ids=["no-bias", "bias"])
def test_relu_keeps_nan(any_backend, dtype, bias):
    # A (5, 1) @ (1, 1) product by 1: the values themselves go into the bias and activation kernel.
    x = SPECIAL[:, None].astype(dtype)
    args = [x, np.ones((1, 1), dtype), None if bias is None else np.full(1, bias, dtype), np.empty((5, 1), dtype)]
    args = [None if a is None else _to_device(a, any_backend) for a in args]
    out = dense_into(*args[:3], ACTIVATIONS["relu"], args[3], backend=any_backend)
    _same_nonfinite(_host(out)[:, 0], RELU)
    # The activation on its own, in place.
    z = _to_device(SPECIAL[None].astype(dtype), any_backend)
    _same_nonfinite(_host(activation_into(z, ACTIVATIONS["relu"], backend=any_backend))[0], RELU)


@pytest.mark.parametrize("make", [nn.ReLU, lambda: nn.Activation("relu")], ids=["ReLU", "Activation"])
def test_relu_layer_keeps_nan(any_backend, dtype, make):
    dout = np.array([[1.0, 2.0, INF, NAN, 3.0]])
    out, dx = _layer_pass(make(), (5,), SPECIAL[None], dout, any_backend, dtype)
    _same_nonfinite(out[0], RELU)
    # No gradient where the output is 0 or NaN, whatever comes in (inf, NaN): a select.
    _same_nonfinite(dx[0], [0.0, 2.0, 0.0, 0.0, 3.0])


def test_relu_grad_selects_rather_than_multiplies(any_backend, dtype):
    out = np.array([[0.0, 1.0, 0.0, 0.0, 2.0]], dtype)
    dout = np.array([[INF, INF, -INF, NAN, NAN]], dtype)
    out, dout, dpre = (_to_device(a, any_backend) for a in (out, dout, np.empty_like(out)))
    dpre = _host(activation_grad_into(out, dout, ACTIVATIONS["relu"], dpre, backend=any_backend))
    _same_nonfinite(dpre[0], [0.0, INF, 0.0, 0.0, NAN])


# ----------------------------------------------------------------------------------------------
# Max pooling


def _naive_max_pool(x, dout, pool_size, strides, padding):
    """(out, dx) by loops: each window's cells (clipped to the image) in row-major order, the first
    NaN winning where there is one, else the first maximum."""
    pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, out_h, out_w = pool_geometry(
        x.shape, pool_size, strides, padding)
    n_images, h, w, channels = x.shape
    out = np.empty((n_images, out_h, out_w, channels), x.dtype)
    dx = np.zeros_like(x)
    for n in range(n_images):
        for i in range(out_h):
            for j in range(out_w):
                rows = range(max(i * stride_h - pad_top, 0), min(i * stride_h - pad_top + pool_h, h))
                cols = range(max(j * stride_w - pad_left, 0), min(j * stride_w - pad_left + pool_w, w))
                for c in range(channels):
                    cells = [(a, b) for a in rows for b in cols]
                    nans = [cell for cell in cells if np.isnan(x[n, cell[0], cell[1], c])]
                    winner = nans[0] if nans else max(cells, key=lambda cell: (x[n, cell[0], cell[1], c],
                                                                                -cells.index(cell)))
                    out[n, i, j, c] = x[n, winner[0], winner[1], c]
                    if dout is not None:
                        dx[n, winner[0], winner[1], c] += dout[n, i, j, c]
    return out, dx


def _max_pool(x, dout, pool_size, strides, padding, backend):
    """(out, dx) of max_pool2d_into and max_pool2d_grad_into on backend."""
    window = pool_geometry(x.shape, pool_size, strides, padding)[:6]
    x, dout, out, dx = (_to_device(a, backend) for a in (x, dout, np.empty(dout.shape, x.dtype), np.empty_like(x)))
    return (_host(max_pool2d_into(x, out, window, backend=backend)),
            _host(max_pool2d_grad_into(x, dout, dx, window, backend=backend)))


def _pool_image(dtype, nan_first):
    """A 2x6x5x2 batch: NaN in the middle of some windows (after larger values, and next to inf),
    or first in a window, -inf and +inf elsewhere, channel 1 finite with ties."""
    x = np.arange(2 * 6 * 5 * 2, dtype=np.float64).reshape(2, 6, 5, 2) % 7 - 3
    x[0, 1, 1, 0] = NAN  # the last cell of the first 2x2 window, after larger values
    x[0, 2, 3, 0] = NAN
    x[0, 3, 3, 0] = INF
    x[0, 2, 4, 0] = NAN  # two NaNs in one 3x3 window: the first takes the gradient
    x[1, 4, 0, 0] = -INF
    x[1, 5, 0, 0] = -INF
    x[1, 0, 2, 0] = INF
    if nan_first:
        x[0, 0, 0, 0] = NAN
        x[1, 2, 2, 0] = NAN
        x[1, 4, 4, 0] = NAN  # first in a 'same' window hanging past the right edge
    return x.astype(dtype)


@pytest.mark.parametrize("pool_size, strides, padding", [(2, 2, "valid"), (2, 1, "valid"), (3, 2, "same"),
                                                         (3, 1, "same"), (2, 2, "same")])
@pytest.mark.parametrize("nan_first", [False, True], ids=["nan-inside", "nan-first"])
def test_max_pool_nan_wins(any_backend, dtype, pool_size, strides, padding, nan_first):
    x = _pool_image(dtype, nan_first)
    expected, _ = _naive_max_pool(x, None, pool_size, strides, padding)
    dout = np.random.default_rng(0).standard_normal(expected.shape).astype(dtype)
    _, expected_dx = _naive_max_pool(x, dout, pool_size, strides, padding)
    assert np.isnan(expected).any()

    out, dx = _max_pool(x, dout, pool_size, strides, padding, any_backend)
    _same_nonfinite(out, expected)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-6, atol=1e-6)


def test_max_pool_of_finite_values_unchanged(any_backend, dtype):
    """Ties, -inf and +inf without NaN: the first maximum, as before."""
    x = np.array([[1.0, 1.0, -INF, -INF], [1.0, 0.0, -INF, -INF], [INF, INF, -0.0, 0.0], [2.0, INF, 0.0, -0.0]])
    x = x.astype(dtype)[None, :, :, None]
    dout = np.array([1.0, 2.0, 3.0, 4.0], dtype).reshape(1, 2, 2, 1)
    expected, expected_dx = _naive_max_pool(x, dout, 2, 2, "valid")
    out, dx = _max_pool(x, dout, 2, 2, "valid", any_backend)
    _same_nonfinite(out, expected)
    np.testing.assert_array_equal(dx, expected_dx)


def test_global_max_pooling_nan_and_inf(any_backend, dtype):
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 3))
    x[0, 1, 2, 0] = INF  # NaN, not inf, is the maximum
    x[0, 2, 1, 0] = NAN
    x[0, 0, 3, 0] = NAN  # the first NaN in row-major order: it takes the gradient
    x[1, 0, 0, 1] = INF  # an inf alone: the maximum
    x[1, 2, 3, 2] = -INF
    dout = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    out, dx = _layer_pass(nn.GlobalMaxPooling2D(), (3, 4, 3), x, dout, any_backend, dtype)
    expected, expected_dx = _naive_max_pool(x.astype(dtype), dout.astype(dtype)[:, None, None], (3, 4), None,
                                            "valid")
    _same_nonfinite(out, expected[:, 0, 0])
    assert np.isnan(out[0, 0]) and np.isposinf(out[1, 1])
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-6)
    assert dx[0, 0, 3, 0] == 1.0  # the first NaN in row-major order


# ----------------------------------------------------------------------------------------------
# The fused convolution + ReLU + max pooling


def _naive_conv(x, kernel, bias):
    """The 'valid' stride-1 convolution by loops over the kernel's taps."""
    kh, kw = kernel.shape[:2]
    out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.broadcast_to(bias, (x.shape[0], out_h, out_w, kernel.shape[3])).copy()
    for i in range(kh):
        for j in range(kw):
            out += x[:, i : i + out_h, j : j + out_w] @ kernel[i, j]
    return out


def _fused_forward(x, kernel, bias, relu, pool, backend):
    geometry = _geometry(x.shape, kernel.shape, 1, "valid")
    conv_h, conv_w = geometry[2]
    shape = (x.shape[0], conv_h // pool[0], conv_w // pool[1], kernel.shape[3])
    out, code = np.empty(shape, x.dtype), np.empty(shape, np.int32)
    args = [_to_device(a, backend) for a in (x, kernel, bias, out, code)]
    conv2d_pool_into(*args[:3], geometry, int(relu), pool, *args[3:], backend=backend)
    return _host(args[3]), _host(args[4])


@pytest.mark.parametrize("relu", [True, False], ids=["relu", "linear"])
def test_fused_conv_pool_nan_pixel(any_backend, dtype, relu):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 7, 7, 2)).astype(dtype)
    x[0, 4, 4, 1] = NAN  # reaches outputs (3..4, 3..4): last, second, third and first in 4 windows
    x[1, 0, 0, 0] = NAN  # reaches only the first output, first in its window
    kernel = rng.standard_normal((2, 2, 2, 3)).astype(dtype)
    bias = rng.standard_normal(3).astype(dtype)
    out, code = _fused_forward(x, kernel, bias, relu, (2, 2), any_backend)
    reference, reference_code = _fused_forward(x, kernel, bias, relu, (2, 2), "numpy")
    assert np.isnan(reference).sum() == (4 + 1) * 3  # the windows the NaN reaches, every filter
    _same_nonfinite(out, reference)
    np.testing.assert_array_equal(code, reference_code)
    # The separate layers give the same NaN: the convolution, the ReLU (np.maximum keeps NaN) and
    # max_pool2d; with the ReLU, no gradient where its output is NaN.
    z = _naive_conv(x, kernel, bias)
    separate, _ = _naive_max_pool(np.maximum(z, 0) if relu else z, None, 2, None, "valid")
    _same_nonfinite(reference, separate)
    if relu:
        assert (reference_code[np.isnan(reference)] == -1).all()


def test_conv2d_maxpool_model_nan_pixel(any_backend, dtype):
    """Conv2D + MaxPool2D as a model runs them (forward_pooled, backward_pooled) equal the layers one
    after the other, on each backend: the NaN cells and the input gradient."""
    x = np.random.default_rng(4).standard_normal((2, 6, 6, 1))
    x[1, 2, 3, 0] = NAN
    results = {}
    for backend in ("numpy", any_backend):
        model = nn.Sequential([nn.Input((6, 6, 1)), nn.Conv2D(3, 3, padding="same", activation="relu"),
                               nn.MaxPool2D(2)], seed=0, dtype=dtype, backend=backend)
        model.build()
        conv, pool = model.layers
        assert conv.fuses_with(pool)
        conv.needs_input_grad = True
        xin = _to_device(x.astype(dtype), backend)
        fused = _host(conv.forward_pooled(xin, pool, training=True))
        dout = np.ones(fused.shape, dtype)
        dx_fused = _host(conv.backward_pooled(_to_device(dout, backend), pool))
        separate = _host(pool(conv(xin, training=True), training=True))
        dx_separate = _host(conv.backward(pool.backward(_to_device(dout, backend))))
        _same_nonfinite(fused, separate)
        _same_nonfinite(dx_fused, dx_separate)
        results[backend] = fused, dx_fused
    assert np.isnan(results["numpy"][0]).any()
    _same_nonfinite(results[any_backend][0], results["numpy"][0])
    _same_nonfinite(results[any_backend][1], results["numpy"][1])


# ----------------------------------------------------------------------------------------------
# Winograd's tile gather (the large-tile and transposed convolutions' input transform)


def test_tile_gather_keeps_nan_in_its_tiles(any_backend, dtype):
    """Window positions outside the image read zeros: a NaN at row 0 reaches only the tiles whose
    windows hold it, not the tiles hanging past the bottom edge (whose outside rows must not read
    row 0 times a zero)."""
    from fastdl import backend as fastdl_backend

    kernels, _ = fastdl_backend.kernels("winograd", any_backend)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 6, 6, 2)).astype(dtype)
    x[0, 0, 3, 1] = NAN
    left = rng.uniform(0.5, 1.5, (4, 4)).astype(dtype)  # no zero: a NaN spreads over its whole tile
    grid = np.array([-1, 2, 1, 3], np.int64)  # windows of rows (and columns) -1..2, 1..4, 3..6
    out = np.empty((16, 9, 2), dtype)
    args = [_to_device(a, any_backend) for a in (x, left, left, grid, grid, out)]
    kernels.tile_gather(*args, 1)
    nan_tiles = np.isnan(_host(args[5])).any(axis=0).reshape(3, 3, 2)
    expected = np.zeros((3, 3, 2), bool)
    expected[0, 1:, 1] = True  # tile row 0 (rows -1..2), tile columns 1 and 2 (columns 1..4, 3..6)
    np.testing.assert_array_equal(nan_tiles, expected)
