"""Convolution kernels (numba.cuda); mirrors kernels/cpu/conv.py and kernels/npy/conv.py.

One thread per element of the array a kernel writes (im2col's columns, col2im's dx, conv_direct's
outputs, kn2row's shifted sums, the pooled outputs, the unpooled block). col2im and shift_spread
are parallelised over the destination: each thread gathers the terms of its own element in the
CPU kernel's order, so nothing races and no atomics are needed (results are deterministic and
match the CPU kernels' sums term for term).

Sums run in the arrays' dtype where the CPU kernels' do, from a zero of that dtype read back from
the thread's own output element (a kernel compiled for both dtypes has no typed zero literal);
the bias gradient of unpool runs in float64 as on the CPU.
"""

from numba import cuda, float64

from ._launch import grid_1d, kernel, unravel


# ----------------------------------------------------------------------------------------------
# im2col, col2im, conv_direct


@kernel
def _im2col(x, cols, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w):
    index = cuda.grid(1)
    n_cols = cols.shape[1]
    if index >= cols.shape[0] * n_cols:
        return
    row, col = index // n_cols, index % n_cols
    _, height, width, channels = x.shape
    n = row // (out_h * out_w)
    oh = (row // out_w) % out_h
    ow = row % out_w
    c = col % channels
    j = (col // channels) % kw
    i = col // (channels * kw)
    h = oh * stride_h - pad_top + i
    w = ow * stride_w - pad_left + j
    if 0 <= h < height and 0 <= w < width:
        cols[row, col] = x[n, h, w, c]
    else:
        cols[row, col] = 0


def im2col(x, cols, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w, n_threads):
    """Gather the (kh, kw) patches of x into the rows of cols, zeros where a patch leaves x.

    x: (n, height, width, channels); cols: (n * out_h * out_w, kh * kw * channels), same dtype,
    row (n, oh, ow) holding the patch whose top-left corner is (oh * stride_h - pad_top,
    ow * stride_w - pad_left), its columns in (i, j, channel) order. n_threads is unused.
    """
    if cols.size:
        _im2col[grid_1d(cols.size)](x, cols, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w)


@cuda.jit(device=True)
def _windows_holding(position, size, stride, n_windows):
    """(first, stop) of the windows o, 0 <= o < n_windows, with 0 <= position - o * stride < size."""
    first = (position - size) // stride + 1
    if first < 0:
        first = 0
    stop = position // stride + 1
    if stop > n_windows:
        stop = n_windows
    return first, stop


@kernel
def _col2im(cols, dx, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w):
    index = cuda.grid(1)
    if index >= dx.size:
        return
    _, height, width, channels = dx.shape
    n, h, w, c = unravel(index, height, width, channels)
    dx[n, h, w, c] = 0
    total = dx[n, h, w, c]  # a zero of dx's dtype
    # The patches in the CPU kernel's order: (oh, ow) ascending; tap (i, j) = the pixel's offset.
    # Only the windows that hold the pixel: kh > h + pad_top - oh * stride_h >= 0.
    first_h, stop_h = _windows_holding(h + pad_top, kh, stride_h, out_h)
    first_w, stop_w = _windows_holding(w + pad_left, kw, stride_w, out_w)
    for oh in range(first_h, stop_h):
        i = h + pad_top - oh * stride_h
        for ow in range(first_w, stop_w):
            j = w + pad_left - ow * stride_w
            total += cols[(n * out_h + oh) * out_w + ow, (i * kw + j) * channels + c]
    dx[n, h, w, c] = total


def col2im(cols, dx, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w, n_threads):
    """dx = the sum, over patches, of each row of cols put back where im2col took it from.

    The adjoint of im2col (same arguments); dx is overwritten, entries in the padding are dropped.
    One thread per element of dx gathers its terms, patches in row-major order as on the CPU.
    """
    if dx.size:
        _col2im[grid_1d(dx.size)](cols, dx, kh, kw, stride_h, stride_w, pad_top, pad_left, out_h, out_w)


@kernel
def _conv_direct(x, kernel_matrix, kh, kw, stride_h, stride_w, out_h, out_w, out):
    index = cuda.grid(1)
    filters = out.shape[1]
    if index >= out.shape[0] * filters:
        return
    row, f = index // filters, index % filters
    channels = x.shape[3]
    n = row // (out_h * out_w)
    oh = (row // out_w) % out_h
    ow = row % out_w
    out[row, f] = 0
    total = out[row, f]  # a zero of out's dtype, as the CPU's accumulator
    # Taps in (i, j, channel) order, as the CPU kernels add them.
    for i in range(kh):
        for j in range(kw):
            for c in range(channels):
                total += x[n, oh * stride_h + i, ow * stride_w + j, c] * kernel_matrix[(i * kw + j) * channels + c, f]
    out[row, f] = total


def conv_direct(x, kernel_matrix, kh, kw, stride_h, stride_w, out_h, out_w, out, n_threads):
    """out = im2col(x) @ kernel_matrix without the patch matrix, for kernels of few taps.

    x (n, height, width, channels), already padded: every window lies inside it; kernel_matrix
    (kh * kw * channels, filters), rows in im2col's (i, j, channel) order; out (n * out_h * out_w,
    filters). Each sum adds its taps in (i, j, channel) order; one thread per element of out.
    """
    if out.size:
        _conv_direct[grid_1d(out.size)](x, kernel_matrix, kh, kw, stride_h, stride_w, out_h, out_w, out)


# ----------------------------------------------------------------------------------------------
# kn2row's shift_sum and shift_spread (fastdl/ops/_kn2row.py)


@kernel
def _shift_sum(z, kh, kw, pad_top, pad_left, out):
    index = cuda.grid(1)
    if index >= out.size:
        return
    _, out_h, out_w, filters = out.shape
    _, height, width, _ = z.shape
    n, oh, ow, f = unravel(index, out_h, out_w, filters)
    out[n, oh, ow, f] = 0
    total = out[n, oh, ow, f]  # a zero of out's dtype
    # Taps in (i, j) order, as the CPU kernels add them.
    for i in range(kh):
        h = oh - pad_top + i
        if 0 <= h < height:
            for j in range(kw):
                w = ow - pad_left + j
                if 0 <= w < width:
                    total += z[n, h, w, (i * kw + j) * filters + f]
    out[n, oh, ow, f] = total


def shift_sum(z, kh, kw, pad_top, pad_left, out, n_threads):
    """A stride-1 convolution from its per-tap products: out[n, oh, ow, f] = the sum over taps
    (i, j), in that order, of z[n, oh - pad_top + i, ow - pad_left + j, (i * kw + j) * filters + f],
    terms outside z dropped. z (n, height, width, kh * kw * filters); out (n, out_h, out_w,
    filters) of z's dtype. One thread per element of out."""
    if out.size:
        _shift_sum[grid_1d(out.size)](z, kh, kw, pad_top, pad_left, out)


@kernel
def _shift_spread(dout, kh, kw, pad_top, pad_left, dz):
    index = cuda.grid(1)
    if index >= dz.size:
        return
    _, height, width, taps = dz.shape
    _, out_h, out_w, filters = dout.shape
    n, h, w, column = unravel(index, height, width, taps)
    tap, f = column // filters, column % filters
    oh, ow = h + pad_top - tap // kw, w + pad_left - tap % kw
    if 0 <= oh < out_h and 0 <= ow < out_w:
        dz[n, h, w, column] = dout[n, oh, ow, f]
    else:
        dz[n, h, w, column] = 0


def shift_spread(dout, kh, kw, pad_top, pad_left, dz, n_threads):
    """The adjoint of shift_sum (same arguments): dz[n, h, w, (i * kw + j) * filters + f] =
    dout[n, h + pad_top - i, w + pad_left - j, f], zeros where that lies outside dout. One thread
    per element of dz."""
    if dz.size:
        _shift_spread[grid_1d(dz.size)](dout, kh, kw, pad_top, pad_left, dz)


# ----------------------------------------------------------------------------------------------
# Bias, activation and max pooling, and its gradient


@kernel
def _bias_act_pool(block, bias, activation, height, width, pool_h, pool_w, out, code):
    index = cuda.grid(1)
    if index >= out.size:
        return
    _, out_h, out_w, channels = out.shape
    n, i, j, c = unravel(index, out_h, out_w, channels)
    has_bias = bias.shape[0] > 0
    best = block[(n * height + i * pool_h) * width + j * pool_w, c]
    if has_bias:
        best = best + bias[c]
    winner = 0
    for a in range(pool_h):
        for b in range(pool_w):
            k = a * pool_w + b
            if k == 0:
                continue
            z = block[(n * height + i * pool_h + a) * width + j * pool_w + b, c]
            if has_bias:
                z = z + bias[c]
            # Strict comparison: the first maximum in row-major order wins ties; a NaN beats every
            # number and nothing beats it (the first NaN wins, as np.argmax).
            if z > best or (z != z and best == best):
                best = z
                winner = k
    if activation == 1 and not best > 0:
        # A ReLU output of 0, or NaN (which stays NaN): no gradient passes there.
        out[n, i, j, c] = best if best != best else 0
        code[n, i, j, c] = -1
    else:
        out[n, i, j, c] = best
        code[n, i, j, c] = winner


def bias_act_pool(block, bias, activation, height, width, pool_h, pool_w, out, code, n_threads):
    """Bias, activation and non-overlapping max pooling of a block of convolution outputs.

    block (n_images * height * width, channels): the images' convolution outputs in row-major
    pixel order; bias (channels,) or empty; activation 0 (linear) or 1 (ReLU). out (n_images,
    out_h, out_w, channels) gets each pool_h x pool_w window's maximum of activation(block + bias),
    and code (int32) the window position (row-major) of its first maximum, or -1 where the
    gradient is zero (a ReLU output of 0, or NaN: NaN stays NaN). One thread per element of out.
    """
    if out.size:
        _bias_act_pool[grid_1d(out.size)](block, bias, activation, height, width, pool_h, pool_w, out, code)


@kernel
def _unpool_block(dpooled, code, height, width, pool_h, pool_w, dblock):
    index = cuda.grid(1)
    channels = dblock.shape[1]
    if index >= dblock.shape[0] * channels:
        return
    row, c = index // channels, index % channels
    _, out_h, out_w, _ = dpooled.shape
    w = row % width
    h = (row // width) % height
    n = row // (width * height)
    i, j = h // pool_h, w // pool_w
    dblock[row, c] = 0
    if i < out_h and j < out_w:
        k = code[n, i, j, c]
        if k >= 0 and k == (h - i * pool_h) * pool_w + (w - j * pool_w):
            dblock[row, c] = dpooled[n, i, j, c]


@kernel
def _unpool_bias(dpooled, code, dbias):
    c = cuda.grid(1)
    n_images, out_h, out_w, channels = dpooled.shape
    if c >= channels:
        return
    total = dbias[c]  # float64; image by image in order, as on the CPU
    for n in range(n_images):
        for i in range(out_h):
            for j in range(out_w):
                if code[n, i, j, c] >= 0:
                    total += float64(dpooled[n, i, j, c])
    dbias[c] = total


def unpool(dpooled, code, height, width, pool_h, pool_w, dblock, dbias, n_threads):
    """The gradient of bias_act_pool's input block: dpooled (n_images, out_h, out_w, channels)
    goes to each window's coded position, zero elsewhere; dblock as bias_act_pool's block.

    dbias (channels,) float64 accumulates the gradients that pass (the bias' gradient), image by
    image in order: one thread per element of dblock, then one per channel for dbias. An empty
    dbias skips that pass (the layers sum dblock's columns by a GEMM instead).
    """
    if dblock.size:
        _unpool_block[grid_1d(dblock.size)](dpooled, code, height, width, pool_h, pool_w, dblock)
    if dbias.shape[0] and dpooled.size:
        _unpool_bias[grid_1d(dpooled.shape[3])](dpooled, code, dbias)
