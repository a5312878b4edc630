"""The sub-pixel Winograd path of strided transposed convolutions: its Toom-Cook matrices and its
two tile kernels on every backend against the numpy reference (the op itself is checked against the
naive loops in test_conv_transpose.py)."""

import numpy as np
import pytest

from conftest import RTOL
from fastdl import backend as _backend
from fastdl.ops import _subpixel, _toom_cook
from fastdl.ops.conv_transpose import transpose_geometry


@pytest.mark.parametrize("m, r", [(1, 1), (3, 1), (2, 2), (4, 2), (3, 2), (2, 3), (4, 3), (6, 2)])
def test_toom_cook_matrices_compute_the_correlation(m, r):
    a_t, g, b_t = _toom_cook.toom_cook(m, r)
    alpha = m + r - 1
    assert a_t.shape == (m, alpha) and g.shape == (alpha, r) and b_t.shape == (alpha, alpha)
    rng = np.random.default_rng(m * 10 + r)
    for _ in range(5):
        d, kernel = rng.normal(size=alpha), rng.normal(size=r)
        direct = [sum(d[i + u] * kernel[u] for u in range(r)) for i in range(m)]
        np.testing.assert_allclose(a_t @ ((g @ kernel) * (b_t @ d)), direct, rtol=1e-12, atol=1e-12)


def test_f_2_3_is_the_usual_one():
    """With the points 0, 1, -1 and infinity, F(2, 3)'s input transform is Lavin's B^T."""
    _, _, b_t = _toom_cook.toom_cook(2, 3)
    lavin = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
    np.testing.assert_array_equal(np.abs(b_t), np.abs(lavin))


@pytest.mark.parametrize("x_shape, kernel_shape, strides, padding, takes", [
    ((64, 32, 32, 128), (3, 3, 128, 128), 2, "same", True),  # the a6 decoder's layers
    ((1, 5, 5, 16), (5, 5, 16, 16), 2, "valid", True),  # three taps per sub-image and axis
    ((1, 5, 5, 16), (7, 7, 16, 16), 2, "same", False),  # four taps: im2col
    ((1, 5, 5, 16), (1, 1, 16, 16), 2, "same", False),  # a kernel smaller than the stride leaves gaps
    ((1, 5, 5, 8), (3, 3, 16, 8), 2, "same", False),  # too few channels
    ((1, 5, 5, 16), (3, 3, 16, 16), 1, "same", False),  # stride 1 is a convolution
])
def test_which_convolutions_take_the_subpixel_path(x_shape, kernel_shape, strides, padding, takes):
    out_hw, args, _ = transpose_geometry(x_shape, kernel_shape, strides, padding)
    assert _subpixel.fits(x_shape, kernel_shape, args, out_hw) is takes


# (x shape, window (h, w), transform rows (ay, ax), grid_y, grid_x): grids (first, tile_step,
# pixel_step, tiles) with windows that start before the image, run past it, and step over pixels.
GRIDS = [
    ((2, 7, 6, 5), (5, 5), (5, 5), (-1, 4, 1, 2), (-1, 4, 1, 2)),
    ((1, 9, 8, 3), (4, 1), (4, 1), (0, 6, 2, 2), (1, 2, 1, 4)),
    ((3, 4, 5, 16), (3, 2), (3, 2), (-2, 2, 1, 3), (0, 3, 2, 2)),
]


def _tile_data(case, dtype):
    x_shape, window, rows, grid_y, grid_x = case
    rng = np.random.default_rng(sum(x_shape))
    x = rng.normal(size=x_shape).astype(dtype)
    left_y = rng.normal(size=(rows[0], window[0])).astype(dtype)
    left_x = rng.normal(size=(rows[1], window[1])).astype(dtype)
    left_y[0, -1] = 0  # zero weights are skipped: still exact
    n_tiles = x_shape[0] * grid_y[3] * grid_x[3]
    tiles = rng.normal(size=(rows[0] * rows[1], n_tiles, x_shape[3])).astype(dtype)
    return x, left_y, left_x, np.array(grid_y, np.int64), np.array(grid_x, np.int64), tiles


@pytest.mark.parametrize("case", GRIDS, ids=str)
def test_tile_gather_matches_the_reference(backend, dtype, case):
    x, left_y, left_x, grid_y, grid_x, tiles = _tile_data(case, dtype)
    reference, _ = _backend.kernels("winograd", "numpy")
    kernels, _ = _backend.kernels("winograd", backend)
    expected, out = np.empty_like(tiles), np.full_like(tiles, np.nan)
    reference.tile_gather(x, left_y, left_x, grid_y, grid_x, expected, 1)
    kernels.tile_gather(x, left_y, left_x, grid_y, grid_x, out, 2)
    np.testing.assert_allclose(out, expected, rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("accumulate, with_bias, activation", [
    (True, False, 0), (False, False, 0), (False, True, 0), (False, True, 1), (False, False, 1)])
@pytest.mark.parametrize("case", GRIDS, ids=str)
def test_tile_scatter_matches_the_reference(backend, dtype, case, accumulate, with_bias, activation):
    x, right_y, right_x, grid_y, grid_x, tiles = _tile_data(case, dtype)
    right_y, right_x = np.ascontiguousarray(right_y.T), np.ascontiguousarray(right_x.T)
    if not accumulate:  # tiles that do not overlap: m pixels a tile_step apart
        grid_y[1] = max(grid_y[1], grid_y[2] * right_y.shape[0])
        grid_x[1] = max(grid_x[1], grid_x[2] * right_x.shape[0])
    bias = np.linspace(-1, 1, x.shape[3]).astype(dtype) if with_bias else np.empty(0, dtype)
    reference, _ = _backend.kernels("winograd", "numpy")
    kernels, _ = _backend.kernels("winograd", backend)
    expected, out = x.copy(), x.copy()
    reference.tile_scatter(tiles, right_y, right_x, grid_y, grid_x, expected, accumulate, bias, activation, 1)
    kernels.tile_scatter(tiles, right_y, right_x, grid_y, grid_x, out, accumulate, bias, activation, 2)
    np.testing.assert_allclose(out, expected, rtol=RTOL[dtype], atol=RTOL[dtype])
    assert not np.array_equal(out, x)
    if activation:
        assert (out[x != out] >= 0).all()
