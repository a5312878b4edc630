"""Keras 3's activations 5 and up (and sigmoid's pair) of float64 values, worked in float64 (Numba);
mirrors kernels/cy/dense.pyx's helpers. kernels/cpu/dense.py's kernels call these for float64
arrays, and for float32 arrays those without an exponential (kernels/cpu/activation32 has the
others), rounding the float64 result once to float32.

Activation codes: 5 elu (alpha), 6 selu, 7 softplus, 8 softsign, 9 relu6, 10 hard_sigmoid,
11 exponential, and 12 swish (silu), 13 gelu (erf, not tanh), 14 mish, 15 hard_swish (hard_silu),
whose gradient needs the activation's input. exp, expm1, log1p and the normal tail are
kernels/cpu/vecmath's, which vectorise.
"""

import numpy as np

from . import vecmath
from ._jit import helper

SELU_SCALE = 1.0507009873554804934193349852946  # Keras 3's (and PyTorch's) selu constants
SELU_ALPHA = 1.6732632423543772848170429916717
INV_SQRT_2PI = 0.39894228040143267794  # 1 / sqrt(2 pi), the normal density's scale


# The helpers pick numerators with selects, not branches returning early: the sign is random over a
# batch, and LLVM vectorises a loop through a select, not through two returns.


@helper(cache=False, error_model="numpy")
def sigmoid_pair(z, e):
    """(sigmoid(z), 1 - sigmoid(z)) of float64 z, each without cancellation, from e = exp(-|z|)
    (which never overflows)."""
    above = z >= 0  # false for NaN: NaN, as e
    inverse = 1 / (1 + e)
    return (1.0 if above else e) * inverse, (e if above else 1.0) * inverse


@helper(cache=False, error_model="numpy")
def sigmoid(z):
    """sigmoid of float64 z."""
    return sigmoid_pair(z, vecmath.exp(-abs(z)))[0]


@helper(cache=False, error_model="numpy")
def tanh_softplus_pair(z, e):
    """(tanh(softplus(z)), 1 - tanh(softplus(z))) of float64 z: with u = 1 + exp(z), tanh(log u) is
    (u^2 - 1) / (u^2 + 1), written in e = exp(-|z|) so that it never overflows: (1 + 2e) /
    (1 + 2e + 2e^2) for z >= 0, n / (n + 2) with n = e (e + 2) below."""
    above = z >= 0
    n = 1 + 2 * e if above else e * (e + 2)
    inverse = 1 / (n + 2 * e * e if above else n + 2)
    return n * inverse, (2 * e * e if above else 2.0) * inverse


@helper(cache=False, error_model="numpy")
def relu6(z):
    """min(max(z, 0), 6), comparisons false for NaN keeping it NaN."""
    if z < 0:
        return 0.0
    if z > 6:
        return 6.0
    return z


# One function per activation, each row loop below calling its own: a function of the code, called
# with the code as a constant, put every code's arithmetic into each of the eleven loops for LLVM to
# fold away again (the float64 forward kernel compiled in 3.9 s, 1.1-1.6 s now; the same speed).
# Comparisons that are false for NaN keep NaN NaN (not max/min).
_row_helper = helper(cache=False, error_model="numpy")
# Inlined by Numba (see kernels/cpu/vecmath.py): the normal tail made gelu too costly for LLVM to inline into
# its row loop, which it then left unvectorised (4.6 ms against 1.4), and so mish's gradient (4.5
# ms against 0.66).
_inlined = helper(cache=False, error_model="numpy", inline="always")


@_row_helper
def elu(z, alpha):
    """The branch with exp only below zero, where it never overflows."""
    return z if z > 0 else alpha * vecmath.expm1(z)


@_row_helper
def selu(z):
    return SELU_SCALE * (z if z > 0 else SELU_ALPHA * vecmath.expm1(z))


