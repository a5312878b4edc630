"""Convolution kernels (Numba); mirrors kernels/cy/conv.pyx and kernels/npy/conv.py."""

import numba
import numpy as np
from numba import prange

from ._jit import compile_kernel, launch


def _im2col(x, cols, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w):
    n_images, height, width, channels = x.shape
    for n in prange(n_images):
        for oh in range(out_h):
            top = oh * stride_h - pad_top
            for ow in range(out_w):
                left = ow * stride_w - pad_left
                row = (n * out_h + oh) * out_w + ow
                for i in range(kh):
                    h = top + i
                    for j in range(kw):
                        w = left + j
                        base = (i * kw + j) * channels
                        if 0 <= h < height and 0 <= w < width:
                            for c in range(channels):
                                cols[row, base + c] = x[n, h, w, c]
                        else:
                            for c in range(channels):
                                cols[row, base + c] = 0.0


_im2col_serial = compile_kernel(_im2col)
_im2col_parallel = compile_kernel(_im2col, parallel=True)


def im2col(x, cols, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w, n_threads):
    """Gather the (kh, kw) patches of x into the rows of cols, zeros where a patch leaves x.

    x: (n, height, width, channels); cols: (n * out_h * out_w, kh * kw * channels), same dtype,
    row (n, oh, ow) holding the patch whose top-left corner is (oh * stride_h - pad_top,
    ow * stride_w - pad_left), its columns in (i, j, channel) order like a Keras kernel's rows.
    """
    launch(_im2col_serial, _im2col_parallel, n_threads,
           x, cols, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w)


def _conv_direct(x, kernel_matrix, kh, kw, stride_h, stride_w, out_h, out_w, out):
    n_images, _, _, channels = x.shape
    filters = kernel_matrix.shape[1]
    for n in prange(n_images):
        acc = np.empty(filters, out.dtype)
        for oh in range(out_h):
            for ow in range(out_w):
                acc[:] = 0
                # Taps in (i, j, channel) order, as the Cython kernel adds them.
                for i in range(kh):
                    for j in range(kw):
                        for c in range(channels):
                            value = x[n, oh * stride_h + i, ow * stride_w + j, c]
                            r = (i * kw + j) * channels + c
                            for f in range(filters):
                                acc[f] += value * kernel_matrix[r, f]
                out[(n * out_h + oh) * out_w + ow] = acc


_direct_serial = compile_kernel(_conv_direct)
_direct_parallel = compile_kernel(_conv_direct, parallel=True)


def conv_direct(x, kernel_matrix, kh, kw, stride_h, stride_w, out_h, out_w, out, n_threads):
    """out = im2col(x) @ kernel_matrix without the patch matrix, for kernels of few taps.

    x (n, height, width, channels), already padded: every window lies inside it; kernel_matrix
    (kh * kw * channels, filters), rows in im2col's (i, j, channel) order; out (n * out_h * out_w,
    filters). Each sum adds its taps in (i, j, channel) order.
    """
    launch(_direct_serial, _direct_parallel, n_threads, x, kernel_matrix, kh, kw, stride_h, stride_w, out_h, out_w,
           out)

def _col2im(cols, dx, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w):
    n_images, height, width, channels = dx.shape
    for n in prange(n_images):
        # Each image is one task: its patches overlap only each other, so no two threads collide.
        for h in range(height):
            for w in range(width):
                for c in range(channels):
                    dx[n, h, w, c] = 0.0
        for oh in range(out_h):
            top = oh * stride_h - pad_top
            for ow in range(out_w):
                left = ow * stride_w - pad_left
                row = (n * out_h + oh) * out_w + ow
                for i in range(kh):
                    h = top + i
                    if h < 0 or h >= height:
                        continue
                    for j in range(kw):
                        w = left + j
                        if w < 0 or w >= width:
                            continue
                        base = (i * kw + j) * channels
                        for c in range(channels):
                            dx[n, h, w, c] += cols[row, base + c]


