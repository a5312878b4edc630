"""Max-pooling, average-pooling and upsampling kernels (numba.cuda); mirrors kernels/cpu/pool.py and
kernels/npy/pool.py.

x, out, dout, dx are channels-last device arrays (n, h, w, c) of one float dtype; the window
arguments are Python ints (pool_geometry's first six values). Window (i, j) covers rows
i * stride_h - pad_top + [0, pool_h) and the matching columns, clipped to the image, so padded
cells never take part; every window holds at least one image cell.

The forward runs one thread per output element (channel fastest, so a warp reads neighbouring
channels). The backward runs one thread per input element, which gathers instead of scattering:
it visits the windows that contain its cell in row-major window order, finds each one's winner
as the CPU kernel does (row-major cells, strict comparison: the first maximum wins ties; a NaN
beats every number, the first NaN winning) and adds that window's dout when the winner is its own
cell. Each dx element is written by one thread only, so overlapping windows need no atomics, and
the additions happen in the CPU kernel's order (the same bits). A cell in no window (strides
larger than the window, or rows 'valid' drops) gets 0.

Average pooling runs as max pooling does: the forward one thread per output element (a float64
sum from zero in row-major window order, divided in float64 by the window's count of image cells
and rounded once to out's dtype, as the CPU kernels: padded cells neither add nor count), the
backward one thread per input element, which gathers its windows' shares (dout / count) in
row-major window order. The backward's counts and zero are read back from the thread's own dx
element, written as that element's dtype, so that its sums and quotients are in the arrays' dtype
as in the CPU kernels (the same bits).

Upsampling runs one thread per written element: the forward per element of out (a copy of its
source pixel), the backward per element of dx, which gathers its size_h x size_w block of dout
in the CPU kernels' order (block rows outer, columns inner) in the arrays' dtype, from a zero of
that dtype read back from its own dx element: the same bits as the CPU kernels, no atomics.
"""

from numba import cuda, float64

from ._launch import grid_1d, kernel, unravel


@cuda.jit(device=True)
def _clipped(start, size, limit):
    """[start, start + size) clipped to [0, limit): (first, stop)."""
    first = start if start > 0 else 0
    stop = start + size
    stop = stop if stop < limit else limit
    return first, stop


