"""The convolution kernels of the cuda backend (kernels/gpu/conv.py and winograd.py) against the
numpy reference kernels, float32 and float64 (numba's CUDA simulator where no device is present: tiny shapes)."""

import numpy as np
import pytest

from conftest import RTOL
from fastdl import backend

pytestmark = pytest.mark.cuda

GEOMETRIES = [  # kh, kw, stride_h, stride_w, pad_top, pad_left
    (3, 3, 1, 1, 1, 1),
    (3, 3, 2, 2, 1, 0),
    (2, 3, 2, 1, 0, 2),
]


@pytest.fixture
def gpu(cuda_backend):
    import fastdl.kernels.gpu.conv as conv

    return conv


@pytest.fixture
def ref():
    return backend.kernels("conv", "numpy")[0]


@pytest.fixture
def gpu_winograd(cuda_backend):
    import fastdl.kernels.gpu.winograd as winograd

    return winograd


@pytest.fixture
def ref_winograd():
    return backend.kernels("winograd", "numpy")[0]


def _dev(array):
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(array))


def _close(got, want, dtype):
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype] * 10, atol=RTOL[dtype] * 10 * scale)


def _out_size(size, kernel, stride, pad):
    return (size + 2 * pad - kernel) // stride + 1


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_im2col_and_col2im(gpu, ref, cuda_scale, dtype, geometry):
    kh, kw, sh, sw, pt, pl = geometry
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4 * cuda_scale, 5, 3)).astype(dtype)
    out_h, out_w = _out_size(x.shape[1], kh, sh, pt), _out_size(x.shape[2], kw, sw, pl)
    args = (kh, kw, sh, sw, pt, pl, out_h, out_w, 1)
    cols_shape = (2 * out_h * out_w, kh * kw * 3)
    want = np.full(cols_shape, np.nan, dtype)
    ref.im2col(x, want, *args)
    cols = _dev(np.full(cols_shape, np.nan, dtype))
    gpu.im2col(_dev(x), cols, *args)
    np.testing.assert_array_equal(cols.copy_to_host(), want)  # a copy: exact

    g = rng.normal(size=cols_shape).astype(dtype)
    want_dx = np.full(x.shape, np.nan, dtype)
    ref.col2im(g, want_dx, *args)
    dx = _dev(np.full(x.shape, np.nan, dtype))
    gpu.col2im(_dev(g), dx, *args)
    _close(dx.copy_to_host(), want_dx, dtype)


def test_conv_direct(gpu, ref, cuda_scale, dtype):
    rng = np.random.default_rng(1)
    for kh, kw, sh, sw in ((3, 3, 1, 1), (3, 3, 2, 2), (1, 2, 1, 2)):
        x = rng.normal(size=(2, 5 * cuda_scale, 6, 3)).astype(dtype)
        out_h, out_w = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
        kernel_matrix = rng.normal(size=(kh * kw * 3, 4)).astype(dtype)
        want = np.empty((2 * out_h * out_w, 4), dtype)
        ref.conv_direct(x, kernel_matrix, kh, kw, sh, sw, out_h, out_w, want, 1)
        out = _dev(np.full(want.shape, np.nan, dtype))
        gpu.conv_direct(_dev(x), _dev(kernel_matrix), kh, kw, sh, sw, out_h, out_w, out, 1)
        _close(out.copy_to_host(), want, dtype)


