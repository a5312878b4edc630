"""Per-image affine resampling of channels-last images, and its adjoint (Numba); mirrors
kernels/cy/augment.pyx and kernels/npy/augment.py.

Output pixel (i, j) of image s samples column x = a0 * j + a1 * i + a2, row y = b0 * j + b1 * i + b2
of its input, (a0, a1, a2, b0, b1, b2) = matrices[s]. fill_mode: 0 reflect, 1 wrap, 2 constant,
3 nearest; interpolation: 0 bilinear, 1 nearest (see kernels/npy/augment.py).
"""

import math

from numba import prange

from ._jit import compile_kernel, helper, launch

REFLECT, WRAP, CONSTANT, NEAREST = 0, 1, 2, 3
BILINEAR, NEAREST_INTERPOLATION = 0, 1


@helper()
def _source(k, size, fill_mode):
    """Integer coordinate k mapped into [0, size) by the fill mode; -1 where constant fills."""
    if 0 <= k < size:
        return k
    if fill_mode == REFLECT:
        period = 2 * size
        k = k % period
        if k < 0:
            k += period
        return k if k < size else period - 1 - k
    if fill_mode == WRAP:
        k = k % size
        return k + size if k < 0 else k
    if fill_mode == NEAREST:
        return 0 if k < 0 else size - 1
    return -1


def _affine_forward(images, matrices, fill_mode, fill_value, interpolation, out):
    n, h, w, c = images.shape
    # One image per task: its pixels are independent, and an image is enough work for a thread.
    for s in prange(n):
        a0, a1, a2 = matrices[s, 0], matrices[s, 1], matrices[s, 2]
        b0, b1, b2 = matrices[s, 3], matrices[s, 4], matrices[s, 5]
        for i in range(h):
            for j in range(w):
                x = a0 * j + a1 * i + a2
                y = b0 * j + b1 * i + b2
                if interpolation == NEAREST_INTERPOLATION:
                    row = _source(math.floor(y + 0.5), h, fill_mode)
                    col = _source(math.floor(x + 0.5), w, fill_mode)
                    for ch in range(c):
                        out[s, i, j, ch] = images[s, row, col, ch] if row >= 0 and col >= 0 else fill_value
                    continue
                x0, y0 = math.floor(x), math.floor(y)
                fx, fy = x - x0, y - y0
                w00, w01 = (1 - fy) * (1 - fx), (1 - fy) * fx
                w10, w11 = fy * (1 - fx), fy * fx
                if 0 <= x0 < w - 1 and 0 <= y0 < h - 1:
                    # All four taps inside (most pixels): no fill mode to apply, the same sum.
                    for ch in range(c):
                        out[s, i, j, ch] = (w00 * images[s, y0, x0, ch] + w01 * images[s, y0, x0 + 1, ch]
                                            + w10 * images[s, y0 + 1, x0, ch] + w11 * images[s, y0 + 1, x0 + 1, ch])
                    continue
                col0, col1 = _source(x0, w, fill_mode), _source(x0 + 1, w, fill_mode)
                row0, row1 = _source(y0, h, fill_mode), _source(y0 + 1, h, fill_mode)
                for ch in range(c):
                    v00 = images[s, row0, col0, ch] if row0 >= 0 and col0 >= 0 else fill_value
                    v01 = images[s, row0, col1, ch] if row0 >= 0 and col1 >= 0 else fill_value
                    v10 = images[s, row1, col0, ch] if row1 >= 0 and col0 >= 0 else fill_value
                    v11 = images[s, row1, col1, ch] if row1 >= 0 and col1 >= 0 else fill_value
                    out[s, i, j, ch] = w00 * v00 + w01 * v01 + w10 * v10 + w11 * v11


# exact: fastmath would reorder the four products' sum (the Cython kernel's bits, the reference's).
_forward_serial = compile_kernel(_affine_forward, exact=True)
_forward_parallel = compile_kernel(_affine_forward, parallel=True, exact=True)


def affine_transform(images, matrices, fill_mode, fill_value, interpolation, out, n_threads):
    """out (n, h, w, c) = images (n, h, w, c) resampled through matrices (n, 6) float64; each
    value summed in float64 and rounded once to out's dtype."""
    launch(_forward_serial, _forward_parallel, n_threads,
           images, matrices, fill_mode, fill_value, interpolation, out)


@helper(inline="always")  # a call per tap, not inlined by LLVM, made the backward 3x slower
def _scatter(dx, s, row, col, weight, dout, i, j):
    """dx[s, row, col, :] += weight * dout[s, i, j, :] (a float64 product, added in dx's dtype);
    nothing where the tap is outside (row or col -1)."""
    if row >= 0 and col >= 0:
        for ch in range(dx.shape[3]):
            dx[s, row, col, ch] += weight * dout[s, i, j, ch]


def _affine_backward(dout, matrices, fill_mode, interpolation, dx):
    n, h, w, c = dout.shape
    # One image per task: an image's taps add into its own dx only.
    for s in prange(n):
        for i in range(h):
            for j in range(w):
                for ch in range(c):
                    dx[s, i, j, ch] = 0
        a0, a1, a2 = matrices[s, 0], matrices[s, 1], matrices[s, 2]
        b0, b1, b2 = matrices[s, 3], matrices[s, 4], matrices[s, 5]
        for i in range(h):
            for j in range(w):
                x = a0 * j + a1 * i + a2
                y = b0 * j + b1 * i + b2
                if interpolation == NEAREST_INTERPOLATION:
                    row = _source(math.floor(y + 0.5), h, fill_mode)
                    col = _source(math.floor(x + 0.5), w, fill_mode)
                    _scatter(dx, s, row, col, 1.0, dout, i, j)
                    continue
                x0, y0 = math.floor(x), math.floor(y)
                fx, fy = x - x0, y - y0
                if 0 <= x0 < w - 1 and 0 <= y0 < h - 1:  # all four taps inside: no fill mode to apply
                    col0, col1, row0, row1 = x0, x0 + 1, y0, y0 + 1
                else:
                    col0, col1 = _source(x0, w, fill_mode), _source(x0 + 1, w, fill_mode)
                    row0, row1 = _source(y0, h, fill_mode), _source(y0 + 1, h, fill_mode)
                _scatter(dx, s, row0, col0, (1 - fy) * (1 - fx), dout, i, j)
                _scatter(dx, s, row0, col1, (1 - fy) * fx, dout, i, j)
                _scatter(dx, s, row1, col0, fy * (1 - fx), dout, i, j)
                _scatter(dx, s, row1, col1, fy * fx, dout, i, j)


_backward_serial = compile_kernel(_affine_backward, exact=True)
_backward_parallel = compile_kernel(_affine_backward, parallel=True, exact=True)


def affine_transform_backward(dout, matrices, fill_mode, interpolation, dx, n_threads):
    """dx (n, h, w, c), overwritten: the adjoint of affine_transform applied to dout (n, h, w, c).

    Each output pixel's gradient, times its taps' weights, is added to the pixels it sampled, in
    output-pixel order (taps in the forward's order), in dx's dtype; constant fill takes none.
    """
    launch(_backward_serial, _backward_parallel, n_threads, dout, matrices, fill_mode, interpolation, dx)
