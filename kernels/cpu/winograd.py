"""Winograd transform kernels (Numba); mirrors kernels/cy/winograd.pyx and kernels/npy/winograd.py.

Two families: the fixed F(2x2, 3x3) transforms (winograd_input, winograd_output,
winograd_output_grad; fastdl/ops/_winograd.py), and tile_gather / tile_scatter, which apply any
small transform matrices to tiles (fastdl/ops/_toom_cook.py: F(4x4, 3x3) for 3x3 stride-1
convolutions and the sub-pixel transposed convolutions' phases).
"""

import numpy as np
from numba import prange

from ._jit import compile_kernel, helper, launch

# The fixed Winograd F(2x2, 3x3): a 3x3 convolution's 2x2 output tile from a 4x4 input tile d as
# A^T [(G g G^T) * (B^T d B)] A, 16 multiplications per tile and channel pair instead of 36.


def _winograd_input(x, pad_top, pad_left, tiles_h, tiles_w, out):
    n_images, height, width, channels = x.shape
    for n in prange(n_images):
        d = np.empty((16, channels), x.dtype)  # the tile's window, zeros outside x
        t = np.empty((16, channels), x.dtype)  # B^T d
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                tile = (n * tiles_h + ty) * tiles_w + tx
                for k in range(16):
                    h = 2 * ty - pad_top + k // 4
                    w = 2 * tx - pad_left + k % 4
                    if 0 <= h < height and 0 <= w < width:
                        d[k] = x[n, h, w]
                    else:
                        d[k] = 0
                for b in range(4):  # B^T d: rows
                    for c in range(channels):
                        t[b, c] = d[b, c] - d[8 + b, c]
                        t[4 + b, c] = d[4 + b, c] + d[8 + b, c]
                        t[8 + b, c] = d[8 + b, c] - d[4 + b, c]
                        t[12 + b, c] = d[4 + b, c] - d[12 + b, c]
                for a in range(4):  # (B^T d) B: columns
                    for c in range(channels):
                        out[4 * a, tile, c] = t[4 * a, c] - t[4 * a + 2, c]
                        out[4 * a + 1, tile, c] = t[4 * a + 1, c] + t[4 * a + 2, c]
                        out[4 * a + 2, tile, c] = t[4 * a + 2, c] - t[4 * a + 1, c]
                        out[4 * a + 3, tile, c] = t[4 * a + 1, c] - t[4 * a + 3, c]


_winograd_input_serial = compile_kernel(_winograd_input)
_winograd_input_parallel = compile_kernel(_winograd_input, parallel=True)


def winograd_input(x, pad_top, pad_left, tiles_h, tiles_w, out, n_threads):
    """Winograd F(2x2, 3x3) input tiles: out[4 a + b, t] = (B^T d B)[a, b] for the 4x4 window d of
    tile t (image, row, column in order) with top-left corner (2 row - pad_top, 2 column -
    pad_left), zeros outside x (a negative padding crops). x (n, height, width, channels); out
    (16, n * tiles_h * tiles_w, channels) of x's dtype."""
    launch(_winograd_input_serial, _winograd_input_parallel, n_threads, x, pad_top, pad_left, tiles_h, tiles_w, out)


def _winograd_output(m, tiles_h, tiles_w, out):
    n_images, out_h, out_w, channels = out.shape
    for n in prange(n_images):
        s = np.empty((8, channels), m.dtype)  # A^T m
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                tile = (n * tiles_h + ty) * tiles_w + tx
                for b in range(4):  # A^T m: rows
                    for c in range(channels):
                        s[b, c] = m[b, tile, c] + m[4 + b, tile, c] + m[8 + b, tile, c]
                        s[4 + b, c] = m[4 + b, tile, c] - m[8 + b, tile, c] - m[12 + b, tile, c]
                for i in range(2):  # (A^T m) A: columns, cropped to out
                    h = 2 * ty + i
                    if h >= out_h:
                        continue
                    w = 2 * tx
                    for c in range(channels):
                        out[n, h, w, c] = s[4 * i, c] + s[4 * i + 1, c] + s[4 * i + 2, c]
                    if w + 1 < out_w:
                        for c in range(channels):
                            out[n, h, w + 1, c] = s[4 * i + 1, c] - s[4 * i + 2, c] - s[4 * i + 3, c]


