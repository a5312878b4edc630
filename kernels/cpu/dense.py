"""Dense-layer kernels (Numba); mirrors kernels/cy/dense.pyx and kernels/npy/dense.py.

Activation codes: 0 linear, 1 relu, 2 sigmoid, 3 tanh, 4 leaky relu (slope alpha below 0), and
Keras 3's 5 elu (alpha), 6 selu, 7 softplus, 8 softsign, 9 relu6, 10 hard_sigmoid, 11 exponential,
and 12 swish (silu), 13 gelu (erf, not tanh), 14 mish, 15 hard_swish (hard_silu), whose gradient
needs the activation's input (activation_backward_input). The activations of float64 arrays,
and those without an exponential of float32 arrays, are worked in float64 (kernels/cpu/
activation64, rounded once to out's dtype); the exponential ones of float32 arrays
(activation32.FLOAT32_CODES) in float32 (kernels/cpu/activation32), twice as fast, a few ulps off.
Their exp, expm1, log1p, tanh and normal tail are kernels/cpu/vecmath's and vecmath32's, which
vectorise.
"""

import numpy as np
from numba import prange
from numba.core import types
from numba.extending import overload

from . import activation32, activation64, vecmath, vecmath32
from ._jit import compile_kernel, helper, launch

# sigmoid and tanh of a value, and the rows of codes 5 and up, in the array's precision: the kernels
# below call these, and Numba picks float32 work (activation32) or float64 work by the type as it
# compiles them.


def _sigmoid(z):
    """sigmoid(z) of a float32 or float64 value z."""


def _tanh(z):
    """tanh(z) of a float32 or float64 value z."""


def _activation_row(row, activation, alpha):
    """row (m,) = activation(row) in place, for codes 5 and up."""


def _derivative_row(out, dout, dpre, activation, alpha):
    """dpre (m,) = dout * activation'(pre) from the output, for codes 5 to 11."""


def _derivative_from_input_row(pre, dout, dpre, activation):
    """dpre (m,) = dout * activation'(pre) from the input, for codes 12 to 15."""


def _float32(value_or_array):
    return getattr(value_or_array, "dtype", value_or_array) == types.float32


_JIT = dict(jit_options=dict(error_model="numpy"))


@overload(_sigmoid, **_JIT)
def _sigmoid_typed(z):
    if _float32(z):
        return lambda z: activation32.sigmoid(z)
    return lambda z: activation64.sigmoid(np.float64(z))


@overload(_tanh, **_JIT)
def _tanh_typed(z):
    if _float32(z):
        return lambda z: vecmath32.tanh(z)
    return lambda z: vecmath.tanh(np.float64(z))


@overload(_activation_row, **_JIT)
def _activation_row_typed(row, activation, alpha):
    if _float32(row):
        return lambda row, activation, alpha: activation32.keras_activation_row(row, activation, np.float32(alpha))
    return lambda row, activation, alpha: activation64.keras_activation_row(row, activation, alpha)


@overload(_derivative_row, **_JIT)
def _derivative_row_typed(out, dout, dpre, activation, alpha):
    if _float32(out):
        def in_float32(out, dout, dpre, activation, alpha):
            if activation == 7:
                activation32.softplus_derivative_row(out, dout, dpre)
            else:
                activation64.keras_derivative_row(out, dout, dpre, activation, alpha)
        return in_float32
    return lambda out, dout, dpre, activation, alpha: activation64.keras_derivative_row(out, dout, dpre, activation, alpha)


@overload(_derivative_from_input_row, **_JIT)
def _derivative_from_input_row_typed(pre, dout, dpre, activation):
    if _float32(pre):
        return lambda pre, dout, dpre, activation: activation32.input_derivative_row(pre, dout, dpre, activation)
    return lambda pre, dout, dpre, activation: activation64.input_derivative_row(pre, dout, dpre, activation)


