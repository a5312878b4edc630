"""Convolution kernels (Cython); mirrors kernels/cpu/conv.py and kernels/npy/conv.py."""

from cython cimport floating
from cython.parallel cimport prange


def im2col(
    const floating[:, :, :, ::1] x, floating[:, ::1] cols, Py_ssize_t kh, Py_ssize_t kw,
    Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
    Py_ssize_t out_h, Py_ssize_t out_w, int n_threads,
):
    """Gather the (kh, kw) patches of x into the rows of cols, zeros where a patch leaves x.

    x: (n, height, width, channels); cols: (n * out_h * out_w, kh * kw * channels), same dtype,
    row (n, oh, ow) holding the patch whose top-left corner is (oh * stride_h - pad_top,
    ow * stride_w - pad_left), its columns in (i, j, channel) order like a Keras kernel's rows.
    """
    cdef Py_ssize_t n_images = x.shape[0], height = x.shape[1], width = x.shape[2]
    cdef Py_ssize_t channels = x.shape[3]
    cdef Py_ssize_t n, oh, ow, i, j, c, h, w, top, left, row, base
    if n_images == 0:
        return
    with nogil:
        for n in prange(n_images, num_threads=n_threads, schedule="static"):
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
                                    cols[row, base + c] = 0


cdef inline void _direct_quad(
    const floating* x, const floating* weights, Py_ssize_t width, Py_ssize_t channels, Py_ssize_t kh,
    Py_ssize_t kw, Py_ssize_t stride_w, Py_ssize_t top, Py_ssize_t left, Py_ssize_t filters, Py_ssize_t first,
    floating* out,
) noexcept nogil:
    """Filters first..first + 15 of 4 output pixels in a row, whose windows start at (top, left +
    p * stride_w) of image x: 4 x 16 sums in vector registers, each weight row loaded once."""
    cdef floating acc[4][16]
    cdef Py_ssize_t i, j, c, p, lane, step = stride_w * channels
    cdef const floating* pixel
    cdef const floating* row
    cdef floating v0, v1, v2, v3
    for p in range(4):
        for lane in range(16):
            acc[p][lane] = 0
    for i in range(kh):
        for j in range(kw):
            pixel = x + ((top + i) * width + left + j) * channels
            row = weights + ((i * kw + j) * channels) * filters + first
            for c in range(channels):
                v0 = pixel[c]
                v1 = pixel[step + c]
                v2 = pixel[2 * step + c]
                v3 = pixel[3 * step + c]
                for lane in range(16):
                    acc[0][lane] += v0 * row[c * filters + lane]
                    acc[1][lane] += v1 * row[c * filters + lane]
                    acc[2][lane] += v2 * row[c * filters + lane]
                    acc[3][lane] += v3 * row[c * filters + lane]
    for p in range(4):
        for lane in range(16):
            out[p * filters + first + lane] = acc[p][lane]


cdef inline floating _direct_one(
    const floating* x, const floating* weights, Py_ssize_t width, Py_ssize_t channels, Py_ssize_t kh,
    Py_ssize_t kw, Py_ssize_t top, Py_ssize_t left, Py_ssize_t filters, Py_ssize_t f,
) noexcept nogil:
    """Filter f of one output pixel, its taps added in _direct_quad's order."""
    cdef floating total = 0
    cdef Py_ssize_t i, j, c
    for i in range(kh):
        for j in range(kw):
            for c in range(channels):
                total += x[((top + i) * width + left + j) * channels + c] * weights[((i * kw + j) * channels + c) * filters + f]
    return total


