"""Convolution kernels (Numba); mirrors kernels/cy/conv.pyx and kernels/npy/conv.py."""

from numba import prange

from ._jit import compile_kernel, launch


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


def _add_bias(out, bias):
    n_rows, n_cols = out.shape
    for r in prange(n_rows):
        for c in range(n_cols):
            out[r, c] += bias[c]


_bias_serial = compile_kernel(_add_bias)
_bias_parallel = compile_kernel(_add_bias, parallel=True)


def add_bias(out, bias, n_threads):
    """out += bias on every row, in place; out (n_rows, n_cols), bias (n_cols,) of out's dtype."""
    launch(_bias_serial, _bias_parallel, n_threads, out, bias)
