"""Batch-normalisation kernels (Numba); mirrors kernels/cy/norm.pyx and kernels/npy/norm.py.

x, dout, xhat, out (rows, channels): a batch with every axis but the channel axis flattened.
Per-channel sums are float64, over the rows in order, channels split among threads in blocks, so
they do not depend on the thread count.
"""

import numpy as np
from numba import prange

from ._jit import compile_kernel, launch

BLOCK = 16  # channels per task of the per-channel sums, as the Cython kernels


def _channel_moments(x, mean, var):
    n, channels = x.shape
    for blk in prange((channels + BLOCK - 1) // BLOCK):
        first = blk * BLOCK
        stop = min(channels, first + BLOCK)
        mean[first:stop] = 0.0
        var[first:stop] = 0.0
        for i in range(n):
            for c in range(first, stop):
                mean[c] += x[i, c]
        for c in range(first, stop):
            mean[c] = mean[c] / n
        for i in range(n):
            for c in range(first, stop):
                d = x[i, c] - mean[c]
                var[c] += d * d
        for c in range(first, stop):
            var[c] = var[c] / n


_moments_serial = compile_kernel(_channel_moments)
_moments_parallel = compile_kernel(_channel_moments, parallel=True)


def channel_moments(x, mean, var, n_threads):
    """mean (channels,) and biased variance (channels,) of x's columns, in two float64 passes."""
    launch(_moments_serial, _moments_parallel, n_threads, x, mean, var)


def _normalize(x, mean, inv_std, gamma, beta, xhat, out):
    n, channels = x.shape
    for i in prange(n):
        for c in range(channels):
            xhat[i, c] = (x[i, c] - mean[c]) * inv_std[c]
            out[i, c] = xhat[i, c] * gamma[c] + beta[c]


_normalize_serial = compile_kernel(_normalize)
_normalize_parallel = compile_kernel(_normalize, parallel=True)


def normalize(x, mean, inv_std, gamma, beta, xhat, out, n_threads):
    """xhat = (x - mean) * inv_std and out = xhat * gamma + beta, per channel."""
    launch(_normalize_serial, _normalize_parallel, n_threads, x, mean, inv_std, gamma, beta, xhat, out)


def _channel_sums(dout, xhat, sum_dout, sum_dout_xhat):
    n, channels = dout.shape
    for blk in prange((channels + BLOCK - 1) // BLOCK):
        first = blk * BLOCK
        stop = min(channels, first + BLOCK)
        sum_dout[first:stop] = 0.0
        sum_dout_xhat[first:stop] = 0.0
        for i in range(n):
            for c in range(first, stop):
                sum_dout[c] += dout[i, c]
                sum_dout_xhat[c] += np.float64(dout[i, c]) * xhat[i, c]


_sums_serial = compile_kernel(_channel_sums)
_sums_parallel = compile_kernel(_channel_sums, parallel=True)


def channel_sums(dout, xhat, sum_dout, sum_dout_xhat, n_threads):
    """Per-channel float64 sums of dout and of dout * xhat (the gradients of beta and gamma)."""
    launch(_sums_serial, _sums_parallel, n_threads, dout, xhat, sum_dout, sum_dout_xhat)


def _normalize_backward(dout, xhat, gamma, inv_std, mean_dxhat, mean_dxhat_xhat, dx):
    n, channels = dout.shape
    for i in prange(n):
        for c in range(channels):
            dx[i, c] = inv_std[c] * (dout[i, c] * gamma[c] - mean_dxhat[c] - xhat[i, c] * mean_dxhat_xhat[c])


_backward_serial = compile_kernel(_normalize_backward)
_backward_parallel = compile_kernel(_normalize_backward, parallel=True)


def normalize_backward(dout, xhat, gamma, inv_std, mean_dxhat, mean_dxhat_xhat, dx, n_threads):
    """dx = inv_std * (dout * gamma - mean_dxhat - xhat * mean_dxhat_xhat), per channel.

    With batch statistics the means are those of dxhat = dout * gamma and of dxhat * xhat; with
    fixed (moving) statistics they are zero.
    """
    launch(_backward_serial, _backward_parallel, n_threads, dout, xhat, gamma, inv_std, mean_dxhat, mean_dxhat_xhat,
           dx)