def conv_direct(
    const floating[:, :, :, ::1] x, const floating[:, ::1] kernel_matrix, Py_ssize_t kh, Py_ssize_t kw,
    Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t out_h, Py_ssize_t out_w, floating[:, ::1] out,
    int n_threads,
):
    """out = im2col(x) @ kernel_matrix without the patch matrix, for kernels of few taps.

    x (n, height, width, channels), already padded: every window lies inside it; kernel_matrix
    (kh * kw * channels, filters), rows in im2col's (i, j, channel) order; out (n * out_h * out_w,
    filters). Four pixels of a row and 16 filters are summed at a time in registers; each sum adds
    its taps in (i, j, channel) order, whichever pixel or filter it is.
    """
    cdef Py_ssize_t n_images = x.shape[0], width = x.shape[2], channels = x.shape[3]
    cdef Py_ssize_t filters = kernel_matrix.shape[1], full = filters - filters % 16
    cdef Py_ssize_t n, oh, ow, f, p, row, quads = out_w - out_w % 4
    cdef const floating* image
    if n_images == 0 or filters == 0:
        return
    with nogil:
        for n in prange(n_images, num_threads=n_threads, schedule="static"):
            image = &x[n, 0, 0, 0]
            for oh in range(out_h):
                row = (n * out_h + oh) * out_w
                for ow in range(0, quads, 4):
                    for f in range(0, full, 16):
                        _direct_quad(image, &kernel_matrix[0, 0], width, channels, kh, kw, stride_w, oh * stride_h,
                                     ow * stride_w, filters, f, &out[row + ow, 0])
                    for f in range(full, filters):
                        for p in range(4):
                            out[row + ow + p, f] = _direct_one(image, &kernel_matrix[0, 0], width, channels, kh, kw,
                                                               oh * stride_h, (ow + p) * stride_w, filters, f)
                for ow in range(quads, out_w):
                    for f in range(filters):
                        out[row + ow, f] = _direct_one(image, &kernel_matrix[0, 0], width, channels, kh, kw,
                                                       oh * stride_h, ow * stride_w, filters, f)

def col2im(
    const floating[:, ::1] cols, floating[:, :, :, ::1] dx, Py_ssize_t kh, Py_ssize_t kw,
    Py_ssize_t stride_h, Py_ssize_t stride_w, Py_ssize_t pad_top, Py_ssize_t pad_left,
    Py_ssize_t out_h, Py_ssize_t out_w, int n_threads,
):
    """dx = the sum, over patches, of each row of cols put back where im2col took it from.

    The adjoint of im2col (same arguments); dx is overwritten, entries in the padding are dropped.
    """
    cdef Py_ssize_t n_images = dx.shape[0], height = dx.shape[1], width = dx.shape[2]
    cdef Py_ssize_t channels = dx.shape[3]
    cdef Py_ssize_t n, oh, ow, i, j, c, h, w, top, left, row, base
    if n_images == 0:
        return
    with nogil:
        for n in prange(n_images, num_threads=n_threads, schedule="static"):
            # Each image is one task: its patches overlap only each other, so no two threads collide.
            for h in range(height):
                for w in range(width):
                    for c in range(channels):
                        dx[n, h, w, c] = 0
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


# The outputs o, first <= o < stop, whose input o + offset lies in 0..size - 1 (first <= stop).
# Two functions, not one writing through pointers: prange makes a variable private only where
# the loop assigns it.
cdef inline Py_ssize_t _tap_first(Py_ssize_t offset) noexcept nogil:
    return -offset if offset < 0 else 0


cdef inline Py_ssize_t _tap_stop(Py_ssize_t offset, Py_ssize_t size, Py_ssize_t out_size) noexcept nogil:
    cdef Py_ssize_t first = _tap_first(offset), stop = size - offset
    if stop > out_size:
        stop = out_size
    return first if stop < first else stop


