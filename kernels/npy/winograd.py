"""Winograd transform kernels (numpy reference); mirrors kernels/cpu/winograd.py and kernels/cy/winograd.pyx."""

import numpy as np


def winograd_input(x, pad_top, pad_left, tiles_h, tiles_w, out, n_threads):
    """Winograd F(2x2, 3x3) input tiles: out[4 a + b, t] = (B^T d B)[a, b] for the 4x4 window d of
    tile t (image, row, column in order) with top-left corner (2 row - pad_top, 2 column -
    pad_left), zeros outside x. x (n, height, width, channels); out (16, n * tiles_h * tiles_w,
    channels)."""
    n_images, height, width, channels = x.shape
    top, bottom = pad_top, max(0, 2 * tiles_h + 2 - height - pad_top)
    left, right = pad_left, max(0, 2 * tiles_w + 2 - width - pad_left)
    padded = np.pad(x, ((0, 0), (max(top, 0), bottom), (max(left, 0), right), (0, 0)))
    padded = padded[:, max(-top, 0):, max(-left, 0):]  # a negative padding crops
    d = [[padded[:, a : a + 2 * tiles_h : 2, b : b + 2 * tiles_w : 2] for b in range(4)] for a in range(4)]
    rows = [[d[0][b] - d[2][b], d[1][b] + d[2][b], d[2][b] - d[1][b], d[1][b] - d[3][b]] for b in range(4)]
    for a in range(4):
        t = [rows[b][a] for b in range(4)]
        for b, v in enumerate((t[0] - t[2], t[1] + t[2], t[2] - t[1], t[1] - t[3])):
            out[4 * a + b] = v.reshape(-1, channels)


def winograd_output(m, tiles_h, tiles_w, out, n_threads):
    """Winograd F(2x2, 3x3) output tiles: out[image, 2 row + i, 2 column + j] = (A^T m_t A)[i, j]
    for tile t of m (16, n * tiles_h * tiles_w, channels), cropped to out (n, out_h, out_w,
    channels)."""
    n_images, out_h, out_w, channels = out.shape
    m = m.reshape(4, 4, n_images, tiles_h, tiles_w, channels)
    s = (m[0] + m[1] + m[2], m[1] - m[2] - m[3])  # A^T m: (row i, column b)
    full = np.empty((n_images, 2 * tiles_h, 2 * tiles_w, channels), out.dtype)
    for i in range(2):
        full[:, i::2, 0::2] = s[i][0] + s[i][1] + s[i][2]
        full[:, i::2, 1::2] = s[i][1] - s[i][2] - s[i][3]
    out[...] = full[:, :out_h, :out_w]


def winograd_output_grad(dout, tiles_h, tiles_w, out, n_threads):
    """The adjoint of winograd_output: out[4 a + b, t] = (A dy_t A^T)[a, b] for the 2x2 tile dy_t
    of dout (n, out_h, out_w, channels), zeros past its edge; out (16, n * tiles_h * tiles_w,
    channels)."""
    n_images, out_h, out_w, channels = dout.shape
    full = np.zeros((n_images, 2 * tiles_h, 2 * tiles_w, channels), dout.dtype)
    full[:, :out_h, :out_w] = dout
    dy = [[full[:, i::2, j::2] for j in range(2)] for i in range(2)]
    rows = [(dy[0][j], dy[0][j] + dy[1][j], dy[0][j] - dy[1][j], -dy[1][j]) for j in range(2)]  # A dy
    for a in range(4):
        u0, u1 = rows[0][a], rows[1][a]
        for b, v in enumerate((u0, u0 + u1, u0 - u1, -u1)):  # (A dy) A^T
            out[4 * a + b] = v.reshape(-1, channels)


# Tiles of a Winograd transform with any small matrices (the sub-pixel transposed convolution's,
# fastdl/ops/_subpixel.py). A grid (first, tile_step, pixel_step, tiles) along an axis places
# pixel i of tile t at first + t * tile_step + i * pixel_step.


def _grid_positions(grid, size, window):
    """(positions (tiles, window), inside (tiles, window)) of a grid along an axis of `size` pixels."""
    first, tile_step, pixel_step, tiles = (int(v) for v in grid)
    positions = first + tile_step * np.arange(tiles)[:, None] + pixel_step * np.arange(window)[None, :]
    inside = (positions >= 0) & (positions < size)
    return np.where(inside, positions, 0), inside


def tile_gather(x, left_y, left_x, grid_y, grid_x, out, n_threads):
    """Transformed tiles: out[a ax + b, t] = sum over i, j of left_y[a, i] left_x[b, j] x[n, h_i, w_j]
    for tile t = (n, ty, tx) in order, its window's pixels h_i, w_j on grid_y, grid_x (int arrays
    (first, tile_step, pixel_step, tiles)), zeros outside x. x (n, height, width, channels);
    left_y (ay, window_h), left_x (ax, window_w); out (ay * ax, n * tiles_y * tiles_x, channels)."""
    n_images, height, width, channels = x.shape
    rows, rows_in = _grid_positions(grid_y, height, left_y.shape[1])
    cols, cols_in = _grid_positions(grid_x, width, left_x.shape[1])
    # (n, tiles_y, window_h, tiles_x, window_w, channels), zeros outside x: selected, not masked by
    # multiplying, which would spread an inf or NaN at row or column 0 (where the outside
    # positions point) to every edge tile as NaN.
    windows = x[:, rows[:, :, None, None], cols[None, None, :, :]]
    windows = np.where((rows_in[:, :, None, None] & cols_in[None, None, :, :])[None, ..., None], windows, 0)
    tiles = np.einsum("ai,bj,nyixjc->abnyxc", left_y, left_x, windows)
    out[...] = tiles.reshape(out.shape)


def tile_scatter(m, right_y, right_x, grid_y, grid_x, out, accumulate, bias, activation, n_threads):
    """The tiles back in place: out[n, h_i, w_j] (+)= sum over a, b of right_y[i, a] right_x[j, b]
    m[a ax + b, t] for tile t = (n, ty, tx), pixels on grid_y, grid_x as in tile_gather, those
    outside out dropped. Without accumulate, tiles must not overlap, and each pixel written gets
    bias (channels,) added (an empty bias adds nothing) and, for activation 1, the ReLU. m (ay *
    ax, n * tiles_y * tiles_x, channels); right_y (window_h, ay), right_x (window_w, ax); out (n,
    height, width, channels)."""
    n_images, height, width, channels = out.shape
    rows, rows_in = _grid_positions(grid_y, height, right_y.shape[0])
    cols, cols_in = _grid_positions(grid_x, width, right_x.shape[0])
    ay, ax = right_y.shape[1], right_x.shape[1]
    m = m.reshape(ay, ax, n_images, rows.shape[0], cols.shape[0], channels)
    pixels = np.einsum("ia,jb,abnyxc->nyixjc", right_y, right_x, m)
    inside = rows_in[:, :, None, None] & cols_in[None, None, :, :]
    h = np.broadcast_to(rows[:, :, None, None], inside.shape)[inside]
    w = np.broadcast_to(cols[None, None, :, :], inside.shape)[inside]
    values = pixels[:, inside]  # (n, inside pixels, channels)
    if accumulate:
        np.add.at(out, (slice(None), h, w), values)
        return
    out[:, h, w] = values + bias if bias.shape[0] else values
    if activation == 1:
        out[:, h, w] = np.maximum(out[:, h, w], 0)
