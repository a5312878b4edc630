"""Dense-layer kernels (numpy reference); mirrors kernels/cpu/dense.py and kernels/cy/dense.pyx.

Activation codes: 0 linear, 1 relu, 2 sigmoid, 3 tanh, 4 leaky relu (slope alpha below 0).
"""

import numpy as np


def bias_activation(out, bias, activation, alpha, n_threads):
    """out (n, m) = activation(out + bias), in place; bias (m,) or empty for none; alpha (of out's
    dtype) is the leaky ReLU's slope."""
    if bias.shape[0]:
        out += bias
    if activation == 1:
        np.maximum(out, 0, out=out)
    elif activation == 2:
        # exp of -|z| never overflows: sigmoid(z) = 1 / (1 + e) for z >= 0, e / (1 + e) otherwise.
        z = out.astype(np.float64)
        e = np.exp(-np.abs(z))
        out[...] = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    elif activation == 3:
        np.tanh(out, out=out)
    elif activation == 4:
        np.multiply(out, alpha, out=out, where=out < 0)


def activation_backward(out, dout, activation, alpha, dpre, n_threads):
    """dpre (n, m) = dout * activation'(pre), from the activation's output `out` (may be dout)."""
    if activation == 1:
        # A select, not dout * (out > 0): an inf or NaN dout where the output is 0 gives 0, as the
        # compiled kernels and PyTorch's threshold_backward (inf * 0 would be NaN).
        dpre[...] = np.where(out > 0, dout, 0)
    elif activation == 2:
        dpre[...] = dout * (out * (1 - out))
    elif activation == 3:
        dpre[...] = dout * (1 - out * out)
    elif activation == 4:
        dpre[...] = np.where(out > 0, dout, dout * alpha)
    else:
        dpre[...] = dout
