"""fastdl.ops.conv2d_transpose and conv2d_transpose_grad against the naive loops and finite differences."""

import functools

import numpy as np
import pytest

import fastdl
import naive
from conftest import RTOL
from fastdl.ops import conv2d_grad, conv2d_transpose, conv2d_transpose_grad
from fastdl.ops.conv_transpose import conv2d_transpose_into, transpose_geometry
from fastdl.ops.dense import ACTIVATIONS, LEAKY_ALPHA

# (n_images, height, width, in_channels, kh, kw, filters, strides, padding); kernel (kh, kw, filters, in).
CONFIGS = [
    (2, 4, 5, 2, 1, 1, 3, 1, "valid"),  # 1x1 at stride 1: one GEMM, no scatter
    (1, 5, 4, 3, 1, 1, 2, 2, "same"),  # kernel smaller than the stride: rows of zeros between
    (2, 3, 4, 2, 2, 2, 3, 2, "same"),
    (1, 4, 3, 2, 3, 3, 2, 1, "same"),  # stride 1: a convolution with the flipped kernel
    (2, 5, 5, 2, 3, 3, 3, 2, "same"),  # the odd overhang row cropped at the bottom
    (1, 4, 5, 3, 3, 3, 2, 2, "valid"),
    (1, 3, 3, 2, 4, 4, 2, 2, "same"),  # even kernel: one row cropped at the top, one at the bottom
    (1, 4, 3, 2, 4, 3, 3, 3, "valid"),
    (1, 3, 4, 1, 5, 5, 2, 3, "same"),
    (2, 3, 3, 2, 5, 2, 2, (2, 3), "valid"),
    (1, 2, 3, 2, 2, 5, 2, (3, 1), "same"),
    (1, 4, 4, 2, 5, 5, 2, 1, "valid"),  # stride 1, "valid": the full convolution
    (1, 4, 5, 2, 4, 2, 2, 1, "same"),  # stride 1, even kernel
    (1, 1, 1, 2, 3, 3, 2, 3, "valid"),  # one input pixel
    (1, 5, 6, 16, 3, 3, 16, 1, "same"),  # stride 1, 3x3, 16 channels: Winograd's F(2x2, 3x3)
    (1, 4, 5, 17, 3, 3, 16, 1, "valid"),
    (1, 5, 5, 1, 3, 3, 16, 1, "same"),  # stride 1, few taps: conv2d's direct kernel
    # Strided, 16 channels or more: sub-images by Winograd (fastdl/ops/_subpixel.py)
    (2, 5, 4, 16, 3, 3, 16, 2, "same"),  # the decoder's layer: F(4, 2) and one tap, a partial tile
    (1, 4, 5, 16, 3, 3, 17, 2, "valid"),  # an extra output row and column
    (1, 3, 6, 16, 4, 4, 16, 2, "same"),  # two taps in every sub-image
    (1, 3, 3, 18, 5, 5, 16, 2, "valid"),  # three taps: F(2, 3)
    (1, 4, 3, 16, 3, 2, 16, (3, 2), "same"),  # one tap along the rows, mixed strides
]


def _data(index, dtype):
    n, h, w, c_in, kh, kw, filters, strides, padding = CONFIGS[index]
    rng = np.random.default_rng(index)
    x = rng.normal(size=(n, h, w, c_in))
    kernel = rng.normal(size=(kh, kw, filters, c_in))
    bias = rng.normal(size=filters)
    out_shape = _expected(index)[0].shape
    dout = rng.normal(size=out_shape)
    return [a.astype(dtype) for a in (x, kernel, bias, dout)] + [strides, padding]