@pytest.mark.parametrize("activation", [0, 1])
@pytest.mark.parametrize("with_bias", [True, False])
def test_bias_act_pool_and_unpool(gpu, ref, cuda_scale, dtype, activation, with_bias):
    rng = np.random.default_rng(2)
    n, height, width, channels, pool_h, pool_w = 2, 5 * cuda_scale, 4, 3, 2, 2  # a leftover row
    block = rng.normal(size=(n * height * width, channels)).astype(dtype)
    block[1] = block[0]  # ties: the first maximum wins
    block[width : width + 2] = block[0]
    bias = rng.normal(size=channels).astype(dtype) if with_bias else np.empty(0, dtype)
    out_h, out_w = height // pool_h, width // pool_w
    want, want_code = np.empty((n, out_h, out_w, channels), dtype), np.empty((n, out_h, out_w, channels), np.int32)
    ref.bias_act_pool(block, bias, activation, height, width, pool_h, pool_w, want, want_code, 1)
    out, code = _dev(np.full(want.shape, np.nan, dtype)), _dev(np.full(want.shape, 7, np.int32))
    gpu.bias_act_pool(_dev(block), _dev(bias), activation, height, width, pool_h, pool_w, out, code, 1)
    np.testing.assert_array_equal(code.copy_to_host(), want_code)
    np.testing.assert_array_equal(out.copy_to_host(), want)  # the same additions and comparisons
    if activation == 1:
        assert (want_code == -1).any()

    dpooled = rng.normal(size=want.shape).astype(dtype)
    want_dblock, want_dbias = np.full(block.shape, np.nan, dtype), np.full(channels, 0.5)
    ref.unpool(dpooled, want_code, height, width, pool_h, pool_w, want_dblock, want_dbias, 1)
    dblock, dbias = _dev(np.full(block.shape, np.nan, dtype)), _dev(np.full(channels, 0.5))
    gpu.unpool(_dev(dpooled), code, height, width, pool_h, pool_w, dblock, dbias, 1)
    np.testing.assert_array_equal(dblock.copy_to_host(), want_dblock)
    np.testing.assert_allclose(dbias.copy_to_host(), want_dbias, rtol=1e-12)


@pytest.mark.parametrize("pads", [(1, 1), (0, -1)], ids=["padded", "cropped"])
def test_winograd_transforms(gpu_winograd, ref_winograd, cuda_scale, dtype, pads):
    rng = np.random.default_rng(3)
    n, height, width, channels = 2 * cuda_scale, 5, 6, 3
    x = rng.normal(size=(n, height, width, channels)).astype(dtype)
    tiles_h, tiles_w = 3, 3
    n_tiles = n * tiles_h * tiles_w
    want = np.full((16, n_tiles, channels), np.nan, dtype)
    ref_winograd.winograd_input(x, *pads, tiles_h, tiles_w, want, 1)
    out = _dev(np.full(want.shape, np.nan, dtype))
    gpu_winograd.winograd_input(_dev(x), *pads, tiles_h, tiles_w, out, 1)
    _close(out.copy_to_host(), want, dtype)

    m = rng.normal(size=(16, n_tiles, channels)).astype(dtype)
    want_y = np.full((n, height, width, channels), np.nan, dtype)  # 6 x 6 tiles cropped to 5 x 6
    ref_winograd.winograd_output(m, tiles_h, tiles_w, want_y, 1)
    y = _dev(np.full(want_y.shape, np.nan, dtype))
    gpu_winograd.winograd_output(_dev(m), tiles_h, tiles_w, y, 1)
    _close(y.copy_to_host(), want_y, dtype)

    dy = rng.normal(size=want_y.shape).astype(dtype)
    want_dm = np.full(m.shape, np.nan, dtype)
    ref_winograd.winograd_output_grad(dy, tiles_h, tiles_w, want_dm, 1)
    dm = _dev(np.full(m.shape, np.nan, dtype))
    gpu_winograd.winograd_output_grad(_dev(dy), tiles_h, tiles_w, dm, 1)
    _close(dm.copy_to_host(), want_dm, dtype)


def _matrix(rng, shape, dtype):
    """Small integers with zeros among them (the kernels skip zero weights)."""
    return rng.integers(-2, 3, size=shape).astype(dtype)


