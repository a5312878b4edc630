"""Dense-layer kernels (Cython); mirrors kernels/cpu/dense.py and kernels/npy/dense.py.

Activation codes: 0 linear, 1 relu, 2 sigmoid, 3 tanh, 4 leaky relu (slope alpha below 0), and
Keras 3's 5 elu (alpha), 6 selu, 7 softplus, 8 softsign, 9 relu6, 10 hard_sigmoid, 11 exponential,
and 12 swish (silu), 13 gelu (erf, not tanh), 14 mish, 15 hard_swish (hard_silu), whose gradient
needs the activation's input (activation_backward_input). The activations of double arrays, and
those without an exponential of float arrays, are worked in double by the helpers below (which
mirror kernels/cpu/activation64.py) and rounded once to out's type; the exponential ones of float
arrays in float (activation32.pxi). exp, expm1, log1p, tanh and the normal tail are vecmath.pxi's
and vecmath32.pxi's, which vectorise. The same bits as the Numba kernels', both ways.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport copysign, copysignf, fabs, fabsf
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

include "vecmath.pxi"
include "vecmath32.pxi"
include "activation32.pxi"

# Whether the float activations' polynomial steps are fused multiply-adds (vecmath32.pxi): as
# kernels/cpu/vecmath.FUSED, for the same bits as the Numba kernels'.
FUSED_MULTIPLY_ADD = bool(FASTDL_FUSED)

cdef double SELU_SCALE = 1.0507009873554804934193349852946  # Keras 3's (and PyTorch's) selu constants
cdef double SELU_ALPHA = 1.6732632423543772848170429916717
cdef double INV_SQRT_2PI = 0.39894228040143267794  # 1 / sqrt(2 pi), the normal density's scale


cdef inline double _sigmoid_pair(double z, double e, double* complement) noexcept nogil:
    """sigmoid(z), and 1 - sigmoid(z) into complement, each without cancellation, from e = exp(-|z|)
    (which never overflows). The sign picks numerators, not branches: it is random over a batch."""
    cdef bint above = z >= 0  # false for NaN: NaN, as e
    cdef double inverse = 1 / (1 + e)
    complement[0] = (e if above else 1.0) * inverse
    return (1.0 if above else e) * inverse


cdef inline double _sigmoid(double z) noexcept nogil:
    """_sigmoid_pair's sigmoid alone, the same bits: a complement written through a pointer to a
    variable of the prange loop kept gcc from vectorising it."""
    cdef double e = vexp(-fabs(z))
    return (1.0 if z >= 0 else e) * (1 / (1 + e))


cdef inline double _tanh_softplus_pair(double z, double e, double* complement) noexcept nogil:
    """tanh(softplus(z)), and 1 minus it into complement, each without cancellation: with
    u = 1 + exp(z), tanh(log u) is (u^2 - 1) / (u^2 + 1), written in e = exp(-|z|) (never
    overflows): (1 + 2e) / (1 + 2e + 2e^2) for z >= 0, n / (n + 2) with n = e (e + 2) below."""
    cdef bint above = z >= 0
    cdef double n = 1 + 2 * e if above else e * (e + 2)
    cdef double inverse = 1 / (n + 2 * e * e if above else n + 2)
    complement[0] = (2 * e * e if above else 2.0) * inverse
    return n * inverse


cdef inline double _relu6(double z) noexcept nogil:
    """min(max(z, 0), 6); comparisons false for NaN keep it NaN (not fmax/fmin, which drop it)."""
    z = 0 if z < 0 else z
    return 6 if z > 6 else z


cdef inline double _keras_activation(double z, int activation, double alpha) noexcept nogil:
    """Codes 5 and up, Keras 3's definitions. NaN stays NaN."""
    cdef double c, r
    if activation == 5:  # elu; the branch with exp only below zero, where it never overflows
        return z if z > 0 else alpha * vexpm1(z)
    if activation == 6:
        return SELU_SCALE * (z if z > 0 else SELU_ALPHA * vexpm1(z))
    if activation == 7:  # softplus = log(1 + exp(z)), its exp never overflowing
        return (z if z > 0 else 0.0) + vlog1p_unit(vexp(-fabs(z)))
    if activation == 8:
        return z / (1 + fabs(z))
    if activation == 9:
        return _relu6(z)
    if activation == 10:  # hard_sigmoid
        return _relu6(z + 3) / 6
    if activation == 11:
        return vexp(z)
    if activation == 12:  # swish = z * sigmoid(z)
        return z * _sigmoid_pair(z, vexp(-fabs(z)), &c)
    if activation == 13:  # gelu = z * Phi(z), Phi's lower tail kept (1 + erf would round it to 0)
        r = normal_tail_factors(z, &c)
        return (z * r) * c if z < 0 else z * (1.0 - r * c)
    if activation == 14:  # mish = z * tanh(softplus(z))
        return z * _tanh_softplus_pair(z, vexp(-fabs(z)), &c)
    return z * _relu6(z + 3) / 6  # hard_swish