@functools.lru_cache(maxsize=None)
def _expected(index):
    """naive (out, dx, dkernel) of configuration `index` in float64, computed once."""
    n, h, w, c_in, kh, kw, filters, strides, padding = CONFIGS[index]
    rng = np.random.default_rng(index)
    x = rng.normal(size=(n, h, w, c_in))
    kernel = rng.normal(size=(kh, kw, filters, c_in))
    bias = rng.normal(size=filters)
    out = naive.conv2d_transpose(x, kernel, bias, strides, padding)
    dout = rng.normal(size=out.shape)
    # dx is the convolution of dout with the same kernel; dkernel that convolution's kernel gradient
    # with dout as its input and x as its output gradient.
    dx = naive.conv2d(dout, kernel, None, strides, padding)
    _, dkernel, _ = naive.conv2d_grad(dout, kernel, x, strides, padding)
    return out, dx, dkernel


def _close(actual, expected, dtype, terms):
    tol = RTOL[dtype] * max(1.0, np.sqrt(terms))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=lambda i: str(CONFIGS[i]))
def test_naive_reference_is_the_input_gradient_of_conv2d(index):
    x, kernel, bias, _, strides, padding = _data(index, np.float64)
    out = naive.conv2d_transpose(x, kernel, None, strides, padding)
    dx, _, _ = conv2d_grad(np.zeros(out.shape), kernel, x, strides=strides, padding=padding, backend="numpy")
    np.testing.assert_allclose(out, dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_expected(index)[0], out + bias, rtol=1e-12, atol=1e-12)


def test_naive_reference_by_hand():
    """One pixel, stride 2, 3x3 kernel: "valid" is the kernel itself; "same" drops its last row and column."""
    kernel = np.arange(9.0).reshape(3, 3, 1, 1)
    x = np.ones((1, 1, 1, 1))
    np.testing.assert_array_equal(naive.conv2d_transpose(x, kernel, None, 2, "valid")[0, :, :, 0], kernel[..., 0, 0])
    np.testing.assert_array_equal(naive.conv2d_transpose(x, kernel, None, 2, "same")[0, :, :, 0], [[0, 1], [3, 4]])


@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=lambda i: str(CONFIGS[i]))
def test_forward_matches_naive(backend, dtype, index):
    x, kernel, bias, _, strides, padding = _data(index, dtype)
    expected = _expected(index)[0]
    out = conv2d_transpose(x, kernel, bias, strides=strides, padding=padding, backend=backend)
    assert out.dtype == dtype and out.shape == expected.shape
    terms = kernel[..., 0, :].size
    _close(out, expected, dtype, terms)
    no_bias = conv2d_transpose(x, kernel, strides=strides, padding=padding, backend=backend)
    _close(no_bias, expected - bias.astype(np.float64), dtype, terms)


ACTIVATED = {
    "relu": lambda z: np.maximum(z, 0),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "leaky_relu": lambda z: np.where(z < 0, LEAKY_ALPHA * z, z),
}


@pytest.mark.parametrize("activation", ACTIVATED)
@pytest.mark.parametrize("index", [4, 17], ids=["im2col", "sub-pixel"])
def test_bias_and_activation_fused(backend, dtype, index, activation):
    """The layer's path: bias and activation applied as the output is written (the ReLU inside the
    sub-pixel kernel that writes it, the others after it, batch by batch)."""
    x, kernel, bias, _, strides, padding = _data(index, dtype)
    geometry = transpose_geometry(x.shape, kernel.shape, strides, padding)
    out = np.full((x.shape[0], *geometry[0], kernel.shape[2]), np.nan, dtype)
    conv2d_transpose_into(x, kernel, bias, geometry, out, ACTIVATIONS[activation], backend)
    _close(out, ACTIVATED[activation](_expected(index)[0]), dtype, kernel[..., 0, :].size)


@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=lambda i: str(CONFIGS[i]))
def test_backward_matches_naive(backend, dtype, index):
    x, kernel, _, dout, strides, padding = _data(index, dtype)
    _, expected_dx, expected_dkernel = _expected(index)
    dx, dkernel, dbias = conv2d_transpose_grad(x, kernel, dout, strides=strides, padding=padding, backend=backend)
    expected_dbias = dout.astype(np.float64).sum(axis=(0, 1, 2))
    for got, want in ((dx, expected_dx), (dkernel, expected_dkernel), (dbias, expected_dbias)):
        assert got.dtype == dtype and got.shape == want.shape
    _close(dx, expected_dx, dtype, kernel[..., 0].size)
    _close(dkernel, expected_dkernel, dtype, x[..., 0].size)
    _close(dbias, expected_dbias, dtype, dout[..., 0].size)


