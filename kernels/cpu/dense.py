"""Dense-layer kernels (Numba); mirrors kernels/cy/dense.pyx and kernels/npy/dense.py.

Activation codes: 0 linear, 1 relu, 2 sigmoid, 3 tanh, 4 leaky relu (slope alpha below 0).
"""

import numpy as np
from numba import prange

from ._jit import compile_kernel, launch


def _bias_activation(out, bias, activation, alpha):
    n, m = out.shape
    has_bias = bias.shape[0] > 0
    for i in prange(n):
        if has_bias:
            for j in range(m):
                out[i, j] += bias[j]
        if activation == 1:
            for j in range(m):
                out[i, j] = max(out[i, j], 0)
        elif activation == 2:
            for j in range(m):
                z = np.float64(out[i, j])
                # exp of -|z| never overflows.
                e = np.exp(-abs(z))
                out[i, j] = 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
        elif activation == 3:
            for j in range(m):
                out[i, j] = np.tanh(np.float64(out[i, j]))
        elif activation == 4:
            for j in range(m):
                if out[i, j] < 0:
                    out[i, j] = out[i, j] * alpha


_bias_serial = compile_kernel(_bias_activation)
_bias_parallel = compile_kernel(_bias_activation, parallel=True)


def bias_activation(out, bias, activation, alpha, n_threads):
    """out (n, m) = activation(out + bias), in place; bias (m,) or empty for none; alpha (of out's
    dtype) is the leaky ReLU's slope."""
    launch(_bias_serial, _bias_parallel, n_threads, out, bias, activation, alpha)


def _activation_backward(out, dout, activation, alpha, dpre):
    n, m = out.shape
    for i in prange(n):
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


_backward_serial = compile_kernel(_activation_backward)
_backward_parallel = compile_kernel(_activation_backward, parallel=True)


def activation_backward(out, dout, activation, alpha, dpre, n_threads):
    """dpre (n, m) = dout * activation'(pre), from the activation's output `out` (may be dout)."""
    launch(_backward_serial, _backward_parallel, n_threads, out, dout, activation, alpha, dpre)
