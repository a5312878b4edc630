"""Dense-layer kernels (numba.cuda); mirrors kernels/cpu/dense.py and kernels/npy/dense.py.

Activation codes: 0 linear, 1 relu, 2 sigmoid, 3 tanh, 4 leaky relu (slope alpha below 0), and
Keras 3's 5 elu (alpha), 6 selu, 7 softplus, 8 softsign, 9 relu6, 10 hard_sigmoid, 11 exponential,
and 12 swish (silu), 13 gelu (erf, not tanh), 14 mish, 15 hard_swish (hard_silu), whose gradient
needs the activation's input (activation_backward_input).

The layer's product is a GEMM (kernels/gpu/_gemm.py); these are the elementwise passes around it,
one thread per entry (activation_backward_sums: a block of columns), with the CPU kernel's
arithmetic: the bias added in out's dtype, sigmoid, tanh and codes 5 and up (both ways) worked in
float64 and rounded once to out's dtype. All arrays are device arrays of any strides.
"""

import math
import sys

from numba import cuda, float64

from ..cpu.vecmath import _erfcx_scaled
from ._launch import COLUMNS_PER_BLOCK, ROW_GROUPS, column_blocks, grid_1d, groups_total, kernel

SELU_SCALE = 1.0507009873554804934193349852946  # Keras 3's (and PyTorch's) selu constants
SELU_ALPHA = 1.6732632423543772848170429916717
SQRT1_2 = 0.70710678118654752440  # 1 / sqrt(2)
INV_SQRT_2PI = 0.39894228040143267794  # 1 / sqrt(2 pi), the normal density's scale
# Above it exp is inf: said here, as numba's CUDA simulator runs Python's math.exp, which raises.
LOG_MAX = math.log(sys.float_info.max)
HIGH_BITS_UNIT = 2.0 ** -20  # z's bits down to 2^-20 are its first 26 or fewer where |z| <= 40

# erfcx's polynomial, the CPU kernels' own (kernels/cpu/vecmath.py), compiled for the device.
_erfcx_polynomial = cuda.jit(device=True)(_erfcx_scaled.py_func)


@cuda.jit(device=True)
def _normal_tail_factors(z):
    """(r, e) with Phi(-|z|) = r e, as kernels/cpu/vecmath.normal_tail_factors: e = e^(-z^2 / 2)
    without z^2's rounding, z split at 2^-20 (h^2 exact) by fmod, exact: not by its bits (the
    simulator runs this as Python) nor by a product (the device would fuse Veltkamp's split)."""
    a = math.fabs(z)
    a = 40.0 if a > 40.0 else a
    h = a - math.fmod(a, HIGH_BITS_UNIT)
    b = 0.5 * ((a - h) * (a + h))
    density = math.exp(-0.5 * (h * h)) * (1.0 - b * (1.0 - b * (0.5 - b / 6.0)))
    u = a * SQRT1_2
    return 0.5 * (_erfcx_polynomial((u - 3.0) / (u + 3.0)) / (1.0 + 2.0 * u)), density


@cuda.jit(device=True)
def _keras_activation(z, activation, alpha):
    """Codes 5 to 11 of float64 z. Comparisons that are false for NaN keep NaN NaN (not max/min)."""
    if activation == 5:  # elu; the branch with exp only below zero, where it never overflows
        return z if z > 0 else alpha * math.expm1(z)
    if activation == 6:
        return SELU_SCALE * (z if z > 0 else SELU_ALPHA * math.expm1(z))
    if activation == 7:  # softplus = log(1 + exp(z)), its exp never overflowing
        return (z if z > 0 else 0.0) + math.log1p(math.exp(-math.fabs(z)))
    if activation == 8:
        return z / (1 + math.fabs(z))
    if activation == 9 or activation == 10:  # relu6(z), hard_sigmoid = relu6(z + 3) / 6
        y = z if activation == 9 else z + 3
        if y < 0:
            y = 0.0
        elif y > 6:
            y = 6.0
        return y if activation == 9 else y / 6
    return math.inf if z > LOG_MAX else math.exp(z)


@cuda.jit(device=True)
def _sigmoid_pair(z):
    """(sigmoid(z), 1 - sigmoid(z)) of float64 z, each without cancellation; exp of -|z| never overflows."""
    e = math.exp(-math.fabs(z))
    if z >= 0:
        return 1 / (1 + e), e / (1 + e)
    return e / (1 + e), 1 / (1 + e)  # NaN too


