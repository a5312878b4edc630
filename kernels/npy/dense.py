"""Dense-layer kernels (numpy reference); mirrors kernels/cpu/dense.py and kernels/cy/dense.pyx.

Activation codes: 0 linear, 1 relu, 2 sigmoid, 3 tanh, 4 leaky relu (slope alpha below 0), and
Keras 3's 5 elu (alpha), 6 selu, 7 softplus, 8 softsign, 9 relu6, 10 hard_sigmoid, 11 exponential,
and 12 swish (silu), 13 gelu (erf, not tanh), 14 mish, 15 hard_swish (hard_silu), whose gradient
needs the activation's input (activation_backward_input). Codes 5 and up are worked in float64 and
rounded once to out's dtype, as sigmoid, both ways.
"""

import numpy as np
from scipy.special import erfcx, ndtr

SELU_SCALE = 1.0507009873554804934193349852946  # Keras 3's (and PyTorch's) selu constants
SELU_ALPHA = 1.6732632423543772848170429916717
SQRT1_2 = 0.70710678118654752440  # 1 / sqrt(2)
INV_SQRT_2PI = 0.39894228040143267794  # 1 / sqrt(2 pi), the normal density's scale
HIGH_26_BITS = -(1 << 27)  # float64 bits that keep a value's first 26 significant bits


def _sigmoid_pair(z):
    """(sigmoid(z), 1 - sigmoid(z)) of float64 z, each without cancellation; exp of -|z| never overflows."""
    e = np.exp(-np.abs(z))
    high, low = 1 / (1 + e), e / (1 + e)
    return np.where(z >= 0, high, low), np.where(z >= 0, low, high)


def _tanh_softplus_pair(z):
    """(tanh(softplus(z)), 1 - tanh(softplus(z))) of float64 z: with u = 1 + exp(z), tanh(log u) is
    (u^2 - 1) / (u^2 + 1), written in exp(-|z|) so that it never overflows."""
    e = np.exp(-np.abs(z))
    above = 1 + 2 * e + 2 * e * e  # z >= 0: numerator 1 + 2e, 1 - tanh = 2e^2 / above
    n = e * (e + 2)  # z < 0: tanh = n / (n + 2), 1 - tanh = 2 / (n + 2)
    return np.where(z >= 0, (1 + 2 * e) / above, n / (n + 2)), np.where(z >= 0, 2 * e * e / above, 2 / (n + 2))


def _normal_tail_factors(z):
    """(r, e) of float64 z with Phi(-|z|) = r e (as kernels/cpu/vecmath.normal_tail_factors): e =
    e^(-z^2 / 2) without z^2's rounding (z^2 = h^2 + d, h z's first 26 bits, h^2 exact), and
    r = erfcx(|z| / sqrt(2)) / 2, scipy's erfcx (no underflow, slowly varying: the quotient's
    rounding costs nothing, where erfc's argument carries it z^2 / 2 times)."""
    a = np.minimum(np.abs(z), 40.0)
    h = (a.view(np.int64) & HIGH_26_BITS).view(np.float64)
    b = 0.5 * ((a - h) * (a + h))
    return 0.5 * erfcx(a * SQRT1_2), np.exp(-0.5 * (h * h)) * (1 - b * (1 - b * (0.5 - b / 6)))


def _input_activation(z, activation):
    """Codes 12 to 15 of float64 z, Keras 3's definitions. NaN stays NaN."""
    if activation == 12:  # swish = z * sigmoid(z)
        return z * _sigmoid_pair(z)[0]
    if activation == 13:  # gelu = z * Phi(z), Phi's lower tail kept (1 + erf would round it to 0)
        r, e = _normal_tail_factors(z)
        tail = np.where(z < 0, (z * r) * e, z * (1 - r * e))
        # Below |z| = 1 scipy's ndtr (erf of the rounded z / sqrt(2), whose rounding costs little
        # there) is within 4 ulps, its erfcx up to 9; above, erfcx is within 8, ndtr up to 12.
        return np.where(np.abs(z) < 1, z * ndtr(z), tail)
    if activation == 14:  # mish = z * tanh(softplus(z))
        return z * _tanh_softplus_pair(z)[0]
    return z * np.minimum(np.maximum(z + 3, 0), 6) / 6  # hard_swish = z * relu6(z + 3) / 6


