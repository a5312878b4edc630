"""Convolution kernels (Numba); mirrors kernels/cy/conv.pyx and kernels/npy/conv.py."""

import numpy as np
from numba import prange

from ._jit import compile_kernel, helper, launch


def _im2col(x, cols, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w):
    n_images, height, width, channels = x.shape
    for n in prange(n_images):
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
                                cols[row, base + c] = 0.0


_im2col_serial = compile_kernel(_im2col)
_im2col_parallel = compile_kernel(_im2col, parallel=True)


def im2col(x, cols, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w, n_threads):
    """Gather the (kh, kw) patches of x into the rows of cols, zeros where a patch leaves x.

    x: (n, height, width, channels); cols: (n * out_h * out_w, kh * kw * channels), same dtype,
    row (n, oh, ow) holding the patch whose top-left corner is (oh * stride_h - pad_top,
    ow * stride_w - pad_left), its columns in (i, j, channel) order like a Keras kernel's rows.
    """
    launch(_im2col_serial, _im2col_parallel, n_threads,
           x, cols, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w)


def _conv_direct(x, kernel_matrix, kh, kw, stride_h, stride_w, out_h, out_w, out):
    n_images, _, _, channels = x.shape
    filters = kernel_matrix.shape[1]
    for n in prange(n_images):
        acc = np.empty(filters, out.dtype)
        for oh in range(out_h):
            for ow in range(out_w):
                acc[:] = 0
                # Taps in (i, j, channel) order, as the Cython kernel adds them.
                for i in range(kh):
                    for j in range(kw):
                        for c in range(channels):
                            value = x[n, oh * stride_h + i, ow * stride_w + j, c]
                            r = (i * kw + j) * channels + c
                            for f in range(filters):
                                acc[f] += value * kernel_matrix[r, f]
                out[(n * out_h + oh) * out_w + ow] = acc


_direct_serial = compile_kernel(_conv_direct)
_direct_parallel = compile_kernel(_conv_direct, parallel=True)


def conv_direct(x, kernel_matrix, kh, kw, stride_h, stride_w, out_h, out_w, out, n_threads):
    """out = im2col(x) @ kernel_matrix without the patch matrix, for kernels of few taps.

    x (n, height, width, channels), already padded: every window lies inside it; kernel_matrix
    (kh * kw * channels, filters), rows in im2col's (i, j, channel) order; out (n * out_h * out_w,
    filters). Each sum adds its taps in (i, j, channel) order.
    """
    launch(_direct_serial, _direct_parallel, n_threads, x, kernel_matrix, kh, kw, stride_h, stride_w, out_h, out_w,
           out)

def _col2im(cols, dx, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w):
    n_images, height, width, channels = dx.shape
    for n in prange(n_images):
        # Each image is one task: its patches overlap only each other, so no two threads collide.
        for h in range(height):
            for w in range(width):
                for c in range(channels):
                    dx[n, h, w, c] = 0.0
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


_col2im_serial = compile_kernel(_col2im)
_col2im_parallel = compile_kernel(_col2im, parallel=True)


def col2im(cols, dx, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w, n_threads):
    """dx = the sum, over patches, of each row of cols put back where im2col took it from.

    The adjoint of im2col (same arguments); dx is overwritten, entries in the padding are dropped.
    """
    launch(_col2im_serial, _col2im_parallel, n_threads,
           cols, dx, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w)


@helper(inline="always")
def _tap_range(offset, size, out_size):
    """The outputs o, first <= o < stop, whose input o + offset lies in 0..size - 1 (first <= stop)."""
    first = max(0, -offset)
    return first, max(first, min(out_size, size - offset))


def _shift_sum(z, kh, kw, pad_top, pad_left, out):
    n_images, height, width, _ = z.shape
    _, out_h, out_w, filters = out.shape
    for n in prange(n_images):
        # A row of outputs at a time, tap by tap: each output still adds its taps in (i, j) order.
        for oh in range(out_h):
            target = out[n, oh]
            target[:] = 0
            for i in range(kh):
                h = oh - pad_top + i
                if h < 0 or h >= height:
                    continue
                for j in range(kw):
                    first, stop = _tap_range(j - pad_left, width, out_w)
                    base = (i * kw + j) * filters
                    for ow in range(first, stop):
                        w = ow + j - pad_left
                        for f in range(filters):
                            target[ow, f] += z[n, h, w, base + f]


_shift_sum_serial = compile_kernel(_shift_sum)
_shift_sum_parallel = compile_kernel(_shift_sum, parallel=True)


def shift_sum(z, kh, kw, pad_top, pad_left, out, n_threads):
    """A stride-1 convolution from its per-tap products: out[n, oh, ow, f] = the sum over taps
    (i, j), in that order, of z[n, oh - pad_top + i, ow - pad_left + j, (i * kw + j) * filters + f],
    terms outside z dropped (the zero padding). z (n, height, width, kh * kw * filters), each
    input pixel times every tap of the kernel; out (n, out_h, out_w, filters) of z's dtype."""
    launch(_shift_sum_serial, _shift_sum_parallel, n_threads, z, kh, kw, pad_top, pad_left, out)


