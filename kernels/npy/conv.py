"""Convolution kernels (numpy reference); mirrors kernels/cpu/conv.py and kernels/cy/conv.pyx."""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _pads(size, kernel, stride, pad_before, out_size):
    """(before, after) zero padding that makes every window of the output lie inside the array."""
    return pad_before, max(0, (out_size - 1) * stride + kernel - size - pad_before)


def im2col(x, cols, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w, n_threads):
    """Gather the (kh, kw) patches of x into the rows of cols, zeros where a patch leaves x."""
    n_images, height, width, channels = x.shape
    padded = np.pad(x, ((0, 0), _pads(height, kh, stride_h, pad_top, out_h),
                        _pads(width, kw, stride_w, pad_left, out_w), (0, 0)))
    windows = sliding_window_view(padded, (kh, kw), axis=(1, 2))  # (n, h, w, c, kh, kw)
    windows = windows[:, : (out_h - 1) * stride_h + 1 : stride_h, : (out_w - 1) * stride_w + 1 : stride_w]
    cols[...] = windows.transpose(0, 1, 2, 4, 5, 3).reshape(cols.shape)


def conv_direct(x, kernel_matrix, kh, kw, stride_h, stride_w, out_h, out_w, out, n_threads):
    """out = im2col(x) @ kernel_matrix for an already padded x (the reference builds the patch matrix)."""
    cols = np.empty((out.shape[0], kernel_matrix.shape[0]), x.dtype)
    im2col(x, cols, kh, kw, stride_h, stride_w, 0, 0, out_h, out_w, n_threads)
    np.dot(cols, kernel_matrix, out=out)

def col2im(cols, dx, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w, n_threads):
    """dx = the sum, over patches, of each row of cols put back where im2col took it from."""
    n_images, height, width, channels = dx.shape
    before_h, after_h = _pads(height, kh, stride_h, pad_top, out_h)
    before_w, after_w = _pads(width, kw, stride_w, pad_left, out_w)
    padded = np.zeros((n_images, height + before_h + after_h, width + before_w + after_w, channels), cols.dtype)
    patches = cols.reshape(n_images, out_h, out_w, kh, kw, channels)
    for i in range(kh):
        for j in range(kw):
            padded[:, i : i + (out_h - 1) * stride_h + 1 : stride_h,
                   j : j + (out_w - 1) * stride_w + 1 : stride_w] += patches[:, :, :, i, j]
    dx[...] = padded[:, before_h : before_h + height, before_w : before_w + width]


def _tap_blocks(kh, kw, pad_top, pad_left, z_shape, out_shape):
    """(out index, z index) per tap (i, j): the block of outputs that tap reaches from inside z,
    and the block of z's per-tap products that it adds there."""
    _, height, width, _ = z_shape
    _, out_h, out_w, filters = out_shape

    def outputs(tap, pad, size, out_size):  # o with 0 <= o - pad + tap < size
        first = max(0, pad - tap)
        return slice(first, max(first, min(out_size, size + pad - tap)))

    def inputs(o, tap, pad):
        return slice(o.start - pad + tap, o.stop - pad + tap)

    for i in range(kh):
        rows = outputs(i, pad_top, height, out_h)
        for j in range(kw):
            cols = outputs(j, pad_left, width, out_w)
            tap = (i * kw + j) * filters
            yield ((slice(None), rows, cols),
                   (slice(None), inputs(rows, i, pad_top), inputs(cols, j, pad_left), slice(tap, tap + filters)))


def shift_sum(z, kh, kw, pad_top, pad_left, out, n_threads):
    """out[n, oh, ow, f] = the sum over taps (i, j) of z[n, oh - pad_top + i, ow - pad_left + j,
    (i * kw + j) * filters + f], terms outside z dropped."""
    out[...] = 0
    for to, source in _tap_blocks(kh, kw, pad_top, pad_left, z.shape, out.shape):
        out[to] += z[source]


def shift_spread(dout, kh, kw, pad_top, pad_left, dz, n_threads):
    """The adjoint of shift_sum: dz[n, h, w, (i * kw + j) * filters + f] = dout[n, h + pad_top - i,
    w + pad_left - j, f], zeros outside dout."""
    dz[...] = 0
    for source, to in _tap_blocks(kh, kw, pad_top, pad_left, dz.shape, dout.shape):
        dz[to] = dout[source]


def add_bias(out, bias, n_threads):
    """out += bias on every row, in place."""
    out += bias


def bias_act_pool(block, bias, activation, height, width, pool_h, pool_w, out, code, n_threads):
    """Bias, activation and non-overlapping max pooling of a block of convolution outputs; see
    kernels/cpu/conv.py. Windows are compared in row-major order, the first maximum winning."""
    n_images, out_h, out_w, channels = out.shape
    z = block.reshape(n_images, height, width, channels)[:, : out_h * pool_h, : out_w * pool_w]
    if bias.shape[0]:
        z = z + bias
    # (n, out_h, out_w, channels, window position)
    windows = z.reshape(n_images, out_h, pool_h, out_w, pool_w, channels).transpose(0, 1, 3, 5, 2, 4)
    windows = windows.reshape(n_images, out_h, out_w, channels, pool_h * pool_w)
    code[...] = np.argmax(windows, axis=-1)  # the first maximum
    out[...] = np.take_along_axis(windows, code[..., None].astype(np.intp), axis=-1)[..., 0]
    if activation == 1:
        dead = ~(out > 0)
        out[dead] = 0
        code[dead] = -1


def unpool(dpooled, code, height, width, pool_h, pool_w, dblock, dbias, n_threads):
    """The gradient of bias_act_pool's input block, and the bias' gradient added to dbias
    (float64); see kernels/cpu/conv.py."""
    dblock[...] = 0
    n, i, j, c = np.nonzero(code >= 0)
    k = code[n, i, j, c]
    rows = (n * height + i * pool_h + k // pool_w) * width + j * pool_w + k % pool_w
    dblock[rows, c] = dpooled[n, i, j, c]
    dbias += np.where(code >= 0, dpooled, 0).reshape(-1, dpooled.shape[3]).sum(axis=0, dtype=np.float64)


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
    # (n, tiles_y, window_h, tiles_x, window_w, channels), zeros outside x
    windows = x[:, rows[:, :, None, None], cols[None, None, :, :]]
    windows = windows * (rows_in[:, :, None, None] & cols_in[None, None, :, :])[None, ..., None]
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
