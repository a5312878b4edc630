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
