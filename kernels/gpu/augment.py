"""Per-image affine resampling of channels-last images, and its adjoint (numba.cuda); mirrors
kernels/cpu/augment.py and kernels/npy/augment.py.

Output pixel (i, j) of image s samples column x = a0 * j + a1 * i + a2, row y = b0 * j + b1 * i + b2
of its input, (a0, a1, a2, b0, b1, b2) = matrices[s] (a float64 device array (n, 6)). fill_mode:
0 reflect, 1 wrap, 2 constant, 3 nearest; interpolation: 0 bilinear, 1 nearest (see
kernels/npy/augment.py).

The forward runs one thread per output element (channel fastest, so a warp reads neighbouring
channels), summing its taps in float64 in the CPU kernels' order. The backward scatters, so it runs
one thread per (image, channel): the thread zeroes its channel of the image's dx and adds every
output pixel's taps into it in the CPU kernels' order, in dx's dtype. No two threads write one
element (no atomics): the same sums in the same order as on the CPU, whatever the launch; threads
of a warp are neighbouring channels of one pixel, so their writes are coalesced where there are
32 or more channels (a layer after a convolution, where the backward runs).
"""

import math

from numba import cuda, float64, int64

from ._launch import grid_1d, kernel, unravel

REFLECT, WRAP, CONSTANT, NEAREST = 0, 1, 2, 3
NEAREST_INTERPOLATION = 1


@cuda.jit(device=True)
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


@cuda.jit(device=True)
def _tap(images, s, row, col, ch, fill_value):
    """float64 value of channel ch at (row, col) of image s, or fill_value where the tap is outside."""
    if row >= 0 and col >= 0:
        return float64(images[s, row, col, ch])
    return fill_value


@kernel
def _affine_forward(images, matrices, fill_mode, fill_value, interpolation, out):
    index = cuda.grid(1)
    n, h, w, c = out.shape
    if index >= n * h * w * c:
        return
    s, i, j, ch = unravel(index, h, w, c)
    x = matrices[s, 0] * j + matrices[s, 1] * i + matrices[s, 2]
    y = matrices[s, 3] * j + matrices[s, 4] * i + matrices[s, 5]
    if interpolation == NEAREST_INTERPOLATION:
        row = _source(int64(math.floor(y + 0.5)), h, fill_mode)
        col = _source(int64(math.floor(x + 0.5)), w, fill_mode)
        out[s, i, j, ch] = _tap(images, s, row, col, ch, fill_value)
        return
    fx, fy = math.floor(x), math.floor(y)  # float64 on the device
    x0, y0 = int64(fx), int64(fy)
    fx, fy = x - fx, y - fy
    col0, col1 = _source(x0, w, fill_mode), _source(x0 + 1, w, fill_mode)
    row0, row1 = _source(y0, h, fill_mode), _source(y0 + 1, h, fill_mode)
    out[s, i, j, ch] = ((1 - fy) * (1 - fx) * _tap(images, s, row0, col0, ch, fill_value)
                        + (1 - fy) * fx * _tap(images, s, row0, col1, ch, fill_value)
                        + fy * (1 - fx) * _tap(images, s, row1, col0, ch, fill_value)
                        + fy * fx * _tap(images, s, row1, col1, ch, fill_value))


def affine_transform(images, matrices, fill_mode, fill_value, interpolation, out, n_threads):
    """out (n, h, w, c) = images (n, h, w, c) resampled through matrices (n, 6) float64; one thread
    per output element. n_threads is unused."""
    if out.size:
        _affine_forward[grid_1d(out.size)](images, matrices, fill_mode, fill_value, interpolation, out)


@cuda.jit(device=True)
def _scatter(dx, s, row, col, ch, weight, value):
    """dx[s, row, col, ch] += weight * value (a float64 product, added in dx's dtype); nothing
    where the tap is outside."""
    if row >= 0 and col >= 0:
        dx[s, row, col, ch] += weight * value


@kernel
def _affine_backward(dout, matrices, fill_mode, interpolation, dx):
    index = cuda.grid(1)
    n, h, w, c = dx.shape
    if index >= n * c:
        return
    s, ch = index // c, index % c
    for i in range(h):
        for j in range(w):
            dx[s, i, j, ch] = 0
    for i in range(h):
        for j in range(w):
            x = matrices[s, 0] * j + matrices[s, 1] * i + matrices[s, 2]
            y = matrices[s, 3] * j + matrices[s, 4] * i + matrices[s, 5]
            value = float64(dout[s, i, j, ch])
            if interpolation == NEAREST_INTERPOLATION:
                row = _source(int64(math.floor(y + 0.5)), h, fill_mode)
                col = _source(int64(math.floor(x + 0.5)), w, fill_mode)
                _scatter(dx, s, row, col, ch, 1.0, value)
                continue
            fx, fy = math.floor(x), math.floor(y)
            x0, y0 = int64(fx), int64(fy)
            fx, fy = x - fx, y - fy
            col0, col1 = _source(x0, w, fill_mode), _source(x0 + 1, w, fill_mode)
            row0, row1 = _source(y0, h, fill_mode), _source(y0 + 1, h, fill_mode)
            _scatter(dx, s, row0, col0, ch, (1 - fy) * (1 - fx), value)
            _scatter(dx, s, row0, col1, ch, (1 - fy) * fx, value)
            _scatter(dx, s, row1, col0, ch, fy * (1 - fx), value)
            _scatter(dx, s, row1, col1, ch, fy * fx, value)


def affine_transform_backward(dout, matrices, fill_mode, interpolation, dx, n_threads):
    """dx (n, h, w, c), overwritten: the adjoint of affine_transform applied to dout (n, h, w, c);
    one thread per (image, channel), adding in the CPU kernels' order. n_threads is unused."""
    n, _, _, c = dx.shape
    if dx.size:
        _affine_backward[grid_1d(n * c)](dout, matrices, fill_mode, interpolation, dx)
