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

from . import vecmath32
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


@helper(cache=False, error_model="numpy", inline="always")  # inlined by Numba: see kernels/cpu/vecmath.py
def keras_activation(z, activation, alpha):
    """Codes 5, 6, 7, 11, 12, 13 and 14 of float32 z (alpha float32), Keras 3's definitions."""
    if activation == 5:  # elu
        return z if z > ZERO else alpha * vecmath32.expm1(z)
    if activation == 6:
        return SELU_SCALE * (z if z > ZERO else SELU_ALPHA * vecmath32.expm1(z))
    if activation == 7:  # softplus
        return (z if z > ZERO else ZERO) + vecmath32.log1p_unit(vecmath32.exp(-abs(z)))
    if activation == 11:
        return vecmath32.exp(z)
    if activation == 12:  # swish
        return z * sigmoid(z)
    if activation == 13:  # gelu = z * Phi(z)
        tail = vecmath32.normal_tail(z)[0]
        return z * (tail if z < ZERO else ONE - tail)
    return z * _tanh_softplus_pair(z, vecmath32.exp(-abs(z)))[0]  # mish


@helper(cache=False, error_model="numpy")
def softplus_derivative(y, g):
    """g * sigmoid(pre) from softplus's float32 output y: sigmoid(pre) = 1 - exp(-y)."""
    return g * -vecmath32.expm1(-y)


@helper(cache=False, error_model="numpy", inline="always")
def input_derivative(x, g, activation):
    """g * activation'(x) of float32 input x, for codes 12 to 14."""
    if activation == 12:
        s, c = sigmoid_pair(x, vecmath32.exp(-abs(x)))
        return g * (s + x * s * c)
    if activation == 13:  # Phi(x) + x * phi(x)
        tail, density = vecmath32.normal_tail(x)
        return g * ((tail if x < ZERO else ONE - tail) + x * INV_SQRT_2PI * density)
    e = vecmath32.exp(-abs(x))  # mish
    t, c = _tanh_softplus_pair(x, e)
    return g * (t + x * (c * (ONE + t)) * sigmoid_pair(x, e)[0])


# One loop per code, the code a constant in each, as activation64.py's row loops.


@helper(cache=False, error_model="numpy")
def keras_activation_row(row, activation, alpha):
    """row (m,) = activation(row) in place, for the codes 5 and up among FLOAT32_CODES."""
    if activation == 5:
        for j in range(row.shape[0]):
            row[j] = keras_activation(row[j], 5, alpha)
    elif activation == 6:
        for j in range(row.shape[0]):
            row[j] = keras_activation(row[j], 6, alpha)
    elif activation == 7:
        for j in range(row.shape[0]):
            row[j] = keras_activation(row[j], 7, alpha)
    elif activation == 11:
        for j in range(row.shape[0]):
            row[j] = keras_activation(row[j], 11, alpha)
    elif activation == 12:
        for j in range(row.shape[0]):
            row[j] = keras_activation(row[j], 12, alpha)
    elif activation == 13:
        for j in range(row.shape[0]):
            row[j] = keras_activation(row[j], 13, alpha)
    else:
        for j in range(row.shape[0]):
            row[j] = keras_activation(row[j], 14, alpha)


@helper(cache=False, error_model="numpy")
def softplus_derivative_row(out, dout, dpre):
    """dpre (m,) = dout * softplus'(pre) from softplus's output; each entry read before it is written."""
    for j in range(out.shape[0]):
        dpre[j] = softplus_derivative(out[j], dout[j])


@helper(cache=False, error_model="numpy")
def input_derivative_row(pre, dout, dpre, activation):
    """dpre (m,) = dout * activation'(pre), for codes 12 to 14; each entry read before it is written."""
    if activation == 12:
        for j in range(pre.shape[0]):
            dpre[j] = input_derivative(pre[j], dout[j], 12)
    elif activation == 13:
        for j in range(pre.shape[0]):
            dpre[j] = input_derivative(pre[j], dout[j], 13)
    else:
        for j in range(pre.shape[0]):
            dpre[j] = input_derivative(pre[j], dout[j], 14)
