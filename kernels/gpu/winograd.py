"""Winograd transform kernels (numba.cuda); mirrors kernels/cpu/winograd.py and kernels/npy/winograd.py.

One thread per (tile, channel) for the F(2x2, 3x3) transforms and per element written for the
general tiles; the accumulating tile_scatter gathers the terms of its own element in the CPU
kernel's order, so nothing races and no atomics are needed.
"""

from numba import cuda

from ._launch import grid_1d, kernel, unravel


# ----------------------------------------------------------------------------------------------
# Winograd F(2x2, 3x3): a 3x3 convolution's 2x2 output tile from a 4x4 input tile d as
# A^T [(G g G^T) * (B^T d B)] A. One thread per (tile, channel), the CPU kernel's operations in
# its order.


@cuda.jit(device=True)
def _pixel(x, n, h, w, c, zero):
    """x[n, h, w, c], or zero outside x."""
    if 0 <= h < x.shape[1] and 0 <= w < x.shape[2]:
        return x[n, h, w, c]
    return zero


@cuda.jit(device=True)
def _bt_column(x, n, top, w, c, zero, a):
    """Row a of B^T d for the column of the window at w (rows top, ..., top + 3)."""
    if a == 0:
        return _pixel(x, n, top, w, c, zero) - _pixel(x, n, top + 2, w, c, zero)
    if a == 1:
        return _pixel(x, n, top + 1, w, c, zero) + _pixel(x, n, top + 2, w, c, zero)
    if a == 2:
        return _pixel(x, n, top + 2, w, c, zero) - _pixel(x, n, top + 1, w, c, zero)
    return _pixel(x, n, top + 1, w, c, zero) - _pixel(x, n, top + 3, w, c, zero)


@cuda.jit(device=True)
def _tile_place(tile, tiles_h, tiles_w):
    """(image, tile row, tile column) of tile number `tile`, tiles in (image, row, column) order."""
    return tile // (tiles_w * tiles_h), (tile // tiles_w) % tiles_h, tile % tiles_w


@kernel
def _winograd_input(x, pad_top, pad_left, tiles_h, tiles_w, out):
    index = cuda.grid(1)
    _, n_tiles, channels = out.shape
    if index >= n_tiles * channels:
        return
    tile, c = index // channels, index % channels
    n, ty, tx = _tile_place(tile, tiles_h, tiles_w)
    out[0, tile, c] = 0
    zero = out[0, tile, c]  # a zero of x's dtype
    top, left = 2 * ty - pad_top, 2 * tx - pad_left
    for a in range(4):  # (B^T d) B, row a
        t0 = _bt_column(x, n, top, left, c, zero, a)
        t1 = _bt_column(x, n, top, left + 1, c, zero, a)
        t2 = _bt_column(x, n, top, left + 2, c, zero, a)
        t3 = _bt_column(x, n, top, left + 3, c, zero, a)
        out[4 * a, tile, c] = t0 - t2
        out[4 * a + 1, tile, c] = t1 + t2
        out[4 * a + 2, tile, c] = t2 - t1
        out[4 * a + 3, tile, c] = t1 - t3


def winograd_input(x, pad_top, pad_left, tiles_h, tiles_w, out, n_threads):
    """Winograd F(2x2, 3x3) input tiles: out[4 a + b, t] = (B^T d B)[a, b] for the 4x4 window d of
    tile t (image, row, column in order) with top-left corner (2 row - pad_top, 2 column -
    pad_left), zeros outside x (a negative padding crops). x (n, height, width, channels); out
    (16, n * tiles_h * tiles_w, channels) of x's dtype."""
    if out.size:
        _winograd_input[grid_1d(out.shape[1] * out.shape[2])](x, pad_top, pad_left, tiles_h, tiles_w, out)


@cuda.jit(device=True)
def _at_row(m, tile, c, i, b):
    """(A^T m)[i, b] of the tile."""
    if i == 0:
        return m[b, tile, c] + m[4 + b, tile, c] + m[8 + b, tile, c]
    return m[4 + b, tile, c] - m[8 + b, tile, c] - m[12 + b, tile, c]


