# The exponential activations of float values in float arithmetic, included by dense.pyx after
# vecmath32.pxi; mirrors kernels/cpu/activation32.py (see there), operation for operation.

cdef float SELU_SCALE_F = <float>1.0507009873554804934193349852946
cdef float SELU_ALPHA_F = <float>1.6732632423543772848170429916717
cdef float INV_SQRT_2PI_F = <float>0.39894228040143267794


cdef inline bint float32_code(int activation) noexcept nogil:
    """Whether activation's float values are worked in float (activation32.FLOAT32_CODES)."""
    return activation == 2 or activation == 3 or 5 <= activation <= 7 or 11 <= activation <= 14


cdef inline float _sigmoid_pairf(float z, float e, float* complement) noexcept nogil:
    cdef bint above = z >= ZERO_F
    complement[0] = (e if above else ONE_F) / (ONE_F + e)
    return (ONE_F if above else e) / (ONE_F + e)


cdef inline float sigmoidf(float z) noexcept nogil:
    """_sigmoid_pairf's sigmoid alone, the same bits (no complement through a pointer)."""
    cdef float e = vexpf(-fabsf(z))
    return (ONE_F if z >= ZERO_F else e) / (ONE_F + e)


cdef inline float _tanh_softplus_pairf(float z, float e, float* complement) noexcept nogil:
    cdef bint above = z >= ZERO_F
    cdef float n = ONE_F + TWO_F * e if above else e * (e + TWO_F)
    cdef float d = n + TWO_F * e * e if above else n + TWO_F
    complement[0] = (TWO_F * e * e if above else TWO_F) / d
    return n / d


cdef inline float geluf(float z) noexcept nogil:
    """z Phi(z): a function of its own, which gcc inlines into gelu's row loop (as a branch of
    keras_activationf it was left a call, and the loop scalar, 10x slower)."""
    cdef float density
    cdef float tail = normal_tailf(z, &density)
    return z * (tail if z < ZERO_F else ONE_F - tail)


cdef inline float gelu_gradientf(float x, float g) noexcept nogil:
    """g (Phi(x) + x phi(x)), a function of its own as geluf."""
    cdef float density
    cdef float tail = normal_tailf(x, &density)
    return g * ((tail if x < ZERO_F else ONE_F - tail) + x * INV_SQRT_2PI_F * density)


cdef inline float keras_activationf(float z, int activation, float alpha) noexcept nogil:
    """Codes 5, 6, 7, 11, 12, 13 and 14 of z."""
    cdef float c, below
    # elu and selu take expm1 before the select: as a select's arm, gcc left the loop scalar (4x slower).
    if activation == 5:
        below = alpha * vexpm1f(z)
        return z if z > ZERO_F else below
    if activation == 6:
        below = SELU_ALPHA_F * vexpm1f(z)
        return SELU_SCALE_F * (z if z > ZERO_F else below)
    if activation == 7:
        return (z if z > ZERO_F else ZERO_F) + vlog1p_unitf(vexpf(-fabsf(z)))
    if activation == 11:
        return vexpf(z)
    if activation == 12:
        return z * sigmoidf(z)
    if activation == 13:
        return geluf(z)
    return z * _tanh_softplus_pairf(z, vexpf(-fabsf(z)), &c)


cdef inline float softplus_derivativef(float y, float g) noexcept nogil:
    return g * -vexpm1f(-y)


cdef inline float input_derivativef(float x, float g, int activation) noexcept nogil:
    """g * activation'(x), for codes 12 to 14."""
    cdef float s, c, t, e
    if activation == 12:
        s = _sigmoid_pairf(x, vexpf(-fabsf(x)), &c)
        return g * (s + x * s * c)
    if activation == 13:
        return gelu_gradientf(x, g)
    e = vexpf(-fabsf(x))
    t = _tanh_softplus_pairf(x, e, &c)
    return g * (t + x * (c * (ONE_F + t)) * _sigmoid_pairf(x, e, &s))


# One loop per code, the code a constant in each, as dense.pyx's row loops.


cdef inline void keras_activation_rowf(float* row, Py_ssize_t m, int activation, float alpha) noexcept nogil:
    """row (m,) = activation(row) in place, for codes 5, 6, 7, 11, 12, 13 and 14."""
    cdef Py_ssize_t j
    if activation == 5:
        for j in range(m):
            row[j] = keras_activationf(row[j], 5, alpha)
    elif activation == 6:
        for j in range(m):
            row[j] = keras_activationf(row[j], 6, alpha)
    elif activation == 7:
        for j in range(m):
            row[j] = keras_activationf(row[j], 7, alpha)
    elif activation == 11:
        for j in range(m):
            row[j] = keras_activationf(row[j], 11, alpha)
    elif activation == 12:
        for j in range(m):
            row[j] = keras_activationf(row[j], 12, alpha)
    elif activation == 13:
        for j in range(m):
            row[j] = geluf(row[j])
    else:
        for j in range(m):
            row[j] = keras_activationf(row[j], 14, alpha)


cdef inline void softplus_derivative_rowf(const float* out, const float* dout, float* dpre, Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(m):
        dpre[j] = softplus_derivativef(out[j], dout[j])


cdef inline void input_derivative_rowf(
    const float* pre, const float* dout, float* dpre, Py_ssize_t m, int activation,
) noexcept nogil:
    """dpre (m,) = dout * activation'(pre), for codes 12 to 14."""
    cdef Py_ssize_t j
    if activation == 12:
        for j in range(m):
            dpre[j] = input_derivativef(pre[j], dout[j], 12)
    elif activation == 13:
        for j in range(m):
            dpre[j] = gelu_gradientf(pre[j], dout[j])
    else:
        for j in range(m):
            dpre[j] = input_derivativef(pre[j], dout[j], 14)
