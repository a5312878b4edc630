"""Max-pooling, average-pooling and upsampling kernels (Cython); mirrors kernels/cpu/pool.py and
kernels/npy/pool.py."""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.string cimport memset


def max_pool2d_forward(
    const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out, Py_ssize_t pool_h, Py_ssize_t pool_w,
    Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left, int n_threads,
):
    """Maximum of every pooling window of x (n, h, w, c) into out (n, out_h, out_w, c).

    Window (i, j) covers rows i * stride_h - pad_top + [0, pool_h) and the matching columns,
    clipped to the image; every window holds at least one image cell. A window holding a NaN has
    the maximum NaN, as np.maximum.
    """
    cdef Py_ssize_t n_images = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3]
    cdef Py_ssize_t out_h = out.shape[1], out_w = out.shape[2]
    cdef Py_ssize_t row, n, i, j, a, b, ch, h0, h1, w0, w1
    cdef const floating* src
    cdef floating* dst
    cdef floating v
    if n_images == 0 or out_h == 0 or out_w == 0 or c == 0:
        return
    with nogil:
        for row in prange(n_images * out_h, num_threads=n_threads, schedule="static"):
            n = row // out_h
            i = row - n * out_h
            # Windows are clipped to the image, so padded cells never take part.
            h0 = i * stride_h - pad_top
            h1 = min(h0 + pool_h, h)
            h0 = max(h0, 0)
            for j in range(out_w):
                w0 = j * stride_w - pad_left
                w1 = min(w0 + pool_w, w)
                w0 = max(w0, 0)
                dst = &out[n, i, j, 0]
                src = &x[n, h0, w0, 0]
                for ch in range(c):
                    dst[ch] = src[ch]
                for a in range(h0, h1):
                    # The window's first cell starts the maximum: the scan starts at its second.
                    for b in range(w0 + 1 if a == h0 else w0, w1):
                        src = &x[n, a, b, 0]
                        for ch in range(c):
                            v = src[ch]
                            # A select, not a branch, so the channel loop vectorises; a NaN takes
                            # the maximum and keeps it (no comparison with NaN is true), as np.maximum.
                            dst[ch] = v if (v > dst[ch]) | (v != v) else dst[ch]


cdef inline void _first_nan_wins(
    const floating* image, Py_ssize_t w, Py_ssize_t c, Py_ssize_t h0, Py_ssize_t h1, Py_ssize_t w0,
    Py_ssize_t w1, floating* best, Py_ssize_t* winner,
) noexcept nogil:
    """Make each channel's first NaN of the window (row-major) its winner, where best (the scan's
    maximum, which a NaN never beats unless it is the first cell) is not NaN already.

    The scan keeps one strict comparison per cell, which vectorises, and only flags a NaN; windows
    that hold one (rare) come here: a NaN is the maximum, the first one in row-major order winning,
    as np.argmax.
    """
    cdef Py_ssize_t a, b, ch, offset
    cdef floating v
    for a in range(h0, h1):
        for b in range(w0, w1):
            offset = (a * w + b) * c
            for ch in range(c):
                v = image[offset + ch]
                if v != v and best[ch] == best[ch]:
                    best[ch] = v
                    winner[ch] = offset + ch