_col2im_serial = compile_kernel(_col2im)
_col2im_parallel = compile_kernel(_col2im, parallel=True)


def col2im(cols, dx, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w, n_threads):
    """dx = the sum, over patches, of each row of cols put back where im2col took it from.

    The adjoint of im2col (same arguments); dx is overwritten, entries in the padding are dropped.
    """
    launch(_col2im_serial, _col2im_parallel, n_threads,
           cols, dx, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w)


@numba.njit(nogil=True, cache=True, inline="always")
def _tap_range(offset, size, out_size):
    """The outputs o, first <= o < stop, whose input o + offset lies in 0..size - 1 (first <= stop)."""
    first = max(0, -offset)
    return first, max(first, min(out_size, size - offset))


def _shift_sum(z, kh, kw, pad_top, pad_left, out):
    n_images, height, width, _ = z.shape
    _, out_h, out_w, filters = out.shape
    for n in prange(n_images):
        # A row of outputs at a time, tap by tap: each output still adds its taps in (i, j) order.
        for oh in range(out_h):
            target = out[n, oh]
            target[:] = 0
            for i in range(kh):
                h = oh - pad_top + i
                if h < 0 or h >= height:
                    continue
                for j in range(kw):
                    first, stop = _tap_range(j - pad_left, width, out_w)
                    base = (i * kw + j) * filters
                    for ow in range(first, stop):
                        w = ow + j - pad_left
                        for f in range(filters):
                            target[ow, f] += z[n, h, w, base + f]


_shift_sum_serial = compile_kernel(_shift_sum)
_shift_sum_parallel = compile_kernel(_shift_sum, parallel=True)


def shift_sum(z, kh, kw, pad_top, pad_left, out, n_threads):
    """A stride-1 convolution from its per-tap products: out[n, oh, ow, f] = the sum over taps
    (i, j), in that order, of z[n, oh - pad_top + i, ow - pad_left + j, (i * kw + j) * filters + f],
    terms outside z dropped (the zero padding). z (n, height, width, kh * kw * filters), each
    input pixel times every tap of the kernel; out (n, out_h, out_w, filters) of z's dtype."""
    launch(_shift_sum_serial, _shift_sum_parallel, n_threads, z, kh, kw, pad_top, pad_left, out)


def _shift_spread(dout, kh, kw, pad_top, pad_left, dz):
    n_images, height, width, _ = dz.shape
    _, out_h, out_w, filters = dout.shape
    for n in prange(n_images):
        for h in range(height):
            target = dz[n, h]
            for i in range(kh):
                oh = h + pad_top - i
                for j in range(kw):
                    # Pixels w read dout's w + pad_left - j: those in first..stop - 1 lie inside it.
                    first, stop = _tap_range(pad_left - j, out_w, width) if 0 <= oh < out_h else (0, 0)
                    base = (i * kw + j) * filters
                    for w in range(width):
                        if first <= w < stop:
                            for f in range(filters):
                                target[w, base + f] = dout[n, oh, w + pad_left - j, f]
                        else:
                            for f in range(filters):
                                target[w, base + f] = 0


_shift_spread_serial = compile_kernel(_shift_spread)
_shift_spread_parallel = compile_kernel(_shift_spread, parallel=True)


def shift_spread(dout, kh, kw, pad_top, pad_left, dz, n_threads):
    """The adjoint of shift_sum (same arguments): dz[n, h, w, (i * kw + j) * filters + f] =
    dout[n, h + pad_top - i, w + pad_left - j, f], zeros where that lies outside dout."""
    launch(_shift_spread_serial, _shift_spread_parallel, n_threads, dout, kh, kw, pad_top, pad_left, dz)


def _add_bias(out, bias):
    n_rows, n_cols = out.shape
    for r in prange(n_rows):
        for c in range(n_cols):
            out[r, c] += bias[c]


_bias_serial = compile_kernel(_add_bias)
_bias_parallel = compile_kernel(_add_bias, parallel=True)


