"""Dense-layer kernels (numba.cuda); mirrors kernels/cpu/dense.py and kernels/npy/dense.py.

Activation codes: 0 linear, 1 relu, 2 sigmoid, 3 tanh, 4 leaky relu (slope alpha below 0).

The layer's product is a GEMM (kernels/gpu/_gemm.py); these are the elementwise passes around it,
one thread per entry (activation_backward_sums: a block of columns), with the CPU kernel's
arithmetic: the bias added in out's dtype, sigmoid and tanh worked in float64 and rounded once to
out's dtype. All arrays are device arrays of any strides.
"""

import math

from numba import cuda, float64

from ._launch import COLUMNS_PER_BLOCK, ROW_GROUPS, column_blocks, grid_1d, groups_total, kernel


@kernel
def _bias_activation(out, bias, activation, alpha):
    index = cuda.grid(1)
    if index >= out.size:
        return
    m = out.shape[1]
    i, j = index // m, index % m
    if bias.shape[0] > 0:
        out[i, j] += bias[j]
    if activation == 1:
        if out[i, j] < 0:  # not max(): NaN stays NaN, as np.maximum
            out[i, j] = 0
    elif activation == 2:
        z = float64(out[i, j])  # not out * 1.0, which NumPy 2 keeps float32 on the simulator
        e = math.exp(-math.fabs(z))  # exp of -|z| never overflows
        if z >= 0:
            out[i, j] = 1.0 / (1.0 + e)
        else:
            out[i, j] = e / (1.0 + e)
    elif activation == 3:
        out[i, j] = math.tanh(float64(out[i, j]))
    elif activation == 4:
        if out[i, j] < 0:
            out[i, j] = out[i, j] * alpha


def bias_activation(out, bias, activation, alpha, n_threads):
    """out (n, m) = activation(out + bias), in place; bias (m,) or empty for none; alpha (of out's
    dtype) is the leaky ReLU's slope. n_threads is unused."""
    if out.size == 0:
        return
    _bias_activation[grid_1d(out.size)](out, bias, activation, alpha)


@cuda.jit(device=True)
def _backward_entry(out, dout, activation, alpha, dpre, i, j):
    """dpre[i, j] = dout[i, j] * activation'(pre[i, j]). It reads its entry of out and dout before
    writing the same entry of dpre, so any of them may be the same array."""
    if activation == 1:
        if out[i, j] > 0:
            dpre[i, j] = dout[i, j]
        else:
            dpre[i, j] = 0
    elif activation == 2:
        dpre[i, j] = dout[i, j] * (out[i, j] * (1 - out[i, j]))
    elif activation == 3:
        dpre[i, j] = dout[i, j] * (1 - out[i, j] * out[i, j])
    elif activation == 4:
        # alpha >= 0: a non-positive output means a non-positive input.
        if out[i, j] > 0:
            dpre[i, j] = dout[i, j]
        else:
            dpre[i, j] = dout[i, j] * alpha
    else:
        dpre[i, j] = dout[i, j]


@kernel
def _activation_backward(out, dout, activation, alpha, dpre):
    index = cuda.grid(1)
    if index < dpre.size:
        m = dpre.shape[1]
        _backward_entry(out, dout, activation, alpha, dpre, index // m, index % m)


def activation_backward(out, dout, activation, alpha, dpre, n_threads):
    """dpre (n, m) = dout * activation'(pre), from the activation's output `out` (may be dout).
    n_threads is unused."""
    if dpre.size == 0:
        return
    _activation_backward[grid_1d(dpre.size)](out, dout, activation, alpha, dpre)


@kernel
def _activation_backward_sums(out, dout, activation, alpha, dpre, sums):
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    j = cuda.blockIdx.x * COLUMNS_PER_BLOCK + tx
    partials = cuda.shared.array((ROW_GROUPS, COLUMNS_PER_BLOCK), float64)
    n, m = dpre.shape
    total = 0.0
    if j < m:  # no early return: every thread takes part in the tree
        for i in range(ty, n, ROW_GROUPS):
            _backward_entry(out, dout, activation, alpha, dpre, i, j)
            total += float64(dpre[i, j])
    partials[ty, tx] = total
    total = groups_total(partials, tx, ty)
    if j < m and ty == 0:
        sums[j] = total


def activation_backward_sums(out, dout, activation, alpha, dpre, sums, n_threads):
    """activation_backward, and sums (m,) = dpre's column sums (a dense layer's bias gradient) in
    the same launch: a block per COLUMNS_PER_BLOCK columns, its row groups' float64 sums added by a
    fixed tree (kernels/gpu/_launch.py), rounded once to sums' dtype. For the few rows of a batch
    (a convolution's images x pixels rows would leave the device idle: its bias gradient is a GEMM).
    The CPU backends run activation_backward and a GEMV. n_threads is unused."""
    if dpre.shape[1] == 0:
        return
    _activation_backward_sums[column_blocks(dpre.shape[1])](out, dout, activation, alpha, dpre, sums)