def shift_sum(
    const floating[:, :, :, ::1] z, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pad_top, Py_ssize_t pad_left,
    floating[:, :, :, ::1] out, int n_threads,
):
    """A stride-1 convolution from its per-tap products: out[n, oh, ow, f] = the sum over taps
    (i, j), in that order, of z[n, oh - pad_top + i, ow - pad_left + j, (i * kw + j) * filters + f],
    terms outside z dropped (the zero padding). z (n, height, width, kh * kw * filters), each
    input pixel times every tap of the kernel; out (n, out_h, out_w, filters) of z's dtype."""
    cdef Py_ssize_t n_images = z.shape[0], height = z.shape[1], width = z.shape[2], taps = z.shape[3]
    cdef Py_ssize_t out_h = out.shape[1], out_w = out.shape[2], filters = out.shape[3]
    cdef Py_ssize_t n, oh, ow, i, j, f, h, first, stop
    cdef floating* target
    cdef const floating* source
    if n_images == 0:
        return
    with nogil:
        for n in prange(n_images, num_threads=n_threads, schedule="static"):
            # A row of outputs at a time, tap by tap: each output still adds its taps in (i, j) order.
            for oh in range(out_h):
                target = &out[n, oh, 0, 0]
                for f in range(out_w * filters):
                    target[f] = 0
                for i in range(kh):
                    h = oh - pad_top + i
                    if h < 0 or h >= height:
                        continue
                    for j in range(kw):
                        first, stop = _tap_first(j - pad_left), _tap_stop(j - pad_left, width, out_w)
                        if first == stop:
                            continue
                        source = &z[n, h, first + j - pad_left, (i * kw + j) * filters]
                        for ow in range(stop - first):
                            for f in range(filters):
                                target[(first + ow) * filters + f] += source[ow * taps + f]


def shift_spread(
    const floating[:, :, :, ::1] dout, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pad_top, Py_ssize_t pad_left,
    floating[:, :, :, ::1] dz, int n_threads,
):
    """The adjoint of shift_sum (same arguments): dz[n, h, w, (i * kw + j) * filters + f] =
    dout[n, h + pad_top - i, w + pad_left - j, f], zeros where that lies outside dout."""
    cdef Py_ssize_t n_images = dz.shape[0], height = dz.shape[1], width = dz.shape[2], taps = dz.shape[3]
    cdef Py_ssize_t out_h = dout.shape[1], out_w = dout.shape[2], filters = dout.shape[3]
    cdef Py_ssize_t n, oh, w, i, j, f, h, first, stop, tap
    cdef floating* target
    cdef const floating* source
    if n_images == 0:
        return
    with nogil:
        for n in prange(n_images, num_threads=n_threads, schedule="static"):
            for h in range(height):
                target = &dz[n, h, 0, 0]
                for i in range(kh):
                    oh = h + pad_top - i
                    for j in range(kw):
                        # Pixels w read dout's w + pad_left - j: those in first..stop - 1 lie inside it.
                        tap = (i * kw + j) * filters
                        first, stop = 0, 0
                        if 0 <= oh < out_h:
                            first, stop = _tap_first(pad_left - j), _tap_stop(pad_left - j, out_w, width)
                        if first < stop:
                            source = &dout[n, oh, first + pad_left - j, 0]
                        for w in range(width):
                            if first <= w < stop:
                                for f in range(filters):
                                    target[w * taps + tap + f] = source[(w - first) * filters + f]
                            else:
                                for f in range(filters):
                                    target[w * taps + tap + f] = 0


