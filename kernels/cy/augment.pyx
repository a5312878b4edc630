"""Per-image affine resampling of channels-last images, and its adjoint (Cython); mirrors
kernels/cpu/augment.py and kernels/npy/augment.py.

Output pixel (i, j) of image s samples column x = a0 * j + a1 * i + a2, row y = b0 * j + b1 * i + b2
of its input, (a0, a1, a2, b0, b1, b2) = matrices[s]. fill_mode: 0 reflect, 1 wrap, 2 constant,
3 nearest; interpolation: 0 bilinear, 1 nearest (see kernels/npy/augment.py).
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport floor

cdef enum:
    REFLECT = 0
    WRAP = 1
    CONSTANT = 2
    NEAREST = 3
    NEAREST_INTERPOLATION = 1


cdef inline Py_ssize_t _source(Py_ssize_t k, Py_ssize_t size, int fill_mode) noexcept nogil:
    """Integer coordinate k mapped into [0, size) by the fill mode; -1 where constant fills."""
    cdef Py_ssize_t period
    if 0 <= k < size:
        return k
    if fill_mode == REFLECT:
        period = 2 * size
        k = k % period  # C's remainder (cdivision): negative for negative k
        if k < 0:
            k += period
        return k if k < size else period - 1 - k
    if fill_mode == WRAP:
        k = k % size
        return k + size if k < 0 else k
    if fill_mode == NEAREST:
        return 0 if k < 0 else size - 1
    return -1


cdef inline double _tap(const floating* image, Py_ssize_t w, Py_ssize_t c, Py_ssize_t row, Py_ssize_t col,
                        Py_ssize_t ch, double fill_value) noexcept nogil:
    """Channel ch of pixel (row, col) of one image (h, w, c), or fill_value where the tap is outside."""
    return image[(row * w + col) * c + ch] if row >= 0 and col >= 0 else fill_value


def affine_transform(
    const floating[:, :, :, ::1] images, const double[:, ::1] matrices, int fill_mode, double fill_value,
    int interpolation, floating[:, :, :, ::1] out, int n_threads,
):
    """out (n, h, w, c) = images (n, h, w, c) resampled through matrices (n, 6) float64; each
    value summed in float64 and rounded once to out's dtype."""
    cdef Py_ssize_t n = images.shape[0], h = images.shape[1], w = images.shape[2], c = images.shape[3]
    cdef Py_ssize_t s, i, j, ch, row, col, x0, y0, row0, row1, col0, col1
    cdef double a0, a1, a2, b0, b1, b2, x, y, fx, fy, w00, w01, w10, w11
    cdef Py_ssize_t row_step = w * c
    cdef const floating* image
    cdef const floating* src
    cdef floating* dst
    if n == 0 or h == 0 or w == 0 or c == 0:
        return
    with nogil:
        # One image per task: its pixels are independent, and an image is enough work for a thread.
        for s in prange(n, num_threads=n_threads, schedule="static"):
            image = &images[s, 0, 0, 0]
            a0 = matrices[s, 0]
            a1 = matrices[s, 1]
            a2 = matrices[s, 2]
            b0 = matrices[s, 3]
            b1 = matrices[s, 4]
            b2 = matrices[s, 5]
            for i in range(h):
                for j in range(w):
                    x = a0 * j + a1 * i + a2
                    y = b0 * j + b1 * i + b2
                    dst = &out[s, i, j, 0]
                    if interpolation == NEAREST_INTERPOLATION:
                        row = _source(<Py_ssize_t> floor(y + 0.5), h, fill_mode)
                        col = _source(<Py_ssize_t> floor(x + 0.5), w, fill_mode)
                        for ch in range(c):
                            dst[ch] = <floating> _tap(image, w, c, row, col, ch, fill_value)
                        continue
                    fx = floor(x)
                    fy = floor(y)
                    x0 = <Py_ssize_t> fx
                    y0 = <Py_ssize_t> fy
                    fx = x - fx
                    fy = y - fy
                    w00 = (1 - fy) * (1 - fx)
                    w01 = (1 - fy) * fx
                    w10 = fy * (1 - fx)
                    w11 = fy * fx
                    if 0 <= x0 < w - 1 and 0 <= y0 < h - 1:
                        # All four taps inside (most pixels): no fill mode to apply, the same sum.
                        src = &image[(y0 * w + x0) * c]
                        for ch in range(c):
                            dst[ch] = <floating> (w00 * src[ch] + w01 * src[c + ch] + w10 * src[row_step + ch]
                                                  + w11 * src[row_step + c + ch])
                        continue
                    col0 = _source(x0, w, fill_mode)
                    col1 = _source(x0 + 1, w, fill_mode)
                    row0 = _source(y0, h, fill_mode)
                    row1 = _source(y0 + 1, h, fill_mode)
                    for ch in range(c):
                        dst[ch] = <floating> (w00 * _tap(image, w, c, row0, col0, ch, fill_value)
                                              + w01 * _tap(image, w, c, row0, col1, ch, fill_value)
                                              + w10 * _tap(image, w, c, row1, col0, ch, fill_value)
                                              + w11 * _tap(image, w, c, row1, col1, ch, fill_value))


