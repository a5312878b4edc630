"""The exponential activations of float32 values in float32 arithmetic (Numba); mirrors
kernels/cy/activation32.pxi. kernels/cpu/dense.py's kernels call these for float32 arrays.

sigmoid, tanh, elu, selu, softplus, exponential, swish, gelu and mish, and the gradients that need
an exponential (softplus's; swish's, gelu's and mish's from the input), with kernels/cpu/vecmath32's
functions: twice the values an instruction of the float64 work, and a few ulps from the exact
value (tests/test_activations_float32.py bounds each against a float64 reference), where the
float64 work rounds once. The formulas are activation64.py's; every constant is a float32 (a float64 one
would make Numba promote the arithmetic).
"""

import numpy as np

from . import activation64, vecmath32
from ._jit import helper

F = np.float32
ZERO, HALF, ONE, TWO = F(0.0), F(0.5), F(1.0), F(2.0)
SELU_SCALE = F(1.0507009873554804934193349852946)  # Keras 3's (and PyTorch's) selu constants
SELU_ALPHA = F(1.6732632423543772848170429916717)
INV_SQRT_2PI = F(0.39894228040143267794)  # 1 / sqrt(2 pi), the normal density's scale
# The codes whose float32 values these work out (the others, exp-free, are worked in float64).
FLOAT32_CODES = (2, 3, 5, 6, 7, 11, 12, 13, 14)


@helper(cache=False, error_model="numpy")
def sigmoid_pair(z, e):
    """(sigmoid(z), 1 - sigmoid(z)) from e = exp(-|z|), as activation64.sigmoid_pair but dividing
    (one rounding, not a reciprocal's two: mish was 4.9 ulps off)."""
    above = z >= ZERO
    return (ONE if above else e) / (ONE + e), (e if above else ONE) / (ONE + e)


@helper(cache=False, error_model="numpy")
def sigmoid(z):
    return sigmoid_pair(z, vecmath32.exp(-abs(z)))[0]


@helper(cache=False, error_model="numpy")
def _tanh_softplus_pair(z, e):
    """(tanh(softplus(z)), 1 - tanh(softplus(z))) from e = exp(-|z|), as activation64's, dividing."""
    above = z >= ZERO
    n = ONE + TWO * e if above else e * (e + TWO)
    d = n + TWO * e * e if above else n + TWO
    return n / d, (TWO * e * e if above else TWO) / d


# One function per activation, as activation64's (whose comments say why, and which has the
# exp-free ones that the rows below call in float64).
_row_helper = helper(cache=False, error_model="numpy")
_inlined = helper(cache=False, error_model="numpy", inline="always")  # see activation64


@_row_helper
def elu(z, alpha):
    """z and alpha float32, as the arguments of every function here."""
    return z if z > ZERO else alpha * vecmath32.expm1(z)


@_row_helper
def selu(z):
    return SELU_SCALE * (z if z > ZERO else SELU_ALPHA * vecmath32.expm1(z))


@_row_helper
def softplus(z):
    return (z if z > ZERO else ZERO) + vecmath32.log1p_unit(vecmath32.exp(-abs(z)))


@_row_helper
def swish(z):
    return z * sigmoid(z)


@_inlined
def gelu(z):
    """z Phi(z)."""
    tail = vecmath32.normal_tail(z)[0]
    return z * (tail if z < ZERO else ONE - tail)


@_row_helper
def mish(z):
    return z * _tanh_softplus_pair(z, vecmath32.exp(-abs(z)))[0]


@helper(cache=False, error_model="numpy")
def softplus_derivative(y, g):
    """g * sigmoid(pre) from softplus's float32 output y: sigmoid(pre) = 1 - exp(-y)."""
    return g * -vecmath32.expm1(-y)


@_row_helper
def swish_gradient(x, g):
    """g * swish'(x) of float32 input x, as the others below."""
    s, c = sigmoid_pair(x, vecmath32.exp(-abs(x)))
    return g * (s + x * s * c)


@_inlined
def gelu_gradient(x, g):
    """Phi(x) + x phi(x)."""
    tail, density = vecmath32.normal_tail(x)
    return g * ((tail if x < ZERO else ONE - tail) + x * INV_SQRT_2PI * density)


@_inlined
def mish_gradient(x, g):
    e = vecmath32.exp(-abs(x))
    t, c = _tanh_softplus_pair(x, e)
    return g * (t + x * (c * (ONE + t)) * sigmoid_pair(x, e)[0])


# One loop per code, each calling its code's function, as activation64.py's row loops.


@helper(cache=False, error_model="numpy")
def keras_activation_row(row, activation, alpha):
    """row (m,) = activation(row) in place, for codes 5 and up: FLOAT32_CODES in float32, the
    others in float64 (activation64's), rounded once."""
    if activation == 5:
        for j in range(row.shape[0]):
            row[j] = elu(row[j], alpha)
    elif activation == 6:
        for j in range(row.shape[0]):
            row[j] = selu(row[j])
    elif activation == 7:
        for j in range(row.shape[0]):
            row[j] = softplus(row[j])
    elif activation == 8:
        for j in range(row.shape[0]):
            row[j] = activation64.softsign(np.float64(row[j]))
    elif activation == 9:
        for j in range(row.shape[0]):
            row[j] = activation64.relu6(np.float64(row[j]))
    elif activation == 10:
        for j in range(row.shape[0]):
            row[j] = activation64.hard_sigmoid(np.float64(row[j]))
    elif activation == 11:
        for j in range(row.shape[0]):
            row[j] = vecmath32.exp(row[j])
    elif activation == 12:
        for j in range(row.shape[0]):
            row[j] = swish(row[j])
    elif activation == 13:
        for j in range(row.shape[0]):
            row[j] = gelu(row[j])
    elif activation == 14:
        for j in range(row.shape[0]):
            row[j] = mish(row[j])
    else:
        for j in range(row.shape[0]):
            row[j] = activation64.hard_swish(np.float64(row[j]))


@helper(cache=False, error_model="numpy")
def softplus_derivative_row(out, dout, dpre):
    """dpre (m,) = dout * softplus'(pre) from softplus's output; each entry read before it is written."""
    for j in range(out.shape[0]):
        dpre[j] = softplus_derivative(out[j], dout[j])


@helper(cache=False, error_model="numpy")
def input_derivative_row(pre, dout, dpre, activation):
    """dpre (m,) = dout * activation'(pre), for codes 12 to 15 (hard_swish's in float64); each entry
    read before it is written."""
    if activation == 12:
        for j in range(pre.shape[0]):
            dpre[j] = swish_gradient(pre[j], dout[j])
    elif activation == 13:
        for j in range(pre.shape[0]):
            dpre[j] = gelu_gradient(pre[j], dout[j])
    elif activation == 14:
        for j in range(pre.shape[0]):
            dpre[j] = mish_gradient(pre[j], dout[j])
    else:
        for j in range(pre.shape[0]):
            dpre[j] = activation64.hard_swish_gradient(np.float64(pre[j]), np.float64(dout[j]))
