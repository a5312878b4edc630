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


def add_bias(floating[:, ::1] out, const floating[::1] bias, int n_threads):
    """out += bias on every row, in place; out (n_rows, n_cols), bias (n_cols,) of out's dtype."""
    cdef Py_ssize_t n_rows = out.shape[0], n_cols = out.shape[1]
    cdef Py_ssize_t r, c
    if n_rows == 0:
        return
    with nogil:
        for r in prange(n_rows, num_threads=n_threads, schedule="static"):
            for c in range(n_cols):
                out[r, c] += bias[c]


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
    gradient is zero (a ReLU output of 0). Works along the channels, which vectorises.
    """
    cdef Py_ssize_t n_images = out.shape[0], out_h = out.shape[1], out_w = out.shape[2]
    cdef Py_ssize_t channels = out.shape[3]
    cdef Py_ssize_t n, i, j, a, b, c
    cdef int k
    cdef bint has_bias = bias.shape[0] > 0
    cdef const floating* row
    cdef floating* best
    cdef int* winner
    cdef floating z
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
                    for a in range(pool_h):
                        for b in range(pool_w):
                            k = <int>(a * pool_w + b)
                            if k == 0:
                                continue
                            row = &block[(n * height + i * pool_h + a) * width + j * pool_w + b, 0]
                            # Strict comparison: the first maximum in row-major order wins ties.
                            for c in range(channels):
                                z = row[c] + bias[c] if has_bias else row[c]
                                if z > best[c]:
                                    best[c] = z
                                    winner[c] = k
                    if activation == 1:
                        for c in range(channels):
                            if not best[c] > 0:
                                best[c] = 0
                                winner[c] = -1


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