def max_pool2d_backward(
    const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] dout, floating[:, :, :, ::1] dx,
    Py_ssize_t pool_h, Py_ssize_t pool_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
    Py_ssize_t pad_top, Py_ssize_t pad_left, int n_threads,
):
    """dx (n, h, w, c), overwritten: each dout value added to the first maximum of its window.

    The first maximum in row-major window order takes a window's whole gradient, the first NaN
    where the window holds one (its maximum is NaN); overlapping windows add up.
    """
    cdef Py_ssize_t n_images = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3]
    cdef Py_ssize_t out_h = dout.shape[1], out_w = dout.shape[2]
    cdef Py_ssize_t n, i, j, a, b, ch, h0, h1, w0, w1, offset
    cdef const floating* image
    cdef const floating* src
    cdef const floating* grad
    cdef floating* dimage
    cdef floating* best = NULL
    cdef Py_ssize_t* winner = NULL
    cdef floating v
    cdef bint nan_seen
    cdef int failed = 0
    cdef int* failed_ptr = &failed
    if n_images == 0 or h == 0 or w == 0 or c == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        # Per-thread scratch: the best value so far and its offset in the image, per channel.
        best = <floating*> malloc(c * sizeof(floating))
        winner = <Py_ssize_t*> malloc(c * sizeof(Py_ssize_t))
        if best == NULL or winner == NULL:
            failed_ptr[0] = 1
        # One image per task: overlapping windows of an image add into the same dx cells.
        for n in prange(n_images, schedule="static"):
            if best == NULL or winner == NULL:
                continue
            image = &x[n, 0, 0, 0]
            dimage = &dx[n, 0, 0, 0]
            memset(dimage, 0, h * w * c * sizeof(floating))
            for i in range(out_h):
                h0 = i * stride_h - pad_top
                h1 = min(h0 + pool_h, h)
                h0 = max(h0, 0)
                for j in range(out_w):
                    w0 = j * stride_w - pad_left
                    w1 = min(w0 + pool_w, w)
                    w0 = max(w0, 0)
                    offset = (h0 * w + w0) * c
                    for ch in range(c):
                        best[ch] = image[offset + ch]
                        winner[ch] = offset + ch
                    # Row-major window order and a strict comparison: the first maximum wins ties.
                    # The first cell starts the scan, which goes on from the second.
                    nan_seen = 0
                    for a in range(h0, h1):
                        for b in range(w0 + 1 if a == h0 else w0, w1):
                            offset = (a * w + b) * c
                            src = image + offset
                            for ch in range(c):
                                v = src[ch]
                                nan_seen = nan_seen | (v != v)
                                if v > best[ch]:
                                    best[ch] = v
                                    winner[ch] = offset + ch
                    if nan_seen:
                        _first_nan_wins(image, w, c, h0, h1, w0, w1, best, winner)
                    grad = &dout[n, i, j, 0]
                    for ch in range(c):
                        dimage[winner[ch]] += grad[ch]
        free(best)
        free(winner)
    if failed:
        raise MemoryError("max_pool2d_backward: no memory for the per-thread scratch")


def max_pool2d_forward_winners(
    const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out, unsigned char[:, :, :, ::1] winners,
    Py_ssize_t pool_h, Py_ssize_t pool_w, Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top,
    Py_ssize_t pad_left, int n_threads,
):
    """max_pool2d_forward (the same out), and each output's winner into winners (uint8, out's shape).

    A winner is the cell of its window, counted row-major from the unclipped window's top-left
    corner ((a - top) * pool_w + b - left), that max_pool2d_backward gives the gradient to: the
    first maximum in row-major order, or the first NaN. The window must have at most 256 cells.
    """
    cdef Py_ssize_t n_images = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3]
    cdef Py_ssize_t out_h = out.shape[1], out_w = out.shape[2]
    cdef Py_ssize_t row, n, i, j, a, b, ch, top, left, h0, h1, w0, w1
    cdef const floating* src
    cdef floating* dst
    cdef unsigned char* won
    cdef unsigned char cell
    cdef floating v, best
    if n_images == 0 or out_h == 0 or out_w == 0 or c == 0:
        return
    with nogil:
        for row in prange(n_images * out_h, num_threads=n_threads, schedule="static"):
            n = row // out_h
            i = row - n * out_h
            top = i * stride_h - pad_top
            h1 = min(top + pool_h, h)
            h0 = max(top, 0)
            for j in range(out_w):
                left = j * stride_w - pad_left
                w1 = min(left + pool_w, w)
                w0 = max(left, 0)
                dst = &out[n, i, j, 0]
                won = &winners[n, i, j, 0]
                src = &x[n, h0, w0, 0]
                cell = <unsigned char> ((h0 - top) * pool_w + w0 - left)
                for ch in range(c):
                    dst[ch] = src[ch]
                    won[ch] = cell
                for a in range(h0, h1):
                    for b in range(w0 + 1 if a == h0 else w0, w1):
                        src = &x[n, a, b, 0]
                        cell = <unsigned char> ((a - top) * pool_w + b - left)
                        for ch in range(c):
                            v = src[ch]
                            best = dst[ch]
                            # The winner as max_pool2d_backward finds it (strict comparison: the
                            # first maximum; the first NaN, which nothing replaces); the maximum by
                            # max_pool2d_forward's select, so out holds the same bits (NaNs included).
                            won[ch] = cell if (v > best) | ((v != v) & (best == best)) else won[ch]
                            dst[ch] = v if (v > best) | (v != v) else best


