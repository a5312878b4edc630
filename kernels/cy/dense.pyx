"""Dense-layer kernels (Cython); mirrors kernels/cpu/dense.py and kernels/npy/dense.py.

Activation codes: 0 linear, 1 relu, 2 sigmoid, 3 tanh, 4 leaky relu (slope alpha below 0).
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, fabs, tanh


def bias_activation(floating[:, ::1] out, const floating[::1] bias, int activation, floating alpha, int n_threads):
    """out (n, m) = activation(out + bias), in place; bias (m,) or empty for none; alpha is the
    leaky ReLU's slope."""
    cdef Py_ssize_t n = out.shape[0], m = out.shape[1]
    cdef Py_ssize_t i, j
    cdef bint has_bias = bias.shape[0] > 0
    cdef floating* row
    cdef double z, e
    if n == 0 or m == 0:
        return
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            row = &out[i, 0]
            if has_bias:
                for j in range(m):
                    row[j] = row[j] + bias[j]
            if activation == 1:
                for j in range(m):
                    # Not `row[j] if row[j] > 0 else 0`: NaN stays NaN, as np.maximum and the Numba kernel.
                    if row[j] < 0:
                        row[j] = 0
            elif activation == 2:
                for j in range(m):
                    z = row[j]
                    # exp of -|z| never overflows.
                    e = exp(-fabs(z))
                    row[j] = <floating>(1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e))
            elif activation == 3:
                for j in range(m):
                    row[j] = <floating>tanh(<double>row[j])
            elif activation == 4:
                for j in range(m):
                    if row[j] < 0:
                        row[j] = row[j] * alpha


def activation_backward(
    const floating[:, ::1] out, const floating[:, ::1] dout, int activation, floating alpha,
    floating[:, ::1] dpre, int n_threads,
):
    """dpre (n, m) = dout * activation'(pre), from the activation's output `out` (may be dout)."""
    cdef Py_ssize_t n = out.shape[0], m = out.shape[1]
    cdef Py_ssize_t i, j
    if n == 0 or m == 0:
        return
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            if activation == 1:
                for j in range(m):
                    dpre[i, j] = dout[i, j] if out[i, j] > 0 else 0
            elif activation == 2:
                for j in range(m):
                    dpre[i, j] = dout[i, j] * (out[i, j] * (1 - out[i, j]))
            elif activation == 3:
                for j in range(m):
                    dpre[i, j] = dout[i, j] * (1 - out[i, j] * out[i, j])
            elif activation == 4:
                # alpha >= 0: a non-positive output means a non-positive input.
                for j in range(m):
                    dpre[i, j] = dout[i, j] if out[i, j] > 0 else dout[i, j] * alpha
            else:
                for j in range(m):
                    dpre[i, j] = dout[i, j]