@kernel
def _max_pool2d_forward(x, out, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    index = cuda.grid(1)
    n_images, out_h, out_w, c = out.shape
    if index >= n_images * out_h * out_w * c:
        return
    n, i, j, ch = unravel(index, out_h, out_w, c)
    h0, h1 = _clipped(i * stride_h - pad_top, pool_h, x.shape[1])
    w0, w1 = _clipped(j * stride_w - pad_left, pool_w, x.shape[2])
    best = x[n, h0, w0, ch]
    for a in range(h0, h1):
        for b in range(w0, w1):
            v = x[n, a, b, ch]
            if v > best or v != v:  # as the CPU kernel's select: a NaN takes the maximum and keeps it
                best = v
    out[n, i, j, ch] = best


def max_pool2d_forward(x, out, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, n_threads):
    """Maximum of every pooling window of x (n, h, w, c) into out (n, out_h, out_w, c); one thread
    per output element. n_threads is unused."""
    if out.size:
        _max_pool2d_forward[grid_1d(out.size)](x, out, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)


@cuda.jit(device=True)
def _windows_over(cell, pad, pool, stride, n_windows):
    """(first, stop) of the windows along one axis whose unclipped span holds the cell: those i
    with i * stride - pad <= cell < i * stride - pad + pool, within [0, n_windows)."""
    reach = cell + pad  # >= 0
    low = reach - pool
    first = low // stride + 1 if low >= 0 else 0
    stop = reach // stride + 1
    stop = stop if stop < n_windows else n_windows
    return first, stop


@kernel
def _max_pool2d_backward(x, dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    index = cuda.grid(1)
    n_images, h, w, c = x.shape
    if index >= n_images * h * w * c:
        return
    out_h, out_w = dout.shape[1], dout.shape[2]
    n, row, col, ch = unravel(index, h, w, c)
    dx[n, row, col, ch] = 0
    i0, i1 = _windows_over(row, pad_top, pool_h, stride_h, out_h)
    j0, j1 = _windows_over(col, pad_left, pool_w, stride_w, out_w)
    for i in range(i0, i1):
        h0, h1 = _clipped(i * stride_h - pad_top, pool_h, h)
        for j in range(j0, j1):
            w0, w1 = _clipped(j * stride_w - pad_left, pool_w, w)
            # The window's winner, as the CPU kernel finds it: row-major cells, strict comparison,
            # and a NaN beats every number and nothing beats it (the first NaN wins).
            best = x[n, h0, w0, ch]
            winner_h = h0
            winner_w = w0
            for a in range(h0, h1):
                for b in range(w0, w1):
                    v = x[n, a, b, ch]
                    if v > best or (v != v and best == best):
                        best = v
                        winner_h = a
                        winner_w = b
            if winner_h == row and winner_w == col:
                dx[n, row, col, ch] += dout[n, i, j, ch]


def max_pool2d_backward(x, dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, n_threads):
    """dx (n, h, w, c), overwritten: each dout value added to the first maximum of its window.

    The first maximum in row-major window order takes a window's whole gradient; overlapping
    windows add up, in row-major window order. One thread per input element (the module docstring
    says how it avoids races). n_threads is unused.
    """
    if dx.size:
        _max_pool2d_backward[grid_1d(dx.size)](x, dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)


@kernel
def _avg_pool2d_forward(x, out, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    index = cuda.grid(1)
    n_images, out_h, out_w, c = out.shape
    if index >= n_images * out_h * out_w * c:
        return
    n, i, j, ch = unravel(index, out_h, out_w, c)
    h0, h1 = _clipped(i * stride_h - pad_top, pool_h, x.shape[1])
    w0, w1 = _clipped(j * stride_w - pad_left, pool_w, x.shape[2])
    # float64(v), not v * 1.0: on the simulator NumPy 2 keeps np.float32 * 1.0 a float32.
    total = float64(0)
    for a in range(h0, h1):
        for b in range(w0, w1):
            total += float64(x[n, a, b, ch])
    out[n, i, j, ch] = total / float64((h1 - h0) * (w1 - w0))


def avg_pool2d_forward(x, out, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, n_threads):
    """Mean of every pooling window of x (n, h, w, c) over its image cells into out (n, out_h, out_w, c);
    one thread per output element, summing in float64. n_threads is unused."""
    if out.size:
        _avg_pool2d_forward[grid_1d(out.size)](x, out, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)


@kernel
def _avg_pool2d_backward(dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    index = cuda.grid(1)
    n_images, h, w, c = dx.shape
    if index >= n_images * h * w * c:
        return
    out_h, out_w = dout.shape[1], dout.shape[2]
    n, row, col, ch = unravel(index, h, w, c)
    dx[n, row, col, ch] = 0
    total = dx[n, row, col, ch]  # a zero of dx's dtype
    i0, i1 = _windows_over(row, pad_top, pool_h, stride_h, out_h)
    j0, j1 = _windows_over(col, pad_left, pool_w, stride_w, out_w)
    for i in range(i0, i1):
        h0, h1 = _clipped(i * stride_h - pad_top, pool_h, h)
        for j in range(j0, j1):
            w0, w1 = _clipped(j * stride_w - pad_left, pool_w, w)
            dx[n, row, col, ch] = (h1 - h0) * (w1 - w0)
            total += dout[n, i, j, ch] / dx[n, row, col, ch]  # the share, in dx's dtype
    dx[n, row, col, ch] = total


def avg_pool2d_backward(dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, n_threads):
    """dx (n, h, w, c), overwritten: each window's dout divided by its count, added to its image cells.

    One thread per element of dx gathers its windows' shares in row-major window order (the module
    docstring says how the sums stay in the arrays' dtype). n_threads is unused.
    """
    if dx.size:
        _avg_pool2d_backward[grid_1d(dx.size)](dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)


@kernel
def _upsample2d(x, out, size_h, size_w):
    index = cuda.grid(1)
    n_images, out_h, out_w, c = out.shape
    if index >= n_images * out_h * out_w * c:
        return
    n, i, j, ch = unravel(index, out_h, out_w, c)
    out[n, i, j, ch] = x[n, i // size_h, j // size_w, ch]


def upsample2d(x, out, size_h, size_w, n_threads):
    """Nearest-neighbour upsampling of x (n, h, w, c) into out (n, h * size_h, w * size_w, c); one
    thread per output element. n_threads is unused."""
    if out.size:
        _upsample2d[grid_1d(out.size)](x, out, size_h, size_w)


@kernel
def _upsample2d_backward(dout, dx, size_h, size_w):
    index = cuda.grid(1)
    n_images, h, w, c = dx.shape
    if index >= n_images * h * w * c:
        return
    n, i, j, ch = unravel(index, h, w, c)
    dx[n, i, j, ch] = 0
    total = dx[n, i, j, ch]  # a zero of dx's dtype
    for a in range(size_h):
        for b in range(size_w):
            total += dout[n, i * size_h + a, j * size_w + b, ch]
    dx[n, i, j, ch] = total


def upsample2d_backward(dout, dx, size_h, size_w, n_threads):
    """dx (n, h, w, c), overwritten: the sum of each size_h x size_w block of dout.

    One thread per element of dx gathers its block (the module docstring says in which order).
    n_threads is unused.
    """
    if dx.size:
        _upsample2d_backward[grid_1d(dx.size)](dout, dx, size_h, size_w)