def _input_derivative(x, g, activation):
    """g * activation'(x) of float64 input x, for codes 12 to 15."""
    if activation == 12:
        s, c = _sigmoid_pair(x)
        return g * (s + x * s * c)
    if activation == 13:  # Phi(x) + x * phi(x)
        r, e = _normal_tail_factors(x)
        k = x * INV_SQRT_2PI
        return g * np.where(x < 0, (r + k) * e, 1 - (r - k) * e)
    if activation == 14:  # tanh(sp) + x * sech(sp)^2 * sigmoid(x), sech^2 = (1 - tanh)(1 + tanh)
        t, c = _tanh_softplus_pair(x)
        return g * (t + x * (c * (1 + t)) * _sigmoid_pair(x)[0])
    # What autodiff of z * relu6(z + 3) / 6 gives, relu6' being 0 at both ends (TF, JAX): 0 at
    # x = -3, 1 at x = 3; a select where it is 0, as relu.
    return np.where(x <= -3, 0, np.where(x >= 3, g, g * ((2 * x + 3) / 6)))


def _keras_activation(z, activation, alpha):
    """Codes 5 to 11 of float64 z. NaN stays NaN (np.maximum and np.minimum pass it on)."""
    if activation == 5:  # elu; expm1 of min(z, 0): the branch not taken never overflows
        return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))
    if activation == 6:
        return SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0)))
    if activation == 7:  # softplus = log(1 + exp(z)), its exp never overflowing
        return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))
    if activation == 8:
        return z / (1 + np.abs(z))
    if activation == 9:
        return np.minimum(np.maximum(z, 0), 6)
    if activation == 10:  # hard_sigmoid = relu6(z + 3) / 6
        return np.minimum(np.maximum(z + 3, 0), 6) / 6
    return np.exp(z)


def _keras_derivative(y, g, activation, alpha):
    """g * activation'(pre) from the float64 output y, for codes 5 to 11; selects, not products
    with 0, where the derivative is 0 (an inf or NaN g there gives 0, as for relu)."""
    if activation == 5:  # alpha >= 0: a positive output means a positive input
        return np.where(y > 0, g, g * (y + alpha))
    if activation == 6:
        return np.where(y > 0, g * SELU_SCALE, g * (y + alpha))  # alpha: fastdl.ops.dense.SELU_GRADIENT_ALPHA
    if activation == 7:  # sigmoid(pre) = 1 - exp(-softplus(pre))
        return g * -np.expm1(-y)
    if activation == 8:
        return g * (1 - np.abs(y)) ** 2
    if activation == 9:
        return np.where((y > 0) & (y < 6), g, 0)
    if activation == 10:
        return np.where((y > 0) & (y < 1), g / 6, 0)
    return g * y


def bias_activation(out, bias, activation, alpha, n_threads):
    """out (n, m) = activation(out + bias), in place; bias (m,) or empty for none; alpha (of out's
    dtype) is the leaky ReLU's slope, or elu's scale below zero."""
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
    elif activation >= 12:
        with np.errstate(over="ignore", invalid="ignore"):  # an inf input's inf * 0, as Keras'
            out[...] = _input_activation(out.astype(np.float64), activation)
    elif activation >= 5:
        # Overflow to inf (exponential, selu or a float32 rounding) is the answer, as in the
        # compiled kernels, not a warning; so is softsign's NaN for an infinite input.
        with np.errstate(over="ignore", invalid="ignore"):
            out[...] = _keras_activation(out.astype(np.float64), activation, float(alpha))


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
    elif activation >= 5:
        with np.errstate(over="ignore", invalid="ignore"):
            dpre[...] = _keras_derivative(out.astype(np.float64), dout.astype(np.float64), activation, float(alpha))
    else:
        dpre[...] = dout


def activation_backward_input(pre, dout, activation, dpre, n_threads):
    """dpre (n, m) = dout * activation'(pre) for codes 12 to 15, from the activation's input `pre`
    (dpre may be dout)."""
    with np.errstate(over="ignore", invalid="ignore"):
        dpre[...] = _input_derivative(pre.astype(np.float64), dout.astype(np.float64), activation)