def max_pool2d_backward_winners(
    const unsigned char[:, :, :, ::1] winners, const floating[:, :, :, ::1] dout, floating[:, :, :, ::1] dx,
    Py_ssize_t pool_h, Py_ssize_t pool_w, Py_ssize_t stride_h, Py_ssize_t stride_w,
    Py_ssize_t pad_top, Py_ssize_t pad_left, int n_threads,
):
    """max_pool2d_backward (the same dx, bit for bit) from the winners max_pool2d_forward_winners
    recorded, without x: each dout value added to its window's winner; overlapping windows add up
    in row-major window order. A cell in no window gets 0."""
    cdef Py_ssize_t n_images = dx.shape[0], h = dx.shape[1], w = dx.shape[2], c = dx.shape[3]
    cdef Py_ssize_t out_h = dout.shape[1], out_w = dout.shape[2]
    cdef Py_ssize_t row, n, r, col, i, j, ch, i0, i1, j0, j1
    cdef int cell, cell_row  # int, not Py_ssize_t: the comparisons with winners vectorise narrower
    cdef const floating* grad
    cdef const unsigned char* won
    cdef floating* dst
    cdef floating zero = 0
    if n_images == 0 or h == 0 or w == 0 or c == 0:
        return
    with nogil:
        # One row of dx per task, each cell gathering from the windows that hold it (no two tasks
        # write one cell), in row-major window order from zero, as max_pool2d_backward's scatter
        # adds them: the same bits, as adding the +0 of a window the cell did not win changes no
        # sum (one that starts at +0 is never -0).
        for row in prange(n_images * h, num_threads=n_threads, schedule="static"):
            n = row // h
            r = row - n * h
            i0 = 0
            i1 = 0
            j0 = 0
            j1 = 0
            _windows_over(r, pad_top, pool_h, stride_h, out_h, &i0, &i1)
            for col in range(w):
                dst = &dx[n, r, col, 0]
                _windows_over(col, pad_left, pool_w, stride_w, out_w, &j0, &j1)
                if i1 - i0 == 1 and j1 - j0 == 1:
                    # The cell is in one window (windows that do not overlap): one pass, no sum.
                    cell = <int> ((r - (i0 * stride_h - pad_top)) * pool_w + col - (j0 * stride_w - pad_left))
                    grad = &dout[n, i0, j0, 0]
                    won = &winners[n, i0, j0, 0]
                    for ch in range(c):
                        dst[ch] = zero + (grad[ch] if won[ch] == cell else zero)
                    continue
                for ch in range(c):
                    dst[ch] = zero
                for i in range(i0, i1):
                    cell_row = <int> ((r - (i * stride_h - pad_top)) * pool_w)
                    for j in range(j0, j1):
                        cell = cell_row + <int> (col - (j * stride_w - pad_left))
                        grad = &dout[n, i, j, 0]
                        won = &winners[n, i, j, 0]
                        for ch in range(c):
                            dst[ch] += grad[ch] if won[ch] == cell else zero