@_row_helper
def softplus(z):
    """log(1 + exp(z)), its exp never overflowing."""
    return (z if z > 0 else 0.0) + vecmath.log1p_unit(vecmath.exp(-abs(z)))


@_row_helper
def softsign(z):
    return z / (1 + abs(z))


@_row_helper
def hard_sigmoid(z):
    return relu6(z + 3) / 6


@_row_helper
def swish(z):
    return z * sigmoid_pair(z, vecmath.exp(-abs(z)))[0]


@_inlined
def gelu(z):
    """z Phi(z), Phi's lower tail kept (1 + erf would round it to 0) and exact in its exponent
    (vecmath.normal_tail_factors): (z r) e below 0, rounded once where it is subnormal; z (1 - r e)
    from 0 on (inf at inf, -0 at -0)."""
    r, e = vecmath.normal_tail_factors(z)
    return (z * r) * e if z < 0.0 else z * (1.0 - r * e)


@_row_helper
def mish(z):
    """z tanh(softplus(z))."""
    return z * tanh_softplus_pair(z, vecmath.exp(-abs(z)))[0]


@_row_helper
def hard_swish(z):
    return z * relu6(z + 3) / 6


# The gradients from the output y (float64), g the incoming gradient: selects, not products with 0,
# where the derivative is 0 (an inf or NaN g there gives 0, as for relu).


@_row_helper
def elu_gradient(y, g, alpha):
    """alpha >= 0: a positive output means a positive input."""
    return g if y > 0 else g * (y + alpha)


@_row_helper
def selu_gradient(y, g, alpha):
    """alpha: SELU_SCALE * SELU_ALPHA in the output's dtype (fastdl.ops.dense.SELU_GRADIENT_ALPHA)."""
    return g * SELU_SCALE if y > 0 else g * (y + alpha)


@_row_helper
def softplus_gradient(y, g):
    """sigmoid(pre) = 1 - exp(-softplus(pre))."""
    return g * -vecmath.expm1(-y)


@_row_helper
def softsign_gradient(y, g):
    return g * ((1 - abs(y)) * (1 - abs(y)))


@_row_helper
def relu6_gradient(y, g):
    return g if 0 < y < 6 else 0.0


@_row_helper
def hard_sigmoid_gradient(y, g):
    return g / 6 if 0 < y < 1 else 0.0


# The gradients from the input x (float64), g the incoming gradient.


@_row_helper
def swish_gradient(x, g):
    """g * swish'(x)."""
    s, c = sigmoid_pair(x, vecmath.exp(-abs(x)))
    return g * (s + x * s * c)


@_inlined
def gelu_gradient(x, g):
    """Phi(x) + x phi(x), both from vecmath.normal_tail_factors (one exp): (r + x / sqrt(2 pi)) e
    below 0, 1 - (r - x / sqrt(2 pi)) e above."""
    r, e = vecmath.normal_tail_factors(x)
    k = x * INV_SQRT_2PI
    return g * ((r + k) * e if x < 0.0 else 1.0 - (r - k) * e)


@_inlined
def mish_gradient(x, g):
    """tanh(sp) + x sech(sp)^2 sigmoid(x), sech^2 = (1 - tanh)(1 + tanh); one exp for both (two
    kept LLVM from inlining this)."""
    e = vecmath.exp(-abs(x))
    t, c = tanh_softplus_pair(x, e)
    return g * (t + x * (c * (1 + t)) * sigmoid_pair(x, e)[0])


@_row_helper
def hard_swish_gradient(x, g):
    """What autodiff of z * relu6(z + 3) / 6 gives, relu6' being 0 at both ends (TF, JAX): 0 at
    x = -3, 1 at x = 3; a select where it is 0, as relu."""
    if x <= -3:
        return 0.0
    if x >= 3:
        return g
    return g * ((2 * x + 3) / 6)