cdef inline double _input_derivative(double x, double g, int activation) noexcept nogil:
    """g * activation'(x) of the input x, for codes 12 to 15."""
    cdef double s, t, c, e
    if activation == 12:
        s = _sigmoid_pair(x, vexp(-fabs(x)), &c)
        return g * (s + x * s * c)
    if activation == 13:  # Phi(x) + x * phi(x)
        s = normal_tail_factors(x, &e)
        t = x * INV_SQRT_2PI
        return g * ((s + t) * e if x < 0 else 1.0 - (s - t) * e)
    if activation == 14:  # tanh(sp) + x * sech(sp)^2 * sigmoid(x), sech^2 = (1 - tanh)(1 + tanh)
        e = vexp(-fabs(x))  # one exp for both, as the Numba kernel
        t = _tanh_softplus_pair(x, e, &c)
        return g * (t + x * (c * (1 + t)) * _sigmoid_pair(x, e, &s))
    # What autodiff of z * relu6(z + 3) / 6 gives, relu6' being 0 at both ends (TF, JAX): 0 at
    # x = -3, 1 at x = 3; a select where it is 0, as relu (an inf or NaN g there gives 0).
    return 0 if x <= -3 else g * (1 if x >= 3 else (2 * x + 3) / 6)


cdef inline double _keras_derivative(double y, double g, int activation, double alpha) noexcept nogil:
    """g * activation'(pre) from the output y, for codes 5 to 11; selects, not products with 0,
    where the derivative is 0 (an inf or NaN g there gives 0, as for relu)."""
    if activation == 5:  # alpha >= 0: a positive output means a positive input
        return g if y > 0 else g * (y + alpha)
    if activation == 6:
        return g * SELU_SCALE if y > 0 else g * (y + alpha)  # alpha: fastdl.ops.dense.SELU_GRADIENT_ALPHA
    if activation == 7:  # sigmoid(pre) = 1 - exp(-softplus(pre))
        return g * -vexpm1(-y)
    if activation == 8:
        return g * ((1 - fabs(y)) * (1 - fabs(y)))
    if activation == 9:
        return g if 0 < y < 6 else 0
    if activation == 10:
        return g / 6 if 0 < y < 1 else 0
    return g * y


# One loop per code, the code a constant in each (the functions above inline and fold): the code's
# test leaves the loop, which a single loop testing it per entry kept in (hard_swish ran 10x slower).