@cuda.jit(device=True)
def _tanh_softplus_pair(z):
    """(tanh(softplus(z)), 1 - tanh(softplus(z))) of float64 z: with u = 1 + exp(z), tanh(log u) is
    (u^2 - 1) / (u^2 + 1), written in exp(-|z|) so that it never overflows."""
    e = math.exp(-math.fabs(z))
    if z >= 0:
        above = 1 + 2 * e + 2 * e * e
        return (1 + 2 * e) / above, 2 * e * e / above
    n = e * (e + 2)
    return n / (n + 2), 2 / (n + 2)


@cuda.jit(device=True)
def _input_activation(z, activation):
    """Codes 12 to 15 of float64 z, Keras 3's definitions. NaN stays NaN."""
    if activation == 12:  # swish = z * sigmoid(z)
        return z * _sigmoid_pair(z)[0]
    if activation == 13:  # gelu = z * Phi(z), Phi's lower tail kept (1 + erf would round it to 0)
        r, e = _normal_tail_factors(z)
        return (z * r) * e if z < 0 else z * (1.0 - r * e)
    if activation == 14:  # mish = z * tanh(softplus(z))
        return z * _tanh_softplus_pair(z)[0]
    y = z + 3  # hard_swish = z * relu6(z + 3) / 6; comparisons false for NaN keep it
    if y < 0:
        y = 0.0
    elif y > 6:
        y = 6.0
    return z * y / 6


@cuda.jit(device=True)
def _input_derivative(x, g, activation):
    """g * activation'(x) of float64 input x, for codes 12 to 15."""
    if activation == 12:
        s, c = _sigmoid_pair(x)
        return g * (s + x * s * c)
    if activation == 13:  # Phi(x) + x * phi(x)
        r, e = _normal_tail_factors(x)
        k = x * INV_SQRT_2PI
        return g * ((r + k) * e if x < 0 else 1.0 - (r - k) * e)
    if activation == 14:  # tanh(sp) + x * sech(sp)^2 * sigmoid(x), sech^2 = (1 - tanh)(1 + tanh)
        t, c = _tanh_softplus_pair(x)
        return g * (t + x * (c * (1 + t)) * _sigmoid_pair(x)[0])
    # What autodiff of z * relu6(z + 3) / 6 gives, relu6' being 0 at both ends (TF, JAX): 0 at
    # x = -3, 1 at x = 3; a select where it is 0, as relu.
    if x <= -3:
        return 0.0
    if x >= 3:
        return g
    return g * ((2 * x + 3) / 6)


@cuda.jit(device=True)
def _keras_derivative(y, g, activation, alpha):
    """g * activation'(pre) from the float64 output y, for codes 5 to 11; selects, not products
    with 0, where the derivative is 0 (an inf or NaN g there gives 0, as for relu)."""
    if activation == 5:  # alpha >= 0: a positive output means a positive input
        return g if y > 0 else g * (y + alpha)
    if activation == 6:
        return g * SELU_SCALE if y > 0 else g * (y + alpha)  # alpha: fastdl.ops.dense.SELU_GRADIENT_ALPHA
    if activation == 7:  # sigmoid(pre) = 1 - exp(-softplus(pre))
        return g * -math.expm1(-y)
    if activation == 8:
        return g * ((1 - math.fabs(y)) * (1 - math.fabs(y)))
    if activation == 9:
        return g if 0 < y < 6 else 0.0
    if activation == 10:
        return g / 6 if 0 < y < 1 else 0.0
    return g * y


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
    elif activation >= 12:
        out[i, j] = _input_activation(float64(out[i, j]), activation)
    elif activation >= 5:
        out[i, j] = _keras_activation(float64(out[i, j]), activation, alpha)


def bias_activation(out, bias, activation, alpha, n_threads):
    """out (n, m) = activation(out + bias), in place; bias (m,) or empty for none; alpha (of out's
    dtype) is the leaky ReLU's slope, or elu's scale below zero. n_threads is unused."""
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
    elif activation >= 5:
        dpre[i, j] = _keras_derivative(float64(out[i, j]), float64(dout[i, j]), activation, alpha)
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
def _activation_backward_input(pre, dout, activation, dpre):
    index = cuda.grid(1)
    if index < dpre.size:
        m = dpre.shape[1]
        i, j = index // m, index % m
        # pre and dout read before dpre's entry is written: dpre may be dout.
        dpre[i, j] = _input_derivative(float64(pre[i, j]), float64(dout[i, j]), activation)


def activation_backward_input(pre, dout, activation, dpre, n_threads):
    """dpre (n, m) = dout * activation'(pre) for codes 12 to 15, from the activation's input `pre`
    (dpre may be dout). n_threads is unused."""
    if dpre.size == 0:
        return
    _activation_backward_input[grid_1d(dpre.size)](pre, dout, activation, dpre)


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
