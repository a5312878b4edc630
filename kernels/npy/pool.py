"""Max-pooling, average-pooling and upsampling kernels (numpy reference); mirrors kernels/cpu/pool.py
and kernels/cy/pool.pyx."""

import numpy as np


def _cells(size, out_size, pool, stride, pad):
    """range of the window cells along one axis that fall on the image in some window.

    The others are padding in every window: skipped, so that a window far larger than the image
    ("same", 2**20 wide) costs what the image does.
    """
    return range(max(0, pad - (out_size - 1) * stride), min(pool, pad + size))


def _layout(shape, out_h, out_w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    """(rows, cols, top, left): the window cells that matter (_cells) and where the image starts in
    the padded array, whose row 0 and column 0 are cell (rows[0], cols[0]) of the first window."""
    _, h, w, _ = shape
    rows, cols = _cells(h, out_h, pool_h, stride_h, pad_top), _cells(w, out_w, pool_w, stride_w, pad_left)
    return rows, cols, pad_top - rows.start, pad_left - cols.start


def _padded(x, out_h, out_w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, fill=-np.inf):
    """x padded with `fill` (-inf: padded cells never win a maximum) to cover every window's cells
    that matter (see _layout)."""
    n, h, w, c = x.shape
    rows, cols, top, left = _layout(x.shape, out_h, out_w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)
    full_h = max((out_h - 1) * stride_h + len(rows), top + h)
    full_w = max((out_w - 1) * stride_w + len(cols), left + w)
    if full_h == h and full_w == w:
        return x
    padded = np.full((n, full_h, full_w, c), fill, dtype=x.dtype)
    padded[:, top : top + h, left : left + w] = x
    return padded


def _window_cells(padded, out_h, out_w, stride_h, stride_w, a, b):
    """The (n, out_h, out_w, c) view of window cell (a, b) of every window (counted in the padded
    array, from cell (rows[0], cols[0]) of _layout)."""
    return padded[:, a : a + (out_h - 1) * stride_h + 1 : stride_h, b : b + (out_w - 1) * stride_w + 1 : stride_w]


def max_pool2d_forward(x, out, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, n_threads):
    """Maximum of every pooling window of x (n, h, w, c) into out (n, out_h, out_w, c)."""
    out_h, out_w = out.shape[1], out.shape[2]
    padded = _padded(x, out_h, out_w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)
    rows, cols, _, _ = _layout(x.shape, out_h, out_w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)
    out[...] = -np.inf
    for a in range(len(rows)):
        for b in range(len(cols)):
            np.maximum(out, _window_cells(padded, out_h, out_w, stride_h, stride_w, a, b), out=out)


def _winners(x, out_h, out_w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    """(n, out_h, out_w, c) int64: each window's winner, its cell a * pool_w + b counted from the
    unclipped window's top-left corner: the first maximum, or the first NaN where it holds one."""
    n, h, w, c = x.shape
    padded = _padded(x, out_h, out_w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)
    inside = _padded(np.ones((n, h, w, 1), bool), out_h, out_w, pool_h, pool_w, stride_h, stride_w, pad_top,
                     pad_left, fill=False)
    rows, cols, _, _ = _layout(x.shape, out_h, out_w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)
    shape = (n, out_h, out_w, c)
    best = np.full(shape, -np.inf, dtype=x.dtype)
    winner = np.zeros(shape, dtype=np.int64)
    started = np.zeros(shape, dtype=bool)
    # Image cells in row-major window order: the first starts, then only a strictly larger value or
    # a NaN (where best is not NaN already) replaces the best: the first maximum wins, or the first
    # NaN (np.argmax's rule), as in the compiled kernels. Padded cells never take part.
    for a in rows:
        for b in cols:
            cells = _window_cells(padded, out_h, out_w, stride_h, stride_w, a - rows.start, b - cols.start)
            image_cell = _window_cells(inside, out_h, out_w, stride_h, stride_w, a - rows.start, b - cols.start)
            larger = (cells > best) | (np.isnan(cells) & ~np.isnan(best))
            take = image_cell & (larger | ~started)
            best[take] = cells[take]
            winner[take] = a * pool_w + b
            started |= image_cell
    return winner


def _scatter(winner, dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    """dx, overwritten: each dout value added to its window's winner cell."""
    n, h, w, c = dx.shape
    out_h, out_w = dout.shape[1], dout.shape[2]
    dx_padded = _padded(np.zeros_like(dx), out_h, out_w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                        fill=0)
    rows, cols, top, left = _layout(dx.shape, out_h, out_w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)
    # For one cell (a, b) the windows touch distinct positions, so += never collides; (a, b) from
    # the window's end adds each cell's windows in row-major order, as the compiled kernels do
    # (see avg_pool2d_backward).
    for a in reversed(rows):
        for b in reversed(cols):
            cells = _window_cells(dx_padded, out_h, out_w, stride_h, stride_w, a - rows.start, b - cols.start)
            cells += np.where(winner == a * pool_w + b, dout, 0)
    dx[...] = dx_padded[:, top : top + h, left : left + w]


def max_pool2d_backward(x, dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, n_threads):
    """dx (n, h, w, c), overwritten: each dout value added to the first maximum of its window (its
    first NaN where it holds one)."""
    window = (pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)
    _scatter(_winners(x, dout.shape[1], dout.shape[2], *window), dout, dx, *window)


def max_pool2d_forward_winners(x, out, winners, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, n_threads):
    """max_pool2d_forward, and each output's winner (the cell max_pool2d_backward gives the
    gradient to, a * pool_w + b from the unclipped window's top-left corner) into winners."""
    window = (pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)
    max_pool2d_forward(x, out, *window, n_threads)
    winners[...] = _winners(x, out.shape[1], out.shape[2], *window)


def max_pool2d_backward_winners(winners, dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                                n_threads):
    """max_pool2d_backward from the winners max_pool2d_forward_winners recorded, without x."""
    _scatter(winners, dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)


def _window_counts(out_h, out_w, h, w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, dtype):
    """(1, out_h, out_w, 1) array of dtype: how many image cells (not padding) each window holds."""
    rows = np.arange(out_h) * stride_h - pad_top
    cols = np.arange(out_w) * stride_w - pad_left
    count_h = np.minimum(rows + pool_h, h) - np.maximum(rows, 0)
    count_w = np.minimum(cols + pool_w, w) - np.maximum(cols, 0)
    return np.multiply.outer(count_h, count_w).astype(dtype)[None, :, :, None]


def avg_pool2d_forward(x, out, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, n_threads):
    """Mean of every pooling window of x (n, h, w, c) over its image cells into out (n, out_h, out_w, c).

    Padded cells neither add nor count (TensorFlow's "same"). Each window is summed from zero in
    row-major order in float64 (whatever the arrays' dtype), divided by its count in float64 and
    rounded once to out's dtype: the compiled kernels' bits (the padding's zeros, added in between,
    change no sum).
    """
    n, h, w, c = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    padded = _padded(x, out_h, out_w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, fill=0)
    rows, cols, _, _ = _layout(x.shape, out_h, out_w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)
    total = np.zeros(out.shape, dtype=np.float64)
    for a in range(len(rows)):
        for b in range(len(cols)):
            total += _window_cells(padded, out_h, out_w, stride_h, stride_w, a, b)
    total /= _window_counts(out_h, out_w, h, w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, np.float64)
    out[...] = total


def avg_pool2d_backward(dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, n_threads):
    """dx (n, h, w, c), overwritten: each window's dout divided by its count, added to its image cells.

    A cell gathers its windows' shares in row-major window order from zero, in the arrays' dtype, as
    the compiled kernels do (the same bits); a cell in no window gets 0.
    """
    n, h, w, c = dx.shape
    out_h, out_w = dout.shape[1], dout.shape[2]
    share = dout / _window_counts(out_h, out_w, h, w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                                  dout.dtype)
    dx_padded = _padded(np.zeros_like(dx), out_h, out_w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                        fill=0)
    rows, cols, top, left = _layout(dx.shape, out_h, out_w, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)
    # Window cell (a, b) of window i lies at row i * stride_h + a: for one padded cell, a falling
    # means i rising, so (a, b) from the window's end visits each cell's windows in row-major order.
    for a in reversed(range(len(rows))):
        for b in reversed(range(len(cols))):
            _window_cells(dx_padded, out_h, out_w, stride_h, stride_w, a, b)[...] += share
    dx[...] = dx_padded[:, top : top + h, left : left + w]


def upsample2d(x, out, size_h, size_w, n_threads):
    """Nearest-neighbour upsampling of x (n, h, w, c) into out (n, h * size_h, w * size_w, c)."""
    for a in range(size_h):
        for b in range(size_w):
            out[:, a::size_h, b::size_w] = x


def upsample2d_backward(dout, dx, size_h, size_w, n_threads):
    """dx (n, h, w, c), overwritten: the sum of each size_h x size_w block of dout.

    Summed in the compiled kernels' order (block rows outer, columns inner, from zero) in the
    arrays' dtype, so the sums are the same bits.
    """
    dx[...] = 0
    for a in range(size_h):
        for b in range(size_w):
            dx += dout[:, a::size_h, b::size_w]