@pytest.mark.parametrize("index", [2, 3, 6, 9, 11, 17, 20], ids=lambda i: str(CONFIGS[i]))
def test_gradients_match_finite_differences(backend, index):
    x, kernel, bias, weights, strides, padding = _data(index, np.float64)

    def loss(x_, kernel_, bias_):
        out = conv2d_transpose(x_, kernel_, bias_, strides=strides, padding=padding, backend=backend)
        return float((out * weights).sum())

    grads = conv2d_transpose_grad(x, kernel, weights, strides=strides, padding=padding, backend=backend)
    step = 1e-6
    arrays = [x, kernel, bias]
    sample = np.random.default_rng(index)
    for which, grad in enumerate(grads):
        entries = list(np.ndindex(grad.shape))
        if len(entries) > 64:  # the 16-channel configurations: 64 entries of each array at random
            entries = [entries[i] for i in sample.choice(len(entries), 64, replace=False)]
        for index_ in entries:
            shifted = [a.copy() for a in arrays]
            shifted[which][index_] += step
            up = loss(*shifted)
            shifted[which][index_] -= 2 * step
            numeric = (up - loss(*shifted)) / (2 * step)
            np.testing.assert_allclose(grad[index_], numeric, rtol=1e-6, atol=1e-6, err_msg=f"array {which} at {index_}")


def test_backend_comes_from_the_process_default(backend):
    x, kernel, bias, dout, strides, padding = _data(4, np.float64)
    with fastdl.use_backend(backend):
        out = conv2d_transpose(x, kernel, bias, strides=strides, padding=padding)
        dx, _, _ = conv2d_transpose_grad(x, kernel, dout, strides=strides, padding=padding)
    np.testing.assert_allclose(out, _expected(4)[0], rtol=1e-10)
    np.testing.assert_allclose(dx, _expected(4)[1], rtol=1e-10)


def test_awkward_layouts_and_integer_inputs():
    x, kernel, bias, dout, strides, padding = _data(4, np.float64)
    expected = conv2d_transpose(x, kernel, bias, strides=strides, padding=padding)
    odd_layouts = [np.asfortranarray(x), x.astype(">f8"), np.repeat(x, 2, axis=2)[:, :, ::2]]
    for variant in odd_layouts:
        variant.flags.writeable = False
        np.testing.assert_array_equal(conv2d_transpose(variant, kernel, bias, strides=strides, padding=padding),
                                      expected)
    pixels = np.full((1, 2, 2, 1), 200, np.uint8)  # uint8 converts to float64 before any arithmetic
    out = conv2d_transpose(pixels, np.ones((2, 2, 1, 1), np.uint8), strides=2, padding="same")
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, np.full((1, 4, 4, 1), 200.0))


def test_results_do_not_depend_on_the_thread_count(rng, monkeypatch):
    """1 and 2 threads, and 3 threads with every pass split (the kernel's transforms and gradient
    by input channels, the partial sums by elements)."""
    x = rng.normal(size=(32, 12, 12, 16)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 16, 16)).astype(np.float32)
    dout = rng.normal(size=(32, 24, 24, 16)).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        fastdl.set_num_threads(threads)
        if threads == 3:
            monkeypatch.setattr(fastdl._parallel, "MIN_WORK_PER_THREAD", 1)
        results.append((conv2d_transpose(x, kernel, strides=2, padding="same", backend="numba"),
                        *conv2d_transpose_grad(x, kernel, dout, strides=2, padding="same", backend="numba")))
    for other in results[1:]:
        np.testing.assert_array_equal(other[0], results[0][0])
        np.testing.assert_array_equal(other[1], results[0][1])  # each image's dx is one GEMM either way
        for got, want in zip(other[2:], results[0][2:]):  # sums over images, grouped by thread
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


