"""Convolution kernels (numpy reference); mirrors kernels/cpu/conv.py and kernels/cy/conv.pyx."""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _pads(size, kernel, stride, pad_before, out_size):
    """(before, after) zero padding that makes every window of the output lie inside the array."""
    return pad_before, max(0, (out_size - 1) * stride + kernel - size - pad_before)


def im2col(x, cols, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w, n_threads):
    """Gather the (kh, kw) patches of x into the rows of cols, zeros where a patch leaves x."""
    n_images, height, width, channels = x.shape
    padded = np.pad(x, ((0, 0), _pads(height, kh, stride_h, pad_top, out_h),
                        _pads(width, kw, stride_w, pad_left, out_w), (0, 0)))
    windows = sliding_window_view(padded, (kh, kw), axis=(1, 2))  # (n, h, w, c, kh, kw)
    windows = windows[:, : (out_h - 1) * stride_h + 1 : stride_h, : (out_w - 1) * stride_w + 1 : stride_w]
    cols[...] = windows.transpose(0, 1, 2, 4, 5, 3).reshape(cols.shape)


def conv_direct(x, kernel_matrix, kh, kw, stride_h, stride_w, out_h, out_w, out, n_threads):
    """out = im2col(x) @ kernel_matrix for an already padded x (the reference builds the patch matrix)."""
    cols = np.empty((out.shape[0], kernel_matrix.shape[0]), x.dtype)
    im2col(x, cols, kh, kw, stride_h, stride_w, 0, 0, out_h, out_w, n_threads)
    np.dot(cols, kernel_matrix, out=out)

def col2im(cols, dx, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w, n_threads):
    """dx = the sum, over patches, of each row of cols put back where im2col took it from."""
    n_images, height, width, channels = dx.shape
    before_h, after_h = _pads(height, kh, stride_h, pad_top, out_h)
    before_w, after_w = _pads(width, kw, stride_w, pad_left, out_w)
    padded = np.zeros((n_images, height + before_h + after_h, width + before_w + after_w, channels), cols.dtype)
    patches = cols.reshape(n_images, out_h, out_w, kh, kw, channels)
    for i in range(kh):
        for j in range(kw):
            padded[:, i : i + (out_h - 1) * stride_h + 1 : stride_h,
                   j : j + (out_w - 1) * stride_w + 1 : stride_w] += patches[:, :, :, i, j]
    dx[...] = padded[:, before_h : before_h + height, before_w : before_w + width]


def _tap_blocks(kh, kw, pad_top, pad_left, z_shape, out_shape):
    """(out index, z index) per tap (i, j): the block of outputs that tap reaches from inside z,
    and the block of z's per-tap products that it adds there."""
    _, height, width, _ = z_shape
    _, out_h, out_w, filters = out_shape

    def outputs(tap, pad, size, out_size):  # o with 0 <= o - pad + tap < size
        first = max(0, pad - tap)
        return slice(first, max(first, min(out_size, size + pad - tap)))

    def inputs(o, tap, pad):
        return slice(o.start - pad + tap, o.stop - pad + tap)

    for i in range(kh):
        rows = outputs(i, pad_top, height, out_h)
        for j in range(kw):
            cols = outputs(j, pad_left, width, out_w)
            tap = (i * kw + j) * filters
            yield ((slice(None), rows, cols),
                   (slice(None), inputs(rows, i, pad_top), inputs(cols, j, pad_left), slice(tap, tap + filters)))


def shift_sum(z, kh, kw, pad_top, pad_left, out, n_threads):
    """out[n, oh, ow, f] = the sum over taps (i, j) of z[n, oh - pad_top + i, ow - pad_left + j,
    (i * kw + j) * filters + f], terms outside z dropped."""
    out[...] = 0
    for to, source in _tap_blocks(kh, kw, pad_top, pad_left, z.shape, out.shape):
        out[to] += z[source]


def shift_spread(dout, kh, kw, pad_top, pad_left, dz, n_threads):
    """The adjoint of shift_sum: dz[n, h, w, (i * kw + j) * filters + f] = dout[n, h + pad_top - i,
    w + pad_left - j, f], zeros outside dout."""
    dz[...] = 0
    for source, to in _tap_blocks(kh, kw, pad_top, pad_left, dz.shape, dout.shape):
        dz[to] = dout[source]


def bias_act_pool(block, bias, activation, height, width, pool_h, pool_w, out, code, n_threads):
    """Bias, activation and non-overlapping max pooling of a block of convolution outputs; see
    kernels/cpu/conv.py. Windows are compared in row-major order, the first maximum winning."""
    n_images, out_h, out_w, channels = out.shape
    z = block.reshape(n_images, height, width, channels)[:, : out_h * pool_h, : out_w * pool_w]
    if bias.shape[0]:
        z = z + bias
    # (n, out_h, out_w, channels, window position)
    windows = z.reshape(n_images, out_h, pool_h, out_w, pool_w, channels).transpose(0, 1, 3, 5, 2, 4)
    windows = windows.reshape(n_images, out_h, out_w, channels, pool_h * pool_w)
    code[...] = np.argmax(windows, axis=-1)  # the first maximum, or the first NaN (the maximum then)
    out[...] = np.take_along_axis(windows, code[..., None].astype(np.intp), axis=-1)[..., 0]
    if activation == 1:
        # No gradient where the ReLU gives 0 or NaN (as activation_backward); NaN stays NaN.
        code[~(out > 0)] = -1
        out[out <= 0] = 0


def unpool(dpooled, code, height, width, pool_h, pool_w, dblock, dbias, n_threads):
    """The gradient of bias_act_pool's input block, and the bias' gradient added to dbias
    (float64); see kernels/cpu/conv.py."""
    dblock[...] = 0
    n, i, j, c = np.nonzero(code >= 0)
    k = code[n, i, j, c]
    rows = (n * height + i * pool_h + k // pool_w) * width + j * pool_w + k % pool_w
    dblock[rows, c] = dpooled[n, i, j, c]
    dbias += np.where(code >= 0, dpooled, 0).reshape(-1, dpooled.shape[3]).sum(axis=0, dtype=np.float64)