cdef inline void _keras_activation_row(floating* row, Py_ssize_t m, int activation, double alpha) noexcept nogil:
    """row (m,) = activation(row) in place, for codes 5 and up (float32 work for a float row's
    exponential ones, activation32.pxi)."""
    cdef Py_ssize_t j
    if floating is float:
        if float32_code(activation):
            keras_activation_rowf(row, m, activation, <float>alpha)
            return
    if activation == 5:
        for j in range(m):
            row[j] = <floating>_keras_activation(row[j], 5, alpha)
    elif activation == 6:
        for j in range(m):
            row[j] = <floating>_keras_activation(row[j], 6, alpha)
    elif activation == 7:
        for j in range(m):
            row[j] = <floating>_keras_activation(row[j], 7, alpha)
    elif activation == 8:
        for j in range(m):
            row[j] = <floating>_keras_activation(row[j], 8, alpha)
    elif activation == 9:
        for j in range(m):
            row[j] = <floating>_keras_activation(row[j], 9, alpha)
    elif activation == 10:
        for j in range(m):
            row[j] = <floating>_keras_activation(row[j], 10, alpha)
    elif activation == 11:
        for j in range(m):
            row[j] = <floating>_keras_activation(row[j], 11, alpha)
    elif activation == 12:
        for j in range(m):
            row[j] = <floating>_keras_activation(row[j], 12, alpha)
    elif activation == 13:
        for j in range(m):
            row[j] = <floating>_keras_activation(row[j], 13, alpha)
    elif activation == 14:
        for j in range(m):
            row[j] = <floating>_keras_activation(row[j], 14, alpha)
    else:
        for j in range(m):
            row[j] = <floating>_keras_activation(row[j], 15, alpha)


cdef inline void _keras_derivative_row(
    const floating* out, const floating* dout, floating* dpre, Py_ssize_t m, int activation, double alpha,
) noexcept nogil:
    """dpre (m,) = dout * activation'(pre) from the output, for codes 5 to 11; each entry read
    before it is written."""
    cdef Py_ssize_t j
    if floating is float:
        if activation == 7:
            softplus_derivative_rowf(out, dout, dpre, m)
            return
    if activation == 5:
        for j in range(m):
            dpre[j] = <floating>_keras_derivative(out[j], dout[j], 5, alpha)
    elif activation == 6:
        for j in range(m):
            dpre[j] = <floating>_keras_derivative(out[j], dout[j], 6, alpha)
    elif activation == 7:
        for j in range(m):
            dpre[j] = <floating>_keras_derivative(out[j], dout[j], 7, alpha)
    elif activation == 8:
        for j in range(m):
            dpre[j] = <floating>_keras_derivative(out[j], dout[j], 8, alpha)
    elif activation == 9:
        for j in range(m):
            dpre[j] = <floating>_keras_derivative(out[j], dout[j], 9, alpha)
    elif activation == 10:
        for j in range(m):
            dpre[j] = <floating>_keras_derivative(out[j], dout[j], 10, alpha)
    else:
        for j in range(m):
            dpre[j] = <floating>_keras_derivative(out[j], dout[j], 11, alpha)


cdef inline void _input_derivative_row(
    const floating* pre, const floating* dout, floating* dpre, Py_ssize_t m, int activation,
) noexcept nogil:
    """dpre (m,) = dout * activation'(pre), for codes 12 to 15; each entry read before it is written."""
    cdef Py_ssize_t j
    if floating is float:
        if activation <= 14:
            input_derivative_rowf(pre, dout, dpre, m, activation)
            return
    if activation == 12:
        for j in range(m):
            dpre[j] = <floating>_input_derivative(pre[j], dout[j], 12)
    elif activation == 13:
        for j in range(m):
            dpre[j] = <floating>_input_derivative(pre[j], dout[j], 13)
    elif activation == 14:
        for j in range(m):
            dpre[j] = <floating>_input_derivative(pre[j], dout[j], 14)
    else:
        for j in range(m):
            dpre[j] = <floating>_input_derivative(pre[j], dout[j], 15)


# The kernels take a block of whole rows at a time and run its activation as one loop over the
# block's values, as the Numba kernels (see there): a conv layer's rows are its few channels.
cdef Py_ssize_t BLOCK_VALUES = 1024  # a block's whole rows hold at least this many values, or it is one row