cdef inline void _add_cells(const floating* image_row, Py_ssize_t c, Py_ssize_t w0, Py_ssize_t w1,
                            double* total) noexcept nogil:
    """total[ch] += image_row[b * c + ch] for b = w0 .. w1 - 1, in that order, in float64.

    Four cells a pass, then two, then one, each added after the other (the same bits as one at a
    time): fewer loads and stores of total (150x150 windows of 16 channels 1.6x faster; a 2x2
    window takes one pass a row, which measured faster here than two single-cell passes).
    """
    cdef Py_ssize_t b = w0, ch
    cdef const floating* src
    while b + 3 < w1:
        src = image_row + b * c
        for ch in range(c):
            total[ch] = total[ch] + src[ch] + src[c + ch] + src[2 * c + ch] + src[3 * c + ch]
        b += 4
    if b + 1 < w1:
        src = image_row + b * c
        for ch in range(c):
            total[ch] = total[ch] + src[ch] + src[c + ch]
        b += 2
    if b < w1:
        src = image_row + b * c
        for ch in range(c):
            total[ch] += src[ch]


def avg_pool2d_forward(
    const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out, Py_ssize_t pool_h, Py_ssize_t pool_w,
    Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left, int n_threads,
):
    """Mean of every pooling window of x (n, h, w, c) over its image cells into out (n, out_h, out_w, c).

    Window (i, j) covers rows i * stride_h - pad_top + [0, pool_h) and the matching columns,
    clipped to the image (padded cells neither add nor count, as TensorFlow's "same"); each is
    summed from zero in row-major order in float64 (whatever the arrays' dtype), divided by its
    cell count in float64 and rounded once to out's dtype.
    """
    cdef Py_ssize_t n_images = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3]
    cdef Py_ssize_t out_h = out.shape[1], out_w = out.shape[2]
    cdef Py_ssize_t row, n, i, j, a, ch, h0, h1, w0, w1
    cdef const floating* src
    cdef floating* dst
    cdef double* total = NULL
    cdef double count
    cdef int failed = 0
    cdef int* failed_ptr = &failed
    if n_images == 0 or out_h == 0 or out_w == 0 or c == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        # Per-thread float64 sums, whatever x's dtype: a float32 sum of a 150x150 window rounds
        # 22,500 times (relative error 2e-6 against 6e-8 for one rounding at the end).
        total = <double*> malloc(c * sizeof(double))
        if total == NULL:
            failed_ptr[0] = 1
        for row in prange(n_images * out_h, schedule="static"):
            if total == NULL:
                continue
            n = row // out_h
            i = row - n * out_h
            # Windows are clipped to the image: padded cells neither add nor count.
            h0 = i * stride_h - pad_top
            h1 = min(h0 + pool_h, h)
            h0 = max(h0, 0)
            for j in range(out_w):
                w0 = j * stride_w - pad_left
                w1 = min(w0 + pool_w, w)
                w0 = max(w0, 0)
                for ch in range(c):
                    total[ch] = 0
                for a in range(h0, h1):
                    _add_cells(&x[n, a, 0, 0], c, w0, w1, total)
                count = <double> ((h1 - h0) * (w1 - w0))
                dst = &out[n, i, j, 0]
                for ch in range(c):
                    dst[ch] = <floating> (total[ch] / count)
        free(total)
    if failed:
        raise MemoryError("avg_pool2d_forward: no memory for the per-thread sums")