def add_bias(out, bias, n_threads):
    """out += bias on every row, in place; out (n_rows, n_cols), bias (n_cols,) of out's dtype."""
    launch(_bias_serial, _bias_parallel, n_threads, out, bias)


def _bias_act_pool(block, bias, activation, height, width, pool_h, pool_w, out, code):
    n_images, out_h, out_w, channels = out.shape
    has_bias = bias.shape[0] > 0
    for n in prange(n_images):
        for i in range(out_h):
            for j in range(out_w):
                # The window's first position starts the running maximum, in place in out.
                best = out[n, i, j]
                winner = code[n, i, j]
                first = (n * height + i * pool_h) * width + j * pool_w
                for c in range(channels):
                    best[c] = block[first, c] + bias[c] if has_bias else block[first, c]
                    winner[c] = 0
                for a in range(pool_h):
                    for b in range(pool_w):
                        k = a * pool_w + b
                        if k == 0:
                            continue
                        row = (n * height + i * pool_h + a) * width + j * pool_w + b
                        # Strict comparison: the first maximum in row-major order wins ties.
                        for c in range(channels):
                            z = block[row, c] + bias[c] if has_bias else block[row, c]
                            if z > best[c]:
                                best[c] = z
                                winner[c] = k
                if activation == 1:
                    for c in range(channels):
                        if not best[c] > 0:
                            best[c] = 0
                            winner[c] = -1


_pool_serial = compile_kernel(_bias_act_pool)
_pool_parallel = compile_kernel(_bias_act_pool, parallel=True)


def bias_act_pool(block, bias, activation, height, width, pool_h, pool_w, out, code, n_threads):
    """Bias, activation and non-overlapping max pooling of a block of convolution outputs.

    block (n_images * height * width, channels): the images' convolution outputs in row-major
    pixel order; bias (channels,) or empty; activation 0 (linear) or 1 (ReLU). out (n_images,
    out_h, out_w, channels) gets each pool_h x pool_w window's maximum of activation(block + bias)
    (windows at stride pool_h, pool_w from the top left; leftover rows and columns are not
    pooled), and code (int32) the window position (row-major) of its first maximum, or -1 where
    the gradient is zero (a ReLU output of 0).
    """
    launch(_pool_serial, _pool_parallel, n_threads, block, bias, activation, height, width, pool_h, pool_w, out, code)


def _unpool(dpooled, code, height, width, pool_h, pool_w, dblock, dbias):
    n_images, out_h, out_w, channels = dpooled.shape
    for r in prange(n_images * height * width):
        dblock[r] = 0
    for n in range(n_images):
        for i in range(out_h):
            for j in range(out_w):
                for c in range(channels):
                    k = code[n, i, j, c]
                    if k >= 0:
                        g = dpooled[n, i, j, c]
                        dblock[(n * height + i * pool_h + k // pool_w) * width + j * pool_w + k % pool_w, c] = g
                        dbias[c] += g


_unpool_serial = compile_kernel(_unpool)
_unpool_parallel = compile_kernel(_unpool, parallel=True)


def unpool(dpooled, code, height, width, pool_h, pool_w, dblock, dbias, n_threads):
    """The gradient of bias_act_pool's input block: dpooled (n_images, out_h, out_w, channels)
    goes to each window's coded position, zero elsewhere; dblock as bias_act_pool's block.

    dbias (channels,) float64 accumulates the gradients that pass (the bias' gradient), image
    by image in order whatever n_threads is (which only parallelises the zeroing).
    """
    launch(_unpool_serial, _unpool_parallel, n_threads, dpooled, code, height, width, pool_h, pool_w, dblock, dbias)


# Winograd F(2x2, 3x3): a 3x3 convolution's 2x2 output tile from a 4x4 input tile d as
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


# Tiles of a Winograd transform with any small matrices (the sub-pixel transposed convolution's,
# fastdl/ops/_subpixel.py). A grid (first, tile_step, pixel_step, tiles) along an axis places
# pixel i of tile t at first + t * tile_step + i * pixel_step.


@numba.njit(nogil=True, cache=True, inline="always")
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