def bias_act_pool(
    const floating[:, ::1] block, const floating[::1] bias, int activation, Py_ssize_t height,
    Py_ssize_t width, Py_ssize_t pool_h, Py_ssize_t pool_w, floating[:, :, :, ::1] out,
    int[:, :, :, ::1] code, int n_threads,
):
    """Bias, activation and non-overlapping max pooling of a block of convolution outputs.

    block (n_images * height * width, channels): the images' convolution outputs in row-major
    pixel order; bias (channels,) or empty; activation 0 (linear) or 1 (ReLU). out (n_images,
    out_h, out_w, channels) gets each pool_h x pool_w window's maximum of activation(block + bias)
    (windows at stride pool_h, pool_w from the top left; leftover rows and columns are not
    pooled), and code the window position (row-major) of its first maximum, or -1 where the
    gradient is zero (a ReLU output of 0, or NaN: NaN stays NaN). Works along the channels, which
    vectorises.
    """
    cdef Py_ssize_t n_images = out.shape[0], out_h = out.shape[1], out_w = out.shape[2]
    cdef Py_ssize_t channels = out.shape[3]
    cdef Py_ssize_t n, i, j, a, b, c
    cdef int k
    cdef bint has_bias = bias.shape[0] > 0
    cdef bint added
    cdef const floating* row
    cdef floating* best
    cdef int* winner
    cdef floating z
    cdef bint nan_seen
    if n_images == 0 or channels == 0:
        return
    with nogil:
        for n in prange(n_images, num_threads=n_threads, schedule="static"):
            for i in range(out_h):
                for j in range(out_w):
                    # The window's first position starts the running maximum, in place in out.
                    best = &out[n, i, j, 0]
                    winner = &code[n, i, j, 0]
                    row = &block[(n * height + i * pool_h) * width + j * pool_w, 0]
                    for c in range(channels):
                        best[c] = row[c] + bias[c] if has_bias else row[c]
                        winner[c] = 0
                    nan_seen = 0
                    for a in range(pool_h):
                        for b in range(pool_w):
                            k = <int>(a * pool_w + b)
                            if k == 0:
                                continue
                            row = &block[(n * height + i * pool_h + a) * width + j * pool_w + b, 0]
                            # Strict comparison: the first maximum in row-major order wins ties.
                            for c in range(channels):
                                z = row[c] + bias[c] if has_bias else row[c]
                                nan_seen = nan_seen | (z != z)
                                if z > best[c]:
                                    best[c] = z
                                    winner[c] = k
                    if nan_seen:
                        # A NaN beats every number and nothing beats it: the first NaN wins (as
                        # np.argmax). Flagged rather than compared in the loop above, which
                        # vectorises better with one comparison.
                        for a in range(pool_h):
                            for b in range(pool_w):
                                row = &block[(n * height + i * pool_h + a) * width + j * pool_w + b, 0]
                                for c in range(channels):
                                    z = row[c] + bias[c] if has_bias else row[c]
                                    if z != z and best[c] == best[c]:
                                        best[c] = z
                                        winner[c] = <int>(a * pool_w + b)
                    if activation == 1:
                        for c in range(channels):
                            if not best[c] > 0:
                                # A ReLU output of 0, or NaN (which stays NaN, as np.maximum): no gradient
                                # passes there, as activation_backward gives.
                                winner[c] = -1
                                if best[c] <= 0:
                                    best[c] = 0


def unpool(
    const floating[:, :, :, ::1] dpooled, const int[:, :, :, ::1] code, Py_ssize_t height,
    Py_ssize_t width, Py_ssize_t pool_h, Py_ssize_t pool_w, floating[:, ::1] dblock,
    double[::1] dbias, int n_threads,
):
    """The gradient of bias_act_pool's input block: dpooled (n_images, out_h, out_w, channels)
    goes to each window's coded position, zero elsewhere; dblock as bias_act_pool's block.

    dbias (channels,) float64 accumulates the gradients that pass (the bias' gradient), image
    by image in order whatever n_threads is (which only parallelises the zeroing).
    """
    cdef Py_ssize_t n_images = dpooled.shape[0], out_h = dpooled.shape[1], out_w = dpooled.shape[2]
    cdef Py_ssize_t channels = dpooled.shape[3]
    cdef Py_ssize_t n, i, j, c, r
    cdef int k
    cdef floating g
    if n_images == 0 or channels == 0:
        return
    with nogil:
        for r in prange(n_images * height * width, num_threads=n_threads, schedule="static"):
            for c in range(channels):
                dblock[r, c] = 0
        for n in range(n_images):
            for i in range(out_h):
                for j in range(out_w):
                    for c in range(channels):
                        k = code[n, i, j, c]
                        if k >= 0:
                            g = dpooled[n, i, j, c]
                            dblock[(n * height + i * pool_h + k // pool_w) * width + j * pool_w + k % pool_w, c] = g
                            dbias[c] += g