cdef inline void _windows_over(Py_ssize_t cell, Py_ssize_t pad, Py_ssize_t pool, Py_ssize_t stride,
                               Py_ssize_t n_windows, Py_ssize_t* first, Py_ssize_t* stop) noexcept nogil:
    """[first, stop) of the windows along one axis whose span holds the cell: those i with
    i * stride - pad <= cell < i * stride - pad + pool, within [0, n_windows)."""
    cdef Py_ssize_t reach = cell + pad
    cdef Py_ssize_t low = reach - pool
    first[0] = low // stride + 1 if low >= 0 else 0
    stop[0] = min(reach // stride + 1, n_windows)


def avg_pool2d_backward(
    const floating[:, :, :, ::1] dout, floating[:, :, :, ::1] dx, Py_ssize_t pool_h, Py_ssize_t pool_w,
    Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left, int n_threads,
):
    """dx (n, h, w, c), overwritten: each window's dout divided by its count, added to its image cells.

    Each cell sums its windows' shares (dout / count, rounded to the arrays' dtype) from zero in
    row-major window order, as the Numba and cuda kernels do (the same bits); a cell in no window
    (strides larger than the window, or rows "valid" drops) gets 0.
    """
    cdef Py_ssize_t n_images = dx.shape[0], h = dx.shape[1], w = dx.shape[2], c = dx.shape[3]
    cdef Py_ssize_t out_h = dout.shape[1], out_w = dout.shape[2]
    cdef Py_ssize_t row, n, r, col, i, j, ch, i0, i1, j0, j1, count_h
    cdef const floating* grad
    cdef floating* dst
    cdef floating count
    if n_images == 0 or h == 0 or w == 0 or c == 0:
        return
    with nogil:
        # One row of dx per task, each cell gathering from the windows that hold it: no two tasks
        # write one cell, and every cell adds its shares in row-major window order.
        for row in prange(n_images * h, num_threads=n_threads, schedule="static"):
            n = row // h
            r = row - n * h
            i0 = 0
            i1 = 0
            j0 = 0
            j1 = 0
            _windows_over(r, pad_top, pool_h, stride_h, out_h, &i0, &i1)
            for col in range(w):
                dst = &dx[n, r, col, 0]
                for ch in range(c):
                    dst[ch] = 0
                _windows_over(col, pad_left, pool_w, stride_w, out_w, &j0, &j1)
                for i in range(i0, i1):
                    count_h = min(i * stride_h - pad_top + pool_h, h) - max(i * stride_h - pad_top, 0)
                    for j in range(j0, j1):
                        count = <floating> (count_h * (min(j * stride_w - pad_left + pool_w, w)
                                                       - max(j * stride_w - pad_left, 0)))
                        grad = &dout[n, i, j, 0]
                        for ch in range(c):
                            dst[ch] += grad[ch] / count


def upsample2d(
    const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out, Py_ssize_t size_h, Py_ssize_t size_w,
    int n_threads,
):
    """Nearest-neighbour upsampling of x (n, h, w, c) into out (n, h * size_h, w * size_w, c).

    out[n, i, j, c] = x[n, i // size_h, j // size_w, c] (Keras' UpSampling2D).
    """
    cdef Py_ssize_t n_images = x.shape[0], c = x.shape[3]
    cdef Py_ssize_t out_h = out.shape[1], out_w = out.shape[2]
    cdef Py_ssize_t row, n, i, j, ch
    cdef const floating* src
    cdef floating* dst
    if n_images == 0 or out_h == 0 or out_w == 0 or c == 0:
        return
    with nogil:
        for row in prange(n_images * out_h, num_threads=n_threads, schedule="static"):
            n = row // out_h
            i = row - n * out_h
            for j in range(out_w):
                src = &x[n, i // size_h, j // size_w, 0]
                dst = &out[n, i, j, 0]
                for ch in range(c):
                    dst[ch] = src[ch]


def upsample2d_backward(
    const floating[:, :, :, ::1] dout, floating[:, :, :, ::1] dx, Py_ssize_t size_h, Py_ssize_t size_w,
    int n_threads,
):
    """dx (n, h, w, c), overwritten: the sum of each size_h x size_w block of dout.

    dout is (n, h * size_h, w * size_w, c); each block is summed in the arrays' dtype from zero,
    block rows outer and columns inner, as the Numba and cuda kernels do (the same bits).
    """
    cdef Py_ssize_t n_images = dx.shape[0], h = dx.shape[1], w = dx.shape[2], c = dx.shape[3]
    cdef Py_ssize_t row, n, i, j, a, b, ch
    cdef const floating* src
    cdef floating* dst
    if n_images == 0 or h == 0 or w == 0 or c == 0:
        return
    with nogil:
        # One row of dx per task: each dx cell gathers its own block, so no two tasks share a cell.
        for row in prange(n_images * h, num_threads=n_threads, schedule="static"):
            n = row // h
            i = row - n * h
            for j in range(w):
                dst = &dx[n, i, j, 0]
                for ch in range(c):
                    dst[ch] = 0
                for a in range(size_h):
                    for b in range(size_w):
                        src = &dout[n, i * size_h + a, j * size_w + b, 0]
                        for ch in range(c):
                            dst[ch] += src[ch]
