"""Batch-normalisation kernels (Cython); mirrors kernels/cpu/norm.py and kernels/npy/norm.py.

x, dout, xhat, out (rows, channels): a batch with every axis but the channel axis flattened.
Per-channel sums are float64, over the rows in order, channels split among threads in blocks, so
they do not depend on the thread count.
"""

from cython cimport floating
from cython.parallel cimport prange

cdef enum:
    BLOCK = 16  # channels per task of the per-channel sums


def channel_moments(const floating[:, ::1] x, double[::1] mean, double[::1] var, int n_threads):
    """mean (channels,) and biased variance (channels,) of x's columns, in two float64 passes."""
    cdef Py_ssize_t n = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t n_blocks = (channels + BLOCK - 1) // BLOCK
    cdef Py_ssize_t blk, first, stop, i, c
    cdef double d
    with nogil:
        for blk in prange(n_blocks, num_threads=n_threads, schedule="static"):
            first = blk * BLOCK
            stop = min(channels, first + BLOCK)
            for c in range(first, stop):
                mean[c] = 0.0
                var[c] = 0.0
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


def normalize(
    const floating[:, ::1] x, const floating[::1] mean, const floating[::1] inv_std, const floating[::1] gamma,
    const floating[::1] beta, floating[:, ::1] xhat, floating[:, ::1] out, int n_threads,
):
    """xhat = (x - mean) * inv_std and out = xhat * gamma + beta, per channel."""
    cdef Py_ssize_t n = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t i, c
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            for c in range(channels):
                xhat[i, c] = (x[i, c] - mean[c]) * inv_std[c]
                out[i, c] = xhat[i, c] * gamma[c] + beta[c]


def channel_sums(
    const floating[:, ::1] dout, const floating[:, ::1] xhat, double[::1] sum_dout, double[::1] sum_dout_xhat,
    int n_threads,
):
    """Per-channel float64 sums of dout and of dout * xhat (the gradients of beta and gamma)."""
    cdef Py_ssize_t n = dout.shape[0], channels = dout.shape[1]
    cdef Py_ssize_t n_blocks = (channels + BLOCK - 1) // BLOCK
    cdef Py_ssize_t blk, first, stop, i, c
    with nogil:
        for blk in prange(n_blocks, num_threads=n_threads, schedule="static"):
            first = blk * BLOCK
            stop = min(channels, first + BLOCK)
            for c in range(first, stop):
                sum_dout[c] = 0.0
                sum_dout_xhat[c] = 0.0
            for i in range(n):
                for c in range(first, stop):
                    sum_dout[c] += dout[i, c]
                    sum_dout_xhat[c] += <double>dout[i, c] * xhat[i, c]


def normalize_backward(
    const floating[:, ::1] dout, const floating[:, ::1] xhat, const floating[::1] gamma,
    const floating[::1] inv_std, const floating[::1] mean_dxhat, const floating[::1] mean_dxhat_xhat,
    floating[:, ::1] dx, int n_threads,
):
    """dx = inv_std * (dout * gamma - mean_dxhat - xhat * mean_dxhat_xhat), per channel.

    With batch statistics the means are those of dxhat = dout * gamma and of dxhat * xhat; with
    fixed (moving) statistics they are zero.
    """
    cdef Py_ssize_t n = dout.shape[0], channels = dout.shape[1]
    cdef Py_ssize_t i, c
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            for c in range(channels):
                dx[i, c] = inv_std[c] * (dout[i, c] * gamma[c] - mean_dxhat[c] - xhat[i, c] * mean_dxhat_xhat[c])