# The kernels take a block of whole rows at a time and run its activation as one loop over the
# block's values: a conv layer's rows are its few channels (3 for an RGB output), too short for a
# vectorised loop, which then never ran (gelu over 3-channel rows: 2x slower than libm's, scalar).
BLOCK_VALUES = 1024  # a block's whole rows hold at least this many values, or it is one row


@helper(cache=False, error_model="numpy")
def _block_rows(m):
    """Rows a block of rows of m values takes."""
    return max(1, BLOCK_VALUES // max(m, 1))


@helper(cache=False, error_model="numpy")
def _add_bias(out, bias, first, last):
    """out[first:last] += bias, row by row (bias (m,) or empty for none)."""
    if bias.shape[0] > 0:
        for i in range(first, last):
            for j in range(out.shape[1]):
                out[i, j] += bias[j]


@helper(cache=False, error_model="numpy")
def _activation_block(values, activation, alpha):
    """values = activation(values) in place, for codes 0 to 4."""
    if activation == 1:
        for k in range(values.shape[0]):
            values[k] = max(values[k], 0)
    elif activation == 2:
        for k in range(values.shape[0]):
            values[k] = _sigmoid(values[k])
    elif activation == 3:
        for k in range(values.shape[0]):
            values[k] = _tanh(values[k])
    elif activation == 4:
        for k in range(values.shape[0]):
            if values[k] < 0:
                values[k] = values[k] * alpha


def _bias_activation(out, bias, activation, alpha):
    n, m = out.shape
    rows = _block_rows(m)
    values = out.reshape(n * m)
    for block in prange((n + rows - 1) // rows):
        first, last = block * rows, min(block * rows + rows, n)
        _add_bias(out, bias, first, last)
        _activation_block(values[first * m : last * m], activation, alpha)


# Codes 5 and up go to kernels of their own, compiled only where a model uses one of them: in the
# kernels of codes 0 to 4 they tripled the module's compile time (its eight variants: 4.4 -> 14.6 s),
# which every process without Numba's cache pays.
def _keras_bias_activation(out, bias, activation, alpha):
    n, m = out.shape
    rows = _block_rows(m)
    values = out.reshape(n * m)
    for block in prange((n + rows - 1) // rows):
        first, last = block * rows, min(block * rows + rows, n)
        _add_bias(out, bias, first, last)
        _activation_row(values[first * m : last * m], activation, alpha)


# exact: fastmath would let LLVM fold vecmath's range reduction ((x / ln 2 + 1.5 * 2^52) - 1.5 *
# 2^52 to x / ln 2: exp(1) came out 2). uses: the modules these kernels inline (see compile_kernel).
_USES = (vecmath, vecmath32, activation32, activation64)
_bias_serial = compile_kernel(_bias_activation, exact=True, uses=_USES)
_bias_parallel = compile_kernel(_bias_activation, parallel=True, exact=True, uses=_USES)
_keras_bias_serial = compile_kernel(_keras_bias_activation, exact=True, uses=_USES)
_keras_bias_parallel = compile_kernel(_keras_bias_activation, parallel=True, exact=True, uses=_USES)


def _require_c_contiguous(*arrays):
    """The kernels run over an array's values as one run (reshape), which Numba refuses for any
    other layout with a NotImplementedError: a ValueError here, as the Cython kernels give."""
    for array in arrays:
        if not array.flags.c_contiguous:
            raise ValueError(f"the activation kernels take C-contiguous arrays, got one of shape {array.shape} "
                             f"and strides {array.strides}")


def bias_activation(out, bias, activation, alpha, n_threads):
    """out (n, m) = activation(out + bias), in place; bias (m,) or empty for none; alpha (of out's
    dtype) is the leaky ReLU's slope, or elu's scale below zero."""
    _require_c_contiguous(out)
    if activation < 5:
        launch(_bias_serial, _bias_parallel, n_threads, out, bias, activation, alpha)
    else:
        launch(_keras_bias_serial, _keras_bias_parallel, n_threads, out, bias, activation, alpha)


@helper(cache=False, error_model="numpy")
def _derivative_block(out, dout, dpre, activation, alpha):
    """dpre = dout * activation'(pre) from the output, for codes 0 to 4 (flat blocks)."""
    if activation == 1:
        for k in range(out.shape[0]):
            dpre[k] = dout[k] if out[k] > 0 else 0
    elif activation == 2:
        for k in range(out.shape[0]):
            dpre[k] = dout[k] * (out[k] * (1 - out[k]))
    elif activation == 3:
        for k in range(out.shape[0]):
            dpre[k] = dout[k] * (1 - out[k] * out[k])
    elif activation == 4:
        # alpha >= 0: a non-positive output means a non-positive input.
        for k in range(out.shape[0]):
            dpre[k] = dout[k] if out[k] > 0 else dout[k] * alpha
    else:
        for k in range(out.shape[0]):
            dpre[k] = dout[k]


def _activation_backward(out, dout, activation, alpha, dpre):
    n, m = out.shape
    rows = _block_rows(m)
    out_values, dout_values, dpre_values = out.reshape(n * m), dout.reshape(n * m), dpre.reshape(n * m)
    for block in prange((n + rows - 1) // rows):
        first, last = block * rows * m, min(block * rows + rows, n) * m
        _derivative_block(out_values[first:last], dout_values[first:last], dpre_values[first:last], activation, alpha)


def _keras_activation_backward(out, dout, activation, alpha, dpre):
    n, m = out.shape
    rows = _block_rows(m)
    out_values, dout_values, dpre_values = out.reshape(n * m), dout.reshape(n * m), dpre.reshape(n * m)
    for block in prange((n + rows - 1) // rows):
        first, last = block * rows * m, min(block * rows + rows, n) * m
        _derivative_row(out_values[first:last], dout_values[first:last], dpre_values[first:last], activation, alpha)


_backward_serial = compile_kernel(_activation_backward, exact=True, uses=_USES)
_backward_parallel = compile_kernel(_activation_backward, parallel=True, exact=True, uses=_USES)
_keras_backward_serial = compile_kernel(_keras_activation_backward, exact=True, uses=_USES)
_keras_backward_parallel = compile_kernel(_keras_activation_backward, parallel=True, exact=True, uses=_USES)


def activation_backward(out, dout, activation, alpha, dpre, n_threads):
    """dpre (n, m) = dout * activation'(pre), from the activation's output `out` (may be dout);
    codes 0 to 11 (12 and up: activation_backward_input). alpha (of out's dtype): leaky ReLU's
    slope, elu's scale below zero, selu's SCALE * ALPHA (fastdl.ops.dense.SELU_GRADIENT_ALPHA)."""
    _require_c_contiguous(out, dout, dpre)
    if activation < 5:
        launch(_backward_serial, _backward_parallel, n_threads, out, dout, activation, alpha, dpre)
    else:
        launch(_keras_backward_serial, _keras_backward_parallel, n_threads, out, dout, activation, alpha, dpre)


def _activation_backward_input(pre, dout, activation, dpre):
    n, m = pre.shape
    rows = _block_rows(m)
    pre_values, dout_values, dpre_values = pre.reshape(n * m), dout.reshape(n * m), dpre.reshape(n * m)
    for block in prange((n + rows - 1) // rows):
        first, last = block * rows * m, min(block * rows + rows, n) * m
        _derivative_from_input_row(pre_values[first:last], dout_values[first:last], dpre_values[first:last],
                                    activation)


_backward_input_serial = compile_kernel(_activation_backward_input, exact=True, uses=_USES)
_backward_input_parallel = compile_kernel(_activation_backward_input, parallel=True, exact=True, uses=_USES)


def activation_backward_input(pre, dout, activation, dpre, n_threads):
    """dpre (n, m) = dout * activation'(pre) for codes 12 to 15, from the activation's input `pre`
    (dpre may be dout)."""
    _require_c_contiguous(pre, dout, dpre)
    launch(_backward_input_serial, _backward_input_parallel, n_threads, pre, dout, activation, dpre)