@pytest.mark.parametrize("pads", [(1, 1), (0, 2), (3, 0)])
def test_shift_sum_and_spread(gpu, ref, cuda_scale, dtype, pads):
    rng = np.random.default_rng(7)
    n, height, width, filters, kh, kw = 2 * cuda_scale, 4, 5, 2, 3, 2
    out_h, out_w = 5, 4
    z = rng.normal(size=(n, height, width, kh * kw * filters)).astype(dtype)
    want = np.full((n, out_h, out_w, filters), np.nan, dtype)
    ref.shift_sum(z, kh, kw, *pads, want, 1)
    out = _dev(np.full(want.shape, np.nan, dtype))
    gpu.shift_sum(_dev(z), kh, kw, *pads, out, 1)
    _close(out.copy_to_host(), want, dtype)
    dout = rng.normal(size=want.shape).astype(dtype)
    want_dz = np.full(z.shape, np.nan, dtype)
    ref.shift_spread(dout, kh, kw, *pads, want_dz, 1)
    dz = _dev(np.full(z.shape, np.nan, dtype))
    gpu.shift_spread(_dev(dout), kh, kw, *pads, dz, 1)
    np.testing.assert_array_equal(dz.copy_to_host(), want_dz)


def test_swap_axes(cuda_backend, dtype):
    from fastdl.kernels.gpu import _arrays

    source = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    out = _dev(np.zeros((3, 2, 4), dtype))
    _arrays.swap_axes(_dev(source), out)
    np.testing.assert_array_equal(out.copy_to_host(), source.transpose(1, 0, 2))


def test_tile_gather(gpu_winograd, ref_winograd, cuda_scale, dtype):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2 * cuda_scale, 5, 6, 3)).astype(dtype)
    left_y, left_x = _matrix(rng, (3, 4), dtype), _matrix(rng, (2, 3), dtype)
    left_x[1] = 0  # a row of zeros: zero tiles
    grid_y = np.array([-1, 2, 1, 3], np.int64)  # overlapping windows, pixels outside x
    grid_x = np.array([0, 3, 2, 3], np.int64)
    shape = (6, x.shape[0] * 9, 3)
    want = np.full(shape, np.nan, dtype)
    ref_winograd.tile_gather(x, left_y, left_x, grid_y, grid_x, want, 1)
    out = _dev(np.full(shape, np.nan, dtype))
    gpu_winograd.tile_gather(_dev(x), _dev(left_y), _dev(left_x), _dev(grid_y), _dev(grid_x), out, 1)
    _close(out.copy_to_host(), want, dtype)


@pytest.mark.parametrize("mode", ["bias relu", "no bias", "accumulate"])
def test_tile_scatter(gpu_winograd, ref_winograd, cuda_scale, dtype, mode):
    rng = np.random.default_rng(5)
    n, height, width, channels = 2 * cuda_scale, 7, 6, 3
    accumulate = mode == "accumulate"
    if accumulate:  # overlapping windows of 3 rows at steps of 1, and pixels outside out
        right_y, right_x = _matrix(rng, (3, 2), dtype), _matrix(rng, (2, 3), dtype)
        grid_y, grid_x = np.array([-1, 1, 1, 5], np.int64), np.array([1, 2, 1, 3], np.int64)
    else:  # disjoint tiles: rows 1, 3 | 5, 7 (7 dropped), columns 0, 1 | 2, 3 | 4, 5
        right_y, right_x = _matrix(rng, (2, 3), dtype), _matrix(rng, (2, 2), dtype)
        grid_y, grid_x = np.array([1, 4, 2, 2], np.int64), np.array([0, 2, 1, 3], np.int64)
    right_x[0, :] = 0  # a pixel column with zero weights
    ay, ax = right_y.shape[1], right_x.shape[1]
    m = rng.normal(size=(ay * ax, n * grid_y[3] * grid_x[3], channels)).astype(dtype)
    bias = rng.normal(size=channels).astype(dtype) if mode == "bias relu" else np.empty(0, dtype)
    activation = 1 if mode == "bias relu" else 0
    start = rng.normal(size=(n, height, width, channels)).astype(dtype)  # kept off the grid
    want = start.copy()
    ref_winograd.tile_scatter(m, right_y, right_x, grid_y, grid_x, want, accumulate, bias, activation, 1)
    out = _dev(start)
    gpu_winograd.tile_scatter(_dev(m), _dev(right_y), _dev(right_x), _dev(grid_y), _dev(grid_x), out, accumulate,
                     _dev(bias), activation, 1)
    _close(out.copy_to_host(), want, dtype)
    if activation:
        assert (want == 0).any()