# One loop per code, each calling its code's function, so that each loop holds its own code's
# arithmetic only: a single loop testing the code per entry kept the tests in (LLVM did not
# unswitch it inside the kernels): relu6 ran 40x slower, hard_swish 16x.
# The helpers take NumPy's error model, as the kernels: Python's model's division checks keep a
# loop from vectorising, and no helper divides by zero.


@helper(cache=False, error_model="numpy")
def keras_activation_row(row, activation, alpha):
    """row (m,) = activation(row) in place, for codes 5 and up."""
    if activation == 5:
        for j in range(row.shape[0]):
            row[j] = elu(np.float64(row[j]), alpha)
    elif activation == 6:
        for j in range(row.shape[0]):
            row[j] = selu(np.float64(row[j]))
    elif activation == 7:
        for j in range(row.shape[0]):
            row[j] = softplus(np.float64(row[j]))
    elif activation == 8:
        for j in range(row.shape[0]):
            row[j] = softsign(np.float64(row[j]))
    elif activation == 9:
        for j in range(row.shape[0]):
            row[j] = relu6(np.float64(row[j]))
    elif activation == 10:
        for j in range(row.shape[0]):
            row[j] = hard_sigmoid(np.float64(row[j]))
    elif activation == 11:
        for j in range(row.shape[0]):
            row[j] = vecmath.exp(np.float64(row[j]))
    elif activation == 12:
        for j in range(row.shape[0]):
            row[j] = swish(np.float64(row[j]))
    elif activation == 13:
        for j in range(row.shape[0]):
            row[j] = gelu(np.float64(row[j]))
    elif activation == 14:
        for j in range(row.shape[0]):
            row[j] = mish(np.float64(row[j]))
    else:
        for j in range(row.shape[0]):
            row[j] = hard_swish(np.float64(row[j]))


@helper(cache=False, error_model="numpy")
def keras_derivative_row(out, dout, dpre, activation, alpha):
    """dpre (m,) = dout * activation'(pre) from the output, for codes 5 to 11; each entry read
    before it is written."""
    if activation == 5:
        for j in range(out.shape[0]):
            dpre[j] = elu_gradient(np.float64(out[j]), np.float64(dout[j]), alpha)
    elif activation == 6:
        for j in range(out.shape[0]):
            dpre[j] = selu_gradient(np.float64(out[j]), np.float64(dout[j]), np.float64(alpha))
    elif activation == 7:
        for j in range(out.shape[0]):
            dpre[j] = softplus_gradient(np.float64(out[j]), np.float64(dout[j]))
    elif activation == 8:
        for j in range(out.shape[0]):
            dpre[j] = softsign_gradient(np.float64(out[j]), np.float64(dout[j]))
    elif activation == 9:
        for j in range(out.shape[0]):
            dpre[j] = relu6_gradient(np.float64(out[j]), np.float64(dout[j]))
    elif activation == 10:
        for j in range(out.shape[0]):
            dpre[j] = hard_sigmoid_gradient(np.float64(out[j]), np.float64(dout[j]))
    else:
        for j in range(out.shape[0]):
            dpre[j] = np.float64(dout[j]) * np.float64(out[j])


@helper(cache=False, error_model="numpy")
def input_derivative_row(pre, dout, dpre, activation):
    """dpre (m,) = dout * activation'(pre), for codes 12 to 15; each entry read before it is written."""
    if activation == 12:
        for j in range(pre.shape[0]):
            dpre[j] = swish_gradient(np.float64(pre[j]), np.float64(dout[j]))
    elif activation == 13:
        for j in range(pre.shape[0]):
            dpre[j] = gelu_gradient(np.float64(pre[j]), np.float64(dout[j]))
    elif activation == 14:
        for j in range(pre.shape[0]):
            dpre[j] = mish_gradient(np.float64(pre[j]), np.float64(dout[j]))
    else:
        for j in range(pre.shape[0]):
            dpre[j] = hard_swish_gradient(np.float64(pre[j]), np.float64(dout[j]))