GOOD_X = np.zeros((2, 5, 5, 3))
GOOD_K = np.zeros((3, 3, 4, 3))  # (kh, kw, filters, in_channels)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(x=np.zeros((5, 5, 3))), ValueError, r"x must be 4-D \(n_images, height, width, in_channels\), .*\(5, 5, 3\)"),
    (dict(kernel=np.zeros((3, 3, 3))), ValueError, r"kernel must be 4-D \(kernel_h, kernel_w, filters, in_channels\)"),
    (dict(kernel=np.zeros((3, 3, 3, 4))), ValueError,
     r"x has 3 channels but kernel .* expects 4: x \(2, 5, 5, 3\), kernel \(3, 3, 3, 4\)"),
    (dict(x=np.zeros((0, 5, 5, 3))), ValueError, r"x must not be empty, got shape \(0, 5, 5, 3\)"),
    (dict(kernel=np.zeros((0, 3, 4, 3))), ValueError, r"kernel must not be empty"),
    (dict(x=np.full((2, 5, 5, 3), np.nan)), ValueError, r"x contains NaN"),
    (dict(kernel=np.full((3, 3, 4, 3), np.inf)), ValueError, r"kernel contains NaN or infinity"),
    (dict(x=np.zeros((2, 5, 5, 3), dtype=complex)), TypeError, r"x must hold real numbers, got dtype complex128"),
    (dict(x=np.zeros((2, 5, 5, 3), dtype=object)), TypeError, r"real numbers, got dtype object"),
    (dict(kernel=np.full((3, 3, 4, 3), "a")), TypeError, r"kernel must hold real numbers"),
    (dict(strides=0), ValueError, r"strides must be >= 1"),
    (dict(strides=(2, -1)), ValueError, r"strides must be >= 1"),
    (dict(strides=1.5), TypeError, r"strides must be an int"),
    (dict(strides=(1, 2, 3)), ValueError, r"strides must be an int or a pair"),
    (dict(padding="full"), ValueError, r'padding must be "valid" or "same", got \'full\''),
    (dict(padding=1), TypeError, r'padding must be "valid" or "same", got 1'),
    (dict(bias=np.zeros(3)), ValueError, r"bias must have shape \(4,\) for kernel \(3, 3, 4, 3\)"),
    (dict(bias=np.zeros((4, 1))), ValueError, r"bias must be 1-D \(filters,\)"),
    (dict(bias=np.array([0, 0, np.nan, 0])), ValueError, r"bias contains NaN"),
    (dict(backend="nope"), ValueError, r"unknown backend"),
])
def test_bad_input_forward(kwargs, error, match):
    args = dict(x=GOOD_X, kernel=GOOD_K, bias=None, strides=2, padding="valid", backend="numpy")
    args.update(kwargs)
    with pytest.raises(error, match=match):
        conv2d_transpose(**args)


@pytest.mark.parametrize("dout, error, match", [
    (np.zeros((2, 11, 11, 3)), ValueError, r"dout must have the output's shape \(2, 11, 11, 4\) for x \(2, 5, 5, 3\)"),
    (np.zeros((2, 10, 10, 4)), ValueError, r"got \(2, 10, 10, 4\)"),
    (np.zeros((1, 11, 11, 4)), ValueError, r"got \(1, 11, 11, 4\)"),
    (np.zeros((11, 11, 4)), ValueError, r"dout must be 4-D \(n_images, out_h, out_w, filters\)"),
    (np.full((2, 11, 11, 4), np.inf), ValueError, r"dout contains NaN or infinity"),
    (np.zeros((2, 11, 11, 4), dtype=complex), TypeError, r"dout must hold real numbers"),
])
def test_bad_input_backward(backend, dout, error, match):
    with pytest.raises(error, match=match):
        conv2d_transpose_grad(GOOD_X, GOOD_K, dout, strides=2, backend=backend)