def _shift_spread(dout, kh, kw, pad_top, pad_left, dz):
    n_images, height, width, _ = dz.shape
    _, out_h, out_w, filters = dout.shape
    for n in prange(n_images):
        for h in range(height):
            target = dz[n, h]
            for i in range(kh):
                oh = h + pad_top - i
                for j in range(kw):
                    # Pixels w read dout's w + pad_left - j: those in first..stop - 1 lie inside it.
                    first, stop = _tap_range(pad_left - j, out_w, width) if 0 <= oh < out_h else (0, 0)
                    base = (i * kw + j) * filters
                    for w in range(width):
                        if first <= w < stop:
                            for f in range(filters):
                                target[w, base + f] = dout[n, oh, w + pad_left - j, f]
                        else:
                            for f in range(filters):
                                target[w, base + f] = 0


_shift_spread_serial = compile_kernel(_shift_spread)
_shift_spread_parallel = compile_kernel(_shift_spread, parallel=True)


def shift_spread(dout, kh, kw, pad_top, pad_left, dz, n_threads):
    """The adjoint of shift_sum (same arguments): dz[n, h, w, (i * kw + j) * filters + f] =
    dout[n, h + pad_top - i, w + pad_left - j, f], zeros where that lies outside dout."""
    launch(_shift_spread_serial, _shift_spread_parallel, n_threads, dout, kh, kw, pad_top, pad_left, dz)


def _bias_act_pool(block, bias, activation, height, width, pool_h, pool_w, out, code):
    n_images, out_h, out_w, channels = out.shape
    has_bias = bias.shape[0] > 0
    for n in prange(n_images):
        for i in range(out_h):
            for j in range(out_w):
                # The window's first position starts the running maximum, in place in out.
                best = out[n, i, j]
                winner = code[n, i, j]
                first = (n * height + i * pool_h) * width + j * pool_w
                for c in range(channels):
                    best[c] = block[first, c] + bias[c] if has_bias else block[first, c]
                    winner[c] = 0
                nan_seen = False
                for a in range(pool_h):
                    for b in range(pool_w):
                        k = a * pool_w + b
                        if k == 0:
                            continue
                        row = (n * height + i * pool_h + a) * width + j * pool_w + b
                        # Strict comparison: the first maximum in row-major order wins ties.
                        for c in range(channels):
                            z = block[row, c] + bias[c] if has_bias else block[row, c]
                            nan_seen |= z != z
                            if z > best[c]:
                                best[c] = z
                                winner[c] = k
                if nan_seen:
                    # A NaN beats every number and nothing beats it: the first NaN wins (as
                    # np.argmax). Flagged rather than compared in the loop above, which runs
                    # faster with one comparison.
                    for a in range(pool_h):
                        for b in range(pool_w):
                            row = (n * height + i * pool_h + a) * width + j * pool_w + b
                            for c in range(channels):
                                z = block[row, c] + bias[c] if has_bias else block[row, c]
                                if z != z and best[c] == best[c]:
                                    best[c] = z
                                    winner[c] = a * pool_w + b
                if activation == 1:
                    for c in range(channels):
                        if not best[c] > 0:
                            # A ReLU output of 0, or NaN (which stays NaN, as np.maximum): no gradient
                            # passes there, as activation_backward gives.
                            winner[c] = -1
                            if best[c] <= 0:
                                best[c] = 0


# exact: fastmath may assume there is no NaN and drop nan_seen and the ReLU's NaN test: a NaN would
# lose to the window's numbers (and its gradient go to one), unlike the Cython kernel.
_pool_serial = compile_kernel(_bias_act_pool, exact=True)
_pool_parallel = compile_kernel(_bias_act_pool, parallel=True, exact=True)


def bias_act_pool(block, bias, activation, height, width, pool_h, pool_w, out, code, n_threads):
    """Bias, activation and non-overlapping max pooling of a block of convolution outputs.

    block (n_images * height * width, channels): the images' convolution outputs in row-major
    pixel order; bias (channels,) or empty; activation 0 (linear) or 1 (ReLU). out (n_images,
    out_h, out_w, channels) gets each pool_h x pool_w window's maximum of activation(block + bias)
    (windows at stride pool_h, pool_w from the top left; leftover rows and columns are not
    pooled), and code (int32) the window position (row-major) of its first maximum, or -1 where
    the gradient is zero (a ReLU output of 0, or NaN: NaN stays NaN).
    """
    launch(_pool_serial, _pool_parallel, n_threads, block, bias, activation, height, width, pool_h, pool_w, out, code)


def _unpool(dpooled, code, height, width, pool_h, pool_w, dblock, dbias):
    n_images, out_h, out_w, channels = dpooled.shape
    for r in prange(n_images * height * width):
        dblock[r] = 0
    for n in range(n_images):
        for i in range(out_h):
            for j in range(out_w):
                for c in range(channels):
                    k = code[n, i, j, c]
                    if k >= 0:
                        g = dpooled[n, i, j, c]
                        dblock[(n * height + i * pool_h + k // pool_w) * width + j * pool_w + k % pool_w, c] = g
                        dbias[c] += g


_unpool_serial = compile_kernel(_unpool)
_unpool_parallel = compile_kernel(_unpool, parallel=True)


def unpool(dpooled, code, height, width, pool_h, pool_w, dblock, dbias, n_threads):
    """The gradient of bias_act_pool's input block: dpooled (n_images, out_h, out_w, channels)
    goes to each window's coded position, zero elsewhere; dblock as bias_act_pool's block.

    dbias (channels,) float64 accumulates the gradients that pass (the bias' gradient), image
    by image in order whatever n_threads is (which only parallelises the zeroing).
    """
    launch(_unpool_serial, _unpool_parallel, n_threads, dpooled, code, height, width, pool_h, pool_w, dblock, dbias)