_winograd_output_serial = compile_kernel(_winograd_output)
_winograd_output_parallel = compile_kernel(_winograd_output, parallel=True)


def winograd_output(m, tiles_h, tiles_w, out, n_threads):
    """Winograd F(2x2, 3x3) output tiles: out[image, 2 row + i, 2 column + j] = (A^T m_t A)[i, j]
    for tile t of m (16, n * tiles_h * tiles_w, channels), cropped to out (n, out_h, out_w,
    channels) of m's dtype."""
    launch(_winograd_output_serial, _winograd_output_parallel, n_threads, m, tiles_h, tiles_w, out)


def _winograd_output_grad(dout, tiles_h, tiles_w, out):
    n_images, out_h, out_w, channels = dout.shape
    for n in prange(n_images):
        dy = np.empty((4, channels), dout.dtype)  # the tile, zeros past the edge
        u = np.empty((8, channels), dout.dtype)  # A dy: row a, column j at 2 a + j
        for ty in range(tiles_h):
            for tx in range(tiles_w):
                tile = (n * tiles_h + ty) * tiles_w + tx
                for i in range(4):
                    h = 2 * ty + i // 2
                    w = 2 * tx + i % 2
                    if h < out_h and w < out_w:
                        dy[i] = dout[n, h, w]
                    else:
                        dy[i] = 0
                for j in range(2):
                    for c in range(channels):
                        u[j, c] = dy[j, c]
                        u[2 + j, c] = dy[j, c] + dy[2 + j, c]
                        u[4 + j, c] = dy[j, c] - dy[2 + j, c]
                        u[6 + j, c] = -dy[2 + j, c]
                for i in range(4):
                    for c in range(channels):
                        out[4 * i, tile, c] = u[2 * i, c]
                        out[4 * i + 1, tile, c] = u[2 * i, c] + u[2 * i + 1, c]
                        out[4 * i + 2, tile, c] = u[2 * i, c] - u[2 * i + 1, c]
                        out[4 * i + 3, tile, c] = -u[2 * i + 1, c]


_winograd_grad_serial = compile_kernel(_winograd_output_grad)
_winograd_grad_parallel = compile_kernel(_winograd_output_grad, parallel=True)


def winograd_output_grad(dout, tiles_h, tiles_w, out, n_threads):
    """The adjoint of winograd_output: out[4 a + b, t] = (A dy_t A^T)[a, b] for the 2x2 tile dy_t
    of dout (n, out_h, out_w, channels), zeros past its edge; out (16, n * tiles_h * tiles_w,
    channels) of dout's dtype."""
    launch(_winograd_grad_serial, _winograd_grad_parallel, n_threads, dout, tiles_h, tiles_w, out)


# Tiles of a Winograd transform with any small matrices, for fastdl/ops/_toom_cook.py's phases:
# F(4x4, 3x3) and its edge tiles (fastdl/ops/_winograd.py's LargeTiles) and the sub-pixel
# transposed convolution's (fastdl/ops/_subpixel.py). A grid (first, tile_step, pixel_step,
# tiles) along an axis places pixel i of tile t at first + t * tile_step + i * pixel_step.


@helper(inline="always")
def _axpy(out, weight, a, add):
    """out (+)= weight * a along a row: the first term assigned, the others added (Cython's _axpy)."""
    if add:
        for c in range(out.shape[0]):
            out[c] += weight * a[c]
    else:
        for c in range(out.shape[0]):
            out[c] = weight * a[c]


def _tile_gather(x, left_y, left_x, grid_y, grid_x, out):
    n_images, height, width, channels = x.shape
    ay, window_h = left_y.shape
    ax, window_w = left_x.shape
    tiles_y, tiles_x = grid_y[3], grid_x[3]
    for n in prange(n_images):
        rows = np.empty((ay * window_w, channels), x.dtype)  # left_y times the window
        for ty in range(tiles_y):
            for tx in range(tiles_x):
                tile = (n * tiles_y + ty) * tiles_x + tx
                # Each row starts with its first term (not zeros plus it): a pass fewer.
                for a in range(ay):
                    for j in range(window_w):
                        row = a * window_w + j
                        w = grid_x[0] + tx * grid_x[1] + j * grid_x[2]
                        added = False
                        if 0 <= w < width:
                            for i in range(window_h):
                                h = grid_y[0] + ty * grid_y[1] + i * grid_y[2]
                                weight = left_y[a, i]
                                if weight != 0 and 0 <= h < height:
                                    _axpy(rows[row], weight, x[n, h, w], added)
                                    added = True
                        if not added:
                            rows[row] = 0
                for a in range(ay):
                    for b in range(ax):
                        target = out[a * ax + b, tile]
                        added = False
                        for j in range(window_w):
                            weight = left_x[b, j]
                            if weight != 0:
                                _axpy(target, weight, rows[a * window_w + j], added)
                                added = True
                        if not added:
                            target[:] = 0