@kernel
def _winograd_output(m, tiles_h, tiles_w, out):
    index = cuda.grid(1)
    _, n_tiles, channels = m.shape
    if index >= n_tiles * channels:
        return
    _, out_h, out_w, _ = out.shape
    tile, c = index // channels, index % channels
    n, ty, tx = _tile_place(tile, tiles_h, tiles_w)
    for i in range(2):  # (A^T m) A, cropped to out
        h = 2 * ty + i
        if h >= out_h:
            continue
        w = 2 * tx
        s0 = _at_row(m, tile, c, i, 0)
        s1 = _at_row(m, tile, c, i, 1)
        s2 = _at_row(m, tile, c, i, 2)
        s3 = _at_row(m, tile, c, i, 3)
        out[n, h, w, c] = s0 + s1 + s2
        if w + 1 < out_w:
            out[n, h, w + 1, c] = s1 - s2 - s3


def winograd_output(m, tiles_h, tiles_w, out, n_threads):
    """Winograd F(2x2, 3x3) output tiles: out[image, 2 row + i, 2 column + j] = (A^T m_t A)[i, j]
    for tile t of m (16, n * tiles_h * tiles_w, channels), cropped to out (n, out_h, out_w,
    channels) of m's dtype."""
    if m.size:
        _winograd_output[grid_1d(m.shape[1] * m.shape[2])](m, tiles_h, tiles_w, out)


@kernel
def _winograd_output_grad(dout, tiles_h, tiles_w, out):
    index = cuda.grid(1)
    _, n_tiles, channels = out.shape
    if index >= n_tiles * channels:
        return
    tile, c = index // channels, index % channels
    n, ty, tx = _tile_place(tile, tiles_h, tiles_w)
    out[0, tile, c] = 0
    zero = out[0, tile, c]  # a zero of dout's dtype
    # The 2x2 tile dy, zeros past the edge (dout's shape is the output's, so _pixel crops it).
    dy0 = _pixel(dout, n, 2 * ty, 2 * tx, c, zero)
    dy1 = _pixel(dout, n, 2 * ty, 2 * tx + 1, c, zero)
    dy2 = _pixel(dout, n, 2 * ty + 1, 2 * tx, c, zero)
    dy3 = _pixel(dout, n, 2 * ty + 1, 2 * tx + 1, c, zero)
    for i in range(4):  # u = A dy, row i; out row i = u A^T
        if i == 0:
            u0, u1 = dy0, dy1
        elif i == 1:
            u0, u1 = dy0 + dy2, dy1 + dy3
        elif i == 2:
            u0, u1 = dy0 - dy2, dy1 - dy3
        else:
            u0, u1 = -dy2, -dy3
        out[4 * i, tile, c] = u0
        out[4 * i + 1, tile, c] = u0 + u1
        out[4 * i + 2, tile, c] = u0 - u1
        out[4 * i + 3, tile, c] = -u1


def winograd_output_grad(dout, tiles_h, tiles_w, out, n_threads):
    """The adjoint of winograd_output: out[4 a + b, t] = (A dy_t A^T)[a, b] for the 2x2 tile dy_t
    of dout (n, out_h, out_w, channels), zeros past its edge; out (16, n * tiles_h * tiles_w,
    channels) of dout's dtype."""
    if out.size:
        _winograd_output_grad[grid_1d(out.shape[1] * out.shape[2])](dout, tiles_h, tiles_w, out)


# ----------------------------------------------------------------------------------------------
# Tiles of a Winograd transform with any small matrices (the sub-pixel transposed convolution's,
# fastdl/ops/_subpixel.py). A grid (first, tile_step, pixel_step, tiles) along an axis places
# pixel i of tile t at first + t * tile_step + i * pixel_step.


