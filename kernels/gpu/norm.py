"""Batch-normalisation kernels (numba.cuda); mirrors kernels/cpu/norm.py and kernels/npy/norm.py.

x, dout, xhat, out, dx (rows, channels) are device arrays: a batch with every axis but the channel
axis flattened. The per-channel reductions (channel_moments, channel_sums) sum in float64. Below
BLOCK_ROWS rows they run one thread per channel, each looping over the rows in order: the same
sums in the same order as the CPU kernels (the same bits on the simulator; on a device NVVM may
fuse d * d + sum into one rounding, so they agree to rounding). From BLOCK_ROWS rows on (a
convolution's output: images x pixels rows) that would leave the device nearly idle, so a block
takes COLUMNS_PER_BLOCK neighbouring channels and ROW_GROUPS interleaved groups of rows
(kernels/gpu/_launch.py); each thread sums its group, and the groups' sums are added by a fixed tree
in shared memory: deterministic, and within rounding of the CPU's order.
The elementwise passes (normalize, normalize_backward) run one thread per entry, in the arrays'
dtype.
"""

from numba import cuda, float64

from ._launch import COLUMNS_PER_BLOCK, ROW_GROUPS, column_blocks, grid_1d, groups_total, kernel

# From this many rows on, the reductions take a block of threads per COLUMNS_PER_BLOCK channels.
BLOCK_ROWS = 1024


@kernel
def _channel_moments(x, mean, var):
    c = cuda.grid(1)
    if c >= x.shape[1]:
        return
    n = x.shape[0]
    total = 0.0
    for i in range(n):
        total += float64(x[i, c])  # float64 here and in the simulator (where x[i, c] * 1.0 would stay float32)
    centre = total / n
    squares = 0.0
    for i in range(n):
        d = float64(x[i, c]) - centre
        squares += d * d
    mean[c] = centre
    var[c] = squares / n


@kernel
def _channel_moments_blocks(x, mean, var):
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    c = cuda.blockIdx.x * COLUMNS_PER_BLOCK + tx
    partials = cuda.shared.array((ROW_GROUPS, COLUMNS_PER_BLOCK), float64)
    n, channels = x.shape
    total = 0.0
    if c < channels:  # no early return: every thread takes part in the tree
        for i in range(ty, n, ROW_GROUPS):
            total += float64(x[i, c])
    partials[ty, tx] = total
    centre = groups_total(partials, tx, ty) / n
    squares = 0.0
    if c < channels:
        for i in range(ty, n, ROW_GROUPS):
            d = float64(x[i, c]) - centre
            squares += d * d
    partials[ty, tx] = squares
    spread = groups_total(partials, tx, ty)
    if c < channels and ty == 0:
        mean[c] = centre
        var[c] = spread / n


def channel_moments(x, mean, var, n_threads):
    """mean (channels,) and biased variance (channels,) float64 of x's columns, in two float64
    passes over the rows (in order below BLOCK_ROWS rows, by row groups from there on; see the
    module docstring). n_threads is unused."""
    if not x.shape[1]:
        return
    if x.shape[0] >= BLOCK_ROWS:
        _channel_moments_blocks[column_blocks(x.shape[1])](x, mean, var)
    else:
        _channel_moments[grid_1d(x.shape[1])](x, mean, var)


@kernel
def _normalize(x, mean, inv_std, gamma, beta, xhat, out):
    index = cuda.grid(1)
    channels = x.shape[1]
    if index >= x.shape[0] * channels:
        return
    i, c = index // channels, index % channels
    xhat[i, c] = (x[i, c] - mean[c]) * inv_std[c]
    out[i, c] = xhat[i, c] * gamma[c] + beta[c]


def normalize(x, mean, inv_std, gamma, beta, xhat, out, n_threads):
    """xhat = (x - mean) * inv_std and out = xhat * gamma + beta, per channel; one thread per
    entry. n_threads is unused."""
    size = x.shape[0] * x.shape[1]
    if size:
        _normalize[grid_1d(size)](x, mean, inv_std, gamma, beta, xhat, out)


@kernel
def _channel_sums(dout, xhat, sum_dout, sum_dout_xhat):
    c = cuda.grid(1)
    if c >= dout.shape[1]:
        return
    total = 0.0
    total_xhat = 0.0
    for i in range(dout.shape[0]):
        g = float64(dout[i, c])
        total += g
        total_xhat += g * xhat[i, c]
    sum_dout[c] = total
    sum_dout_xhat[c] = total_xhat


@kernel
def _channel_sums_blocks(dout, xhat, sum_dout, sum_dout_xhat):
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    c = cuda.blockIdx.x * COLUMNS_PER_BLOCK + tx
    partials = cuda.shared.array((ROW_GROUPS, COLUMNS_PER_BLOCK), float64)
    n, channels = dout.shape
    total = 0.0
    total_xhat = 0.0
    if c < channels:
        for i in range(ty, n, ROW_GROUPS):
            g = float64(dout[i, c])
            total += g
            total_xhat += g * xhat[i, c]
    partials[ty, tx] = total
    total = groups_total(partials, tx, ty)
    partials[ty, tx] = total_xhat
    total_xhat = groups_total(partials, tx, ty)
    if c < channels and ty == 0:
        sum_dout[c] = total
        sum_dout_xhat[c] = total_xhat


def channel_sums(dout, xhat, sum_dout, sum_dout_xhat, n_threads):
    """Per-channel float64 sums of dout and of dout * xhat (the gradients of beta and gamma), rows
    in order below BLOCK_ROWS rows, by row groups from there on. n_threads is unused."""
    if not dout.shape[1]:
        return
    if dout.shape[0] >= BLOCK_ROWS:
        _channel_sums_blocks[column_blocks(dout.shape[1])](dout, xhat, sum_dout, sum_dout_xhat)
    else:
        _channel_sums[grid_1d(dout.shape[1])](dout, xhat, sum_dout, sum_dout_xhat)


@kernel
def _normalize_backward(dout, xhat, gamma, inv_std, mean_dxhat, mean_dxhat_xhat, dx):
    index = cuda.grid(1)
    channels = dout.shape[1]
    if index >= dout.shape[0] * channels:
        return
    i, c = index // channels, index % channels
    dx[i, c] = inv_std[c] * (dout[i, c] * gamma[c] - mean_dxhat[c] - xhat[i, c] * mean_dxhat_xhat[c])


def normalize_backward(dout, xhat, gamma, inv_std, mean_dxhat, mean_dxhat_xhat, dx, n_threads):
    """dx = inv_std * (dout * gamma - mean_dxhat - xhat * mean_dxhat_xhat), per channel; one
    thread per entry. n_threads is unused.

    With batch statistics the means are those of dxhat = dout * gamma and of dxhat * xhat; with
    fixed (moving) statistics they are zero.
    """
    size = dout.shape[0] * dout.shape[1]
    if size:
        _normalize_backward[grid_1d(size)](dout, xhat, gamma, inv_std, mean_dxhat, mean_dxhat_xhat, dx)