_tile_gather_serial = compile_kernel(_tile_gather)
_tile_gather_parallel = compile_kernel(_tile_gather, parallel=True)


def tile_gather(x, left_y, left_x, grid_y, grid_x, out, n_threads):
    """Transformed tiles: out[a ax + b, t] = sum over i, j of left_y[a, i] left_x[b, j] x[n, h_i, w_j]
    for tile t = (n, ty, tx) in order, its window's pixels h_i, w_j on grid_y, grid_x (int64
    arrays (first, tile_step, pixel_step, tiles)), zeros outside x. x (n, height, width,
    channels); left_y (ay, window_h), left_x (ax, window_w) and out (ay * ax, n * tiles_y *
    tiles_x, channels) of x's dtype."""
    launch(_tile_gather_serial, _tile_gather_parallel, n_threads, x, left_y, left_x, grid_y, grid_x, out)


def _tile_scatter(m, right_y, right_x, grid_y, grid_x, out, accumulate, bias, activation):
    n_images, height, width, channels = out.shape
    has_bias = bias.shape[0] > 0
    window_h, ay = right_y.shape
    window_w, ax = right_x.shape
    tiles_y, tiles_x = grid_y[3], grid_x[3]
    for n in prange(n_images):
        cols = np.empty((ax, channels), m.dtype)  # right_y's row i times the tile
        # Row by row of out, left to right.
        for ty in range(tiles_y):
            for i in range(window_h):
                h = grid_y[0] + ty * grid_y[1] + i * grid_y[2]
                if h < 0 or h >= height:
                    continue
                for tx in range(tiles_x):
                    tile = (n * tiles_y + ty) * tiles_x + tx
                    for b in range(ax):
                        added = False
                        for a in range(ay):
                            weight = right_y[i, a]
                            if weight != 0:
                                _axpy(cols[b], weight, m[a * ax + b, tile], added)
                                added = True
                        if not added:
                            cols[b] = 0
                    for j in range(window_w):
                        w = grid_x[0] + tx * grid_x[1] + j * grid_x[2]
                        if w < 0 or w >= width:
                            continue
                        target = out[n, h, w]
                        added = accumulate
                        if has_bias and not accumulate:
                            target[:] = bias
                            added = True
                        for b in range(ax):
                            weight = right_x[j, b]
                            if weight != 0:
                                _axpy(target, weight, cols[b], added)
                                added = True
                        if not added:
                            target[:] = 0
                        if activation == 1 and not accumulate:
                            for c in range(channels):
                                target[c] = max(target[c], 0)


_tile_scatter_serial = compile_kernel(_tile_scatter)
_tile_scatter_parallel = compile_kernel(_tile_scatter, parallel=True)


def tile_scatter(m, right_y, right_x, grid_y, grid_x, out, accumulate, bias, activation, n_threads):
    """The tiles back in place: out[n, h_i, w_j] (+)= sum over a, b of right_y[i, a] right_x[j, b]
    m[a ax + b, t] for tile t = (n, ty, tx), pixels on grid_y, grid_x as in tile_gather, those
    outside out dropped. Without accumulate, tiles must not overlap, and each pixel written starts
    from bias (channels,) (zeros for an empty bias) and ends, for activation 1, with the ReLU.
    m (ay * ax, n * tiles_y * tiles_x, channels); right_y (window_h, ay), right_x (window_w, ax),
    out (n, height, width, channels) and bias of m's dtype."""
    launch(_tile_scatter_serial, _tile_scatter_parallel, n_threads, m, right_y, right_x, grid_y, grid_x, out,
           accumulate, bias, activation)
