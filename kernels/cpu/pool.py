"""Max-pooling, average-pooling and upsampling kernels (Numba); mirrors kernels/cy/pool.pyx and
kernels/npy/pool.py."""

import numpy as np
from numba import prange

from ._jit import compile_kernel, helper, launch


def _max_pool2d_forward(x, out, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    n_images, h, w, c = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for row in prange(n_images * out_h):
        n = row // out_h
        i = row - n * out_h
        # Windows are clipped to the image, so padded cells never take part.
        h0 = max(i * stride_h - pad_top, 0)
        h1 = min(i * stride_h - pad_top + pool_h, h)
        for j in range(out_w):
            w0 = max(j * stride_w - pad_left, 0)
            w1 = min(j * stride_w - pad_left + pool_w, w)
            for ch in range(c):
                out[n, i, j, ch] = x[n, h0, w0, ch]
            for a in range(h0, h1):
                # The window's first cell starts the maximum: the scan starts at its second.
                for b in range(w0 + 1 if a == h0 else w0, w1):
                    for ch in range(c):
                        v = x[n, a, b, ch]
                        # A select, not a branch, so the channel loop vectorises; a NaN takes the
                        # maximum and keeps it (no comparison with NaN is true), as np.maximum.
                        out[n, i, j, ch] = v if (v > out[n, i, j, ch]) | (v != v) else out[n, i, j, ch]


# exact: fastmath may assume there is no NaN and drop the `v != v` test: a NaN would lose to the
# window's numbers, unlike np.maximum and the Cython kernel (measured: no slower without it).
_forward_serial = compile_kernel(_max_pool2d_forward, exact=True)
_forward_parallel = compile_kernel(_max_pool2d_forward, parallel=True, exact=True)


def max_pool2d_forward(x, out, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, n_threads):
    """Maximum of every pooling window of x (n, h, w, c) into out (n, out_h, out_w, c).

    Window (i, j) covers rows i * stride_h - pad_top + [0, pool_h) and the matching columns,
    clipped to the image; every window holds at least one image cell. A window holding a NaN has
    the maximum NaN, as np.maximum.
    """
    launch(_forward_serial, _forward_parallel, n_threads,
           x, out, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)


@helper()
def _first_nan_wins(image, h0, h1, w0, w1, best, winner_h, winner_w):
    """Make each channel's first NaN of the window (row-major) its winner, where best (the scan's
    maximum, which a NaN never beats unless it is the first cell) is not NaN already.

    The scan keeps one strict comparison per cell and only flags a NaN; windows that hold one
    (rare) come here: a NaN is the maximum, the first one in row-major order winning, as np.argmax.
    """
    for a in range(h0, h1):
        for b in range(w0, w1):
            for ch in range(image.shape[2]):
                v = image[a, b, ch]
                if v != v and best[ch] == best[ch]:
                    best[ch] = v
                    winner_h[ch] = a
                    winner_w[ch] = b


def _max_pool2d_backward(x, dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    n_images, h, w, c = x.shape
    out_h, out_w = dout.shape[1], dout.shape[2]
    # One image per task: overlapping windows of an image add into the same dx cells.
    for n in prange(n_images):
        best = np.empty(c, dtype=x.dtype)
        winner_h = np.empty(c, dtype=np.int64)
        winner_w = np.empty(c, dtype=np.int64)
        for a in range(h):
            for b in range(w):
                for ch in range(c):
                    dx[n, a, b, ch] = 0
        for i in range(out_h):
            h0 = max(i * stride_h - pad_top, 0)
            h1 = min(i * stride_h - pad_top + pool_h, h)
            for j in range(out_w):
                w0 = max(j * stride_w - pad_left, 0)
                w1 = min(j * stride_w - pad_left + pool_w, w)
                for ch in range(c):
                    best[ch] = x[n, h0, w0, ch]
                    winner_h[ch] = h0
                    winner_w[ch] = w0
                # Row-major window order and a strict comparison: the first maximum wins ties. The
                # first cell starts the scan, which goes on from the second.
                nan_seen = False
                for a in range(h0, h1):
                    for b in range(w0 + 1 if a == h0 else w0, w1):
                        for ch in range(c):
                            v = x[n, a, b, ch]
                            nan_seen |= v != v
                            if v > best[ch]:
                                best[ch] = v
                                winner_h[ch] = a
                                winner_w[ch] = b
                if nan_seen:
                    _first_nan_wins(x[n], h0, h1, w0, w1, best, winner_h, winner_w)
                for ch in range(c):
                    dx[n, winner_h[ch], winner_w[ch], ch] += dout[n, i, j, ch]


# exact: fastmath may assume there is no NaN and drop nan_seen, giving the gradient to a number.
_backward_serial = compile_kernel(_max_pool2d_backward, exact=True)
_backward_parallel = compile_kernel(_max_pool2d_backward, parallel=True, exact=True)


def max_pool2d_backward(x, dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, n_threads):
    """dx (n, h, w, c), overwritten: each dout value added to the first maximum of its window.

    The first maximum in row-major window order takes a window's whole gradient, the first NaN
    where the window holds one (its maximum is NaN); overlapping windows add up.
    """
    launch(_backward_serial, _backward_parallel, n_threads,
           x, dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)


def _max_pool2d_forward_winners(x, out, winners, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    n_images, h, w, c = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for row in prange(n_images * out_h):
        n = row // out_h
        i = row - n * out_h
        top = i * stride_h - pad_top
        h0 = max(top, 0)
        h1 = min(top + pool_h, h)
        for j in range(out_w):
            left = j * stride_w - pad_left
            w0 = max(left, 0)
            w1 = min(left + pool_w, w)
            first = winners.dtype.type((h0 - top) * pool_w + w0 - left)
            for ch in range(c):
                out[n, i, j, ch] = x[n, h0, w0, ch]
                winners[n, i, j, ch] = first
            for a in range(h0, h1):
                for b in range(w0 + 1 if a == h0 else w0, w1):
                    cell = winners.dtype.type((a - top) * pool_w + b - left)
                    for ch in range(c):
                        v = x[n, a, b, ch]
                        best = out[n, i, j, ch]
                        # The winner as max_pool2d_backward finds it (strict comparison: the first
                        # maximum; the first NaN, which nothing replaces); the maximum by
                        # max_pool2d_forward's select, so out holds the same bits (NaNs included).
                        wins = (v > best) | ((v != v) & (best == best))
                        out[n, i, j, ch] = v if (v > best) | (v != v) else best
                        winners[n, i, j, ch] = cell if wins else winners[n, i, j, ch]


# exact: fastmath may assume there is no NaN, and the winners must follow the NaN rule.
_forward_winners_serial = compile_kernel(_max_pool2d_forward_winners, exact=True)
_forward_winners_parallel = compile_kernel(_max_pool2d_forward_winners, parallel=True, exact=True)


def max_pool2d_forward_winners(x, out, winners, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, n_threads):
    """max_pool2d_forward (the same out), and each output's winner into winners (uint8, out's shape).

    A winner is the cell of its window, counted row-major from the unclipped window's top-left
    corner ((a - top) * pool_w + b - left), that max_pool2d_backward gives the gradient to: the
    first maximum in row-major order, or the first NaN. The window must have at most 256 cells.
    """
    launch(_forward_winners_serial, _forward_winners_parallel, n_threads,
           x, out, winners, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)


def _max_pool2d_backward_winners(winners, dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    n_images, h, w, c = dx.shape
    out_h, out_w = dout.shape[1], dout.shape[2]
    zero = dx.dtype.type(0)
    # One row of dx per task, each cell gathering from the windows that hold it (no two tasks
    # write one cell), in row-major window order from zero, as max_pool2d_backward's scatter adds
    # them: the same bits, as adding the +0 of a window the cell did not win changes no sum (one
    # that starts at +0 is never -0).
    for row in prange(n_images * h):
        n = row // h
        r = row - n * h
        i0, i1 = _windows_over(r, pad_top, pool_h, stride_h, out_h)
        for col in range(w):
            j0, j1 = _windows_over(col, pad_left, pool_w, stride_w, out_w)
            if i1 - i0 == 1 and j1 - j0 == 1:
                # The cell is in one window (windows that do not overlap): one pass, no sum.
                cell = (r - (i0 * stride_h - pad_top)) * pool_w + col - (j0 * stride_w - pad_left)
                for ch in range(c):
                    dx[n, r, col, ch] = zero + (dout[n, i0, j0, ch] if winners[n, i0, j0, ch] == cell else zero)
                continue
            for ch in range(c):
                dx[n, r, col, ch] = zero
            for i in range(i0, i1):
                cell_row = (r - (i * stride_h - pad_top)) * pool_w
                for j in range(j0, j1):
                    cell = cell_row + col - (j * stride_w - pad_left)
                    for ch in range(c):
                        dx[n, r, col, ch] += dout[n, i, j, ch] if winners[n, i, j, ch] == cell else zero


# exact: fastmath could drop the zeros' additions or reorder the sums, away from the bits above.
_backward_winners_serial = compile_kernel(_max_pool2d_backward_winners, exact=True)
_backward_winners_parallel = compile_kernel(_max_pool2d_backward_winners, parallel=True, exact=True)


def max_pool2d_backward_winners(winners, dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left,
                                n_threads):
    """max_pool2d_backward (the same dx, bit for bit) from the winners max_pool2d_forward_winners
    recorded, without x: each dout value added to its window's winner; overlapping windows add up
    in row-major window order. A cell in no window gets 0."""
    launch(_backward_winners_serial, _backward_winners_parallel, n_threads,
           winners, dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)


def _avg_pool2d_forward(x, out, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    n_images, h, w, c = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for row in prange(n_images * out_h):
        n = row // out_h
        i = row - n * out_h
        # float64 sums, whatever x's dtype: a float32 sum of a 150x150 window rounds 22,500 times
        # (relative error 2e-6 against 6e-8 for one rounding at the end).
        total = np.empty(c, dtype=np.float64)
        # Windows are clipped to the image: padded cells neither add nor count.
        h0 = max(i * stride_h - pad_top, 0)
        h1 = min(i * stride_h - pad_top + pool_h, h)
        for j in range(out_w):
            w0 = max(j * stride_w - pad_left, 0)
            w1 = min(j * stride_w - pad_left + pool_w, w)
            for ch in range(c):
                total[ch] = 0.0
            for a in range(h0, h1):
                # Four cells a pass, added one after the other (the same bits as one at a time):
                # a quarter of the loads and stores of total (150x150 windows of 16 channels 1.8x
                # faster); the rest one at a time (a two-cell pass measured slower on 2x2 windows).
                b = w0
                while b + 3 < w1:
                    for ch in range(c):
                        total[ch] = (total[ch] + x[n, a, b, ch] + x[n, a, b + 1, ch] + x[n, a, b + 2, ch]
                                     + x[n, a, b + 3, ch])
                    b += 4
                for b in range(b, w1):
                    for ch in range(c):
                        total[ch] += x[n, a, b, ch]
            count = np.float64((h1 - h0) * (w1 - w0))
            for ch in range(c):
                out[n, i, j, ch] = total[ch] / count


# exact: never fastmath, which could reorder the sums or divide by a reciprocal, away from the
# Cython and cuda kernels' bits.
_avg_forward_serial = compile_kernel(_avg_pool2d_forward, exact=True)
_avg_forward_parallel = compile_kernel(_avg_pool2d_forward, parallel=True, exact=True)


def avg_pool2d_forward(x, out, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, n_threads):
    """Mean of every pooling window of x (n, h, w, c) over its image cells into out (n, out_h, out_w, c).

    Window (i, j) covers rows i * stride_h - pad_top + [0, pool_h) and the matching columns,
    clipped to the image (padded cells neither add nor count, as TensorFlow's "same"); each is
    summed from zero in row-major order in float64 (whatever the arrays' dtype), divided by its
    cell count in float64 and rounded once to out's dtype.
    """
    launch(_avg_forward_serial, _avg_forward_parallel, n_threads,
           x, out, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)


@helper()
def _windows_over(cell, pad, pool, stride, n_windows):
    """(first, stop) of the windows along one axis whose span holds the cell: those i with
    i * stride - pad <= cell < i * stride - pad + pool, within [0, n_windows)."""
    reach = cell + pad
    low = reach - pool
    first = low // stride + 1 if low >= 0 else 0
    return first, min(reach // stride + 1, n_windows)


def _avg_pool2d_backward(dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left):
    n_images, h, w, c = dx.shape
    out_h, out_w = dout.shape[1], dout.shape[2]
    # One row of dx per task, each cell gathering from the windows that hold it: no two tasks
    # write one cell, and every cell adds its shares in row-major window order.
    for row in prange(n_images * h):
        n = row // h
        r = row - n * h
        i0, i1 = _windows_over(r, pad_top, pool_h, stride_h, out_h)
        for col in range(w):
            for ch in range(c):
                dx[n, r, col, ch] = 0
            j0, j1 = _windows_over(col, pad_left, pool_w, stride_w, out_w)
            for i in range(i0, i1):
                count_h = min(i * stride_h - pad_top + pool_h, h) - max(i * stride_h - pad_top, 0)
                for j in range(j0, j1):
                    count_w = min(j * stride_w - pad_left + pool_w, w) - max(j * stride_w - pad_left, 0)
                    count = dx.dtype.type(count_h * count_w)
                    for ch in range(c):
                        dx[n, r, col, ch] += dout[n, i, j, ch] / count


_avg_backward_serial = compile_kernel(_avg_pool2d_backward, exact=True)
_avg_backward_parallel = compile_kernel(_avg_pool2d_backward, parallel=True, exact=True)


def avg_pool2d_backward(dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left, n_threads):
    """dx (n, h, w, c), overwritten: each window's dout divided by its count, added to its image cells.

    Each cell sums its windows' shares (dout / count, rounded to the arrays' dtype) from zero in
    row-major window order, as the Cython and cuda kernels do (the same bits); a cell in no window
    (strides larger than the window, or rows "valid" drops) gets 0.
    """
    launch(_avg_backward_serial, _avg_backward_parallel, n_threads,
           dout, dx, pool_h, pool_w, stride_h, stride_w, pad_top, pad_left)


def _upsample2d(x, out, size_h, size_w):
    n_images, h, w, c = x.shape
    out_h = h * size_h
    for row in prange(n_images * out_h):
        n = row // out_h
        i = row - n * out_h
        src_i = i // size_h
        for j in range(w * size_w):
            src_j = j // size_w
            for ch in range(c):
                out[n, i, j, ch] = x[n, src_i, src_j, ch]


_upsample_serial = compile_kernel(_upsample2d)
_upsample_parallel = compile_kernel(_upsample2d, parallel=True)


def upsample2d(x, out, size_h, size_w, n_threads):
    """Nearest-neighbour upsampling of x (n, h, w, c) into out (n, h * size_h, w * size_w, c).

    out[n, i, j, c] = x[n, i // size_h, j // size_w, c] (Keras' UpSampling2D).
    """
    launch(_upsample_serial, _upsample_parallel, n_threads, x, out, size_h, size_w)


def _upsample2d_backward(dout, dx, size_h, size_w):
    n_images, h, w, c = dx.shape
    # One row of dx per task: each dx cell gathers its own block, so no two tasks share a cell.
    for row in prange(n_images * h):
        n = row // h
        i = row - n * h
        for j in range(w):
            for ch in range(c):
                dx[n, i, j, ch] = 0
            for a in range(size_h):
                for b in range(size_w):
                    for ch in range(c):
                        dx[n, i, j, ch] += dout[n, i * size_h + a, j * size_w + b, ch]


# exact: never fastmath, which could reorder the block sums away from the Cython and cuda order.
_upsample_backward_serial = compile_kernel(_upsample2d_backward, exact=True)
_upsample_backward_parallel = compile_kernel(_upsample2d_backward, parallel=True, exact=True)


def upsample2d_backward(dout, dx, size_h, size_w, n_threads):
    """dx (n, h, w, c), overwritten: the sum of each size_h x size_w block of dout.

    dout is (n, h * size_h, w * size_w, c); each block is summed in the arrays' dtype from zero,
    block rows outer and columns inner, as the Cython and cuda kernels do (the same bits).
    """
    launch(_upsample_backward_serial, _upsample_backward_parallel, n_threads, dout, dx, size_h, size_w)