@kernel
def _tile_gather(x, left_y, left_x, grid_y, grid_x, out):
    index = cuda.grid(1)
    if index >= out.size:
        return
    _, n_tiles, channels = out.shape
    height, width = x.shape[1], x.shape[2]
    window_h = left_y.shape[1]
    ax, window_w = left_x.shape
    tiles_y, tiles_x = grid_y[3], grid_x[3]
    c = index % channels
    tile = (index // channels) % n_tiles
    p = index // (channels * n_tiles)
    a, b = p // ax, p % ax
    tx = tile % tiles_x
    ty = (tile // tiles_x) % tiles_y
    n = tile // (tiles_x * tiles_y)
    out[p, tile, c] = 0
    zero = out[p, tile, c]  # a zero of x's dtype
    # As on the CPU: row (a, j) = sum over i of left_y[a, i] x[h_i, w_j], then the sum over j of
    # left_x[b, j] row (a, j); zero weights and pixels outside x skipped, each sum started with its
    # first term.
    total = zero
    added_j = False
    for j in range(window_w):
        weight = left_x[b, j]
        if weight == 0:
            continue
        w = grid_x[0] + tx * grid_x[1] + j * grid_x[2]
        row = zero
        if 0 <= w < width:
            added_i = False
            for i in range(window_h):
                h = grid_y[0] + ty * grid_y[1] + i * grid_y[2]
                weight_y = left_y[a, i]
                if weight_y != 0 and 0 <= h < height:
                    term = weight_y * x[n, h, w, c]
                    if added_i:
                        row += term
                    else:
                        row = term
                    added_i = True
        term = weight * row
        if added_j:
            total += term
        else:
            total = term
        added_j = True
    out[p, tile, c] = total


def tile_gather(x, left_y, left_x, grid_y, grid_x, out, n_threads):
    """Transformed tiles: out[a ax + b, t] = sum over i, j of left_y[a, i] left_x[b, j] x[n, h_i, w_j]
    for tile t = (n, ty, tx) in order, its window's pixels h_i, w_j on grid_y, grid_x (int64 device
    arrays (first, tile_step, pixel_step, tiles)), zeros outside x. x (n, height, width, channels);
    left_y (ay, window_h), left_x (ax, window_w) and out (ay * ax, n * tiles_y * tiles_x, channels)
    of x's dtype. One thread per element of out."""
    if out.size:
        _tile_gather[grid_1d(out.size)](x, left_y, left_x, grid_y, grid_x, out)


@kernel
def _tile_scatter(m, right_y, right_x, grid_y, grid_x, out, accumulate, bias, activation):
    index = cuda.grid(1)
    if index >= out.size:
        return
    _, height, width, channels = out.shape
    window_h, ay = right_y.shape
    window_w, ax = right_x.shape
    tiles_y, tiles_x = grid_y[3], grid_x[3]
    has_bias = bias.shape[0] > 0
    n, h, w, c = unravel(index, height, width, channels)
    total = out[n, h, w, c]  # kept where no tile covers the pixel
    out[n, h, w, c] = 0
    zero = out[n, h, w, c]  # a zero of out's dtype
    # The tiles covering the pixel in the CPU kernel's order (ty, i, tx, j); without accumulate
    # each one overwrites the pixel (tiles must not overlap then: at most one covers it).
    for ty in range(tiles_y):
        for i in range(window_h):
            if grid_y[0] + ty * grid_y[1] + i * grid_y[2] != h:
                continue
            for tx in range(tiles_x):
                for j in range(window_w):
                    if grid_x[0] + tx * grid_x[1] + j * grid_x[2] != w:
                        continue
                    tile = (n * tiles_y + ty) * tiles_x + tx
                    added = accumulate
                    if not accumulate:
                        if has_bias:
                            total = bias[c]
                            added = True
                        else:
                            total = zero
                    for b in range(ax):
                        weight = right_x[j, b]
                        if weight == 0:
                            continue
                        column = zero  # right_y's row i times the tile's column b
                        added_a = False
                        for a in range(ay):
                            weight_y = right_y[i, a]
                            if weight_y != 0:
                                term = weight_y * m[a * ax + b, tile, c]
                                if added_a:
                                    column += term
                                else:
                                    column = term
                                added_a = True
                        term = weight * column
                        if added:
                            total += term
                        else:
                            total = term
                        added = True
                    if activation == 1 and not accumulate and total < 0:
                        total = zero
    out[n, h, w, c] = total


def tile_scatter(m, right_y, right_x, grid_y, grid_x, out, accumulate, bias, activation, n_threads):
    """The tiles back in place: out[n, h_i, w_j] (+)= sum over a, b of right_y[i, a] right_x[j, b]
    m[a ax + b, t] for tile t = (n, ty, tx), pixels on grid_y, grid_x as in tile_gather, those
    outside out dropped. Without accumulate, tiles must not overlap, and each pixel written starts
    from bias (channels,) (zeros for an empty bias) and ends, for activation 1, with the ReLU.
    m (ay * ax, n * tiles_y * tiles_x, channels); right_y (window_h, ay), right_x (window_w, ax),
    out (n, height, width, channels) and bias of m's dtype. One thread per element of out gathers
    the tiles covering it (overlapping tiles accumulate without races)."""
    if out.size:
        _tile_scatter[grid_1d(out.size)](m, right_y, right_x, grid_y, grid_x, out, accumulate, bias, activation)