cdef inline Py_ssize_t _block_rows(Py_ssize_t m) noexcept nogil:
    return max(1, BLOCK_VALUES // max(m, 1))


def bias_activation(floating[:, ::1] out, const floating[::1] bias, int activation, floating alpha, int n_threads):
    """out (n, m) = activation(out + bias), in place; bias (m,) or empty for none; alpha is the
    leaky ReLU's slope, or elu's scale below zero."""
    cdef Py_ssize_t n = out.shape[0], m = out.shape[1]
    cdef Py_ssize_t rows = _block_rows(m)
    cdef Py_ssize_t block, first, last, count, i, j, k
    cdef bint has_bias = bias.shape[0] > 0
    cdef floating* values
    if n == 0 or m == 0:
        return
    with nogil:
        for block in prange((n + rows - 1) // rows, num_threads=n_threads, schedule="static"):
            first = block * rows
            last = min(first + rows, n)
            if has_bias:
                for i in range(first, last):
                    for j in range(m):
                        out[i, j] = out[i, j] + bias[j]
            values = &out[first, 0]
            count = (last - first) * m
            if activation == 1:
                for k in range(count):
                    # Not `values[k] if values[k] > 0 else 0`: NaN stays NaN, as np.maximum and the Numba kernel.
                    if values[k] < 0:
                        values[k] = 0
            elif activation == 2:
                for k in range(count):
                    if floating is float:
                        values[k] = sigmoidf(values[k])
                    else:
                        values[k] = _sigmoid(values[k])
            elif activation == 3:
                for k in range(count):
                    if floating is float:
                        values[k] = vtanhf(values[k])
                    else:
                        values[k] = vtanh(values[k])
            elif activation == 4:
                for k in range(count):
                    if values[k] < 0:
                        values[k] = values[k] * alpha
            elif activation >= 5:
                _keras_activation_row(values, count, activation, alpha)


def activation_backward(
    const floating[:, ::1] out, const floating[:, ::1] dout, int activation, floating alpha,
    floating[:, ::1] dpre, int n_threads,
):
    """dpre (n, m) = dout * activation'(pre), from the activation's output `out` (may be dout)."""
    cdef Py_ssize_t n = out.shape[0], m = out.shape[1]
    cdef Py_ssize_t rows = _block_rows(m)
    cdef Py_ssize_t block, first, count, k
    cdef const floating* y
    cdef const floating* g
    cdef floating* d
    if n == 0 or m == 0:
        return
    with nogil:
        for block in prange((n + rows - 1) // rows, num_threads=n_threads, schedule="static"):
            first = block * rows
            count = (min(first + rows, n) - first) * m
            y, g, d = &out[first, 0], &dout[first, 0], &dpre[first, 0]
            if activation == 1:
                for k in range(count):
                    d[k] = g[k] if y[k] > 0 else 0
            elif activation == 2:
                for k in range(count):
                    d[k] = g[k] * (y[k] * (1 - y[k]))
            elif activation == 3:
                for k in range(count):
                    d[k] = g[k] * (1 - y[k] * y[k])
            elif activation == 4:
                # alpha >= 0: a non-positive output means a non-positive input.
                for k in range(count):
                    d[k] = g[k] if y[k] > 0 else g[k] * alpha
            elif activation >= 5:
                _keras_derivative_row(y, g, d, count, activation, alpha)
            else:
                for k in range(count):
                    d[k] = g[k]


def activation_backward_input(
    const floating[:, ::1] pre, const floating[:, ::1] dout, int activation, floating[:, ::1] dpre,
    int n_threads,
):
    """dpre (n, m) = dout * activation'(pre) for codes 12 to 15, from the activation's input `pre`
    (dpre may be dout)."""
    cdef Py_ssize_t n = pre.shape[0], m = pre.shape[1]
    cdef Py_ssize_t rows = _block_rows(m)
    cdef Py_ssize_t block, first
    if n == 0 or m == 0:
        return
    with nogil:
        for block in prange((n + rows - 1) // rows, num_threads=n_threads, schedule="static"):
            first = block * rows
            _input_derivative_row(&pre[first, 0], &dout[first, 0], &dpre[first, 0], (min(first + rows, n) - first) * m,
                                  activation)