cdef inline void _scatter(floating* dimage, Py_ssize_t w, Py_ssize_t c, Py_ssize_t row, Py_ssize_t col,
                          double weight, const floating* grad) noexcept nogil:
    """Pixel (row, col) of dimage (h, w, c) += weight * grad (c values): a float64 product, added
    in dimage's dtype; nothing where the tap is outside (row or col -1)."""
    cdef Py_ssize_t ch
    cdef floating* target
    if row >= 0 and col >= 0:
        target = &dimage[(row * w + col) * c]
        for ch in range(c):
            target[ch] = <floating> (target[ch] + weight * grad[ch])


def affine_transform_backward(
    const floating[:, :, :, ::1] dout, const double[:, ::1] matrices, int fill_mode, int interpolation,
    floating[:, :, :, ::1] dx, int n_threads,
):
    """dx (n, h, w, c), overwritten: the adjoint of affine_transform applied to dout (n, h, w, c).

    Each output pixel's gradient, times its taps' weights, is added to the pixels it sampled, in
    output-pixel order (taps in the forward's order), in dx's dtype; constant fill takes none.
    """
    cdef Py_ssize_t n = dout.shape[0], h = dout.shape[1], w = dout.shape[2], c = dout.shape[3]
    cdef Py_ssize_t s, i, j, ch, row, col, x0, y0, row0, row1, col0, col1
    cdef double a0, a1, a2, b0, b1, b2, x, y, fx, fy
    cdef floating* dimage
    cdef const floating* grad
    if n == 0 or h == 0 or w == 0 or c == 0:
        return
    with nogil:
        # One image per task: an image's taps add into its own dx only.
        for s in prange(n, num_threads=n_threads, schedule="static"):
            dimage = &dx[s, 0, 0, 0]
            for i in range(h * w * c):
                dimage[i] = 0
            a0 = matrices[s, 0]
            a1 = matrices[s, 1]
            a2 = matrices[s, 2]
            b0 = matrices[s, 3]
            b1 = matrices[s, 4]
            b2 = matrices[s, 5]
            for i in range(h):
                for j in range(w):
                    x = a0 * j + a1 * i + a2
                    y = b0 * j + b1 * i + b2
                    grad = &dout[s, i, j, 0]
                    if interpolation == NEAREST_INTERPOLATION:
                        row = _source(<Py_ssize_t> floor(y + 0.5), h, fill_mode)
                        col = _source(<Py_ssize_t> floor(x + 0.5), w, fill_mode)
                        _scatter(dimage, w, c, row, col, 1.0, grad)
                        continue
                    fx = floor(x)
                    fy = floor(y)
                    x0 = <Py_ssize_t> fx
                    y0 = <Py_ssize_t> fy
                    fx = x - fx
                    fy = y - fy
                    if 0 <= x0 < w - 1 and 0 <= y0 < h - 1:  # all four taps inside: no fill mode to apply
                        col0 = x0
                        col1 = x0 + 1
                        row0 = y0
                        row1 = y0 + 1
                    else:
                        col0 = _source(x0, w, fill_mode)
                        col1 = _source(x0 + 1, w, fill_mode)
                        row0 = _source(y0, h, fill_mode)
                        row1 = _source(y0 + 1, h, fill_mode)
                    _scatter(dimage, w, c, row0, col0, (1 - fy) * (1 - fx), grad)
                    _scatter(dimage, w, c, row0, col1, (1 - fy) * fx, grad)
                    _scatter(dimage, w, c, row1, col0, fy * (1 - fx), grad)
                    _scatter(dimage, w, c, row1, col1, fy * fx, grad)
