"""Optimizer update kernels (Cython): one pass over each parameter, no temporaries.

Mirrors kernels/cpu/optim.py and kernels/npy/optim.py (the same operations in the same order, so
the same bits). value, grad and the slots are 1-D arrays of one float dtype; the scalars are of
that dtype (the caller works out 1 - rho and the like in float64 first, as Keras does).
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport fabs, fabsf, sqrt, sqrtf
from libc.stdint cimport int64_t


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    return sqrt(x)


cdef inline floating _abs(floating x) noexcept nogil:
    if floating is float:
        return fabsf(x)
    return fabs(x)


def sgd_step(floating[::1] value, const floating[::1] grad, floating[::1] velocity, floating lr,
             floating momentum, int n_threads):
    """velocity = momentum * velocity - lr * grad; value += velocity (value -= lr * grad when velocity is empty)."""
    cdef Py_ssize_t i, n = value.shape[0]
    cdef bint has_velocity = velocity.shape[0] > 0
    with nogil:
        if has_velocity:
            for i in prange(n, num_threads=n_threads, schedule="static"):
                velocity[i] = velocity[i] * momentum - grad[i] * lr
                value[i] += velocity[i]
        else:
            for i in prange(n, num_threads=n_threads, schedule="static"):
                value[i] -= grad[i] * lr


def rmsprop_step(floating[::1] value, const floating[::1] grad, floating[::1] ms, floating lr, floating rho,
                 floating one_minus_rho, floating epsilon, int n_threads):
    """ms = rho * ms + (1 - rho) * grad^2; value -= lr * grad / sqrt(ms + epsilon)."""
    cdef Py_ssize_t i, n = value.shape[0]
    cdef floating g
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            g = grad[i]
            ms[i] = ms[i] * rho + one_minus_rho * g * g
            value[i] -= lr * g / _sqrt(ms[i] + epsilon)


def adam_step(floating[::1] value, const floating[::1] grad, floating[::1] m, floating[::1] v, floating alpha,
              floating one_minus_beta_1, floating one_minus_beta_2, floating epsilon, int n_threads):
    """m += (1 - beta_1) (grad - m); v += (1 - beta_2) (grad^2 - v); value -= alpha m / (sqrt(v) + epsilon).

    Where grad^2 - v is not finite, v = beta_2 v + (sqrt(1 - beta_2) grad)^2 (see kernels/cpu/optim.py).
    """
    cdef Py_ssize_t i, n = value.shape[0]
    cdef floating g, change, v_i, scaled
    cdef floating root_c = _sqrt(one_minus_beta_2), beta_2 = 1 - one_minus_beta_2
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            g = grad[i]
            m[i] += one_minus_beta_1 * (g - m[i])
            v_i = v[i]
            change = g * g - v_i
            scaled = root_c * g
            # change - change == 0: change is finite. gcc vectorises this loop as one expression with
            # that test, not with libc's isfinite nor as an if statement (8x slower).
            v_i = v_i + one_minus_beta_2 * change if change - change == 0 else v_i * beta_2 + scaled * scaled
            v[i] = v_i
            value[i] -= alpha * m[i] / (_sqrt(v_i) + epsilon)


def sgd_nesterov_step(floating[::1] value, const floating[::1] grad, floating[::1] velocity, floating lr,
                      floating momentum, int n_threads):
    """velocity = momentum * velocity - lr * grad; value += momentum * velocity - lr * grad (Keras' Nesterov)."""
    cdef Py_ssize_t i, n = value.shape[0]
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            velocity[i] = velocity[i] * momentum - grad[i] * lr
            value[i] += velocity[i] * momentum - grad[i] * lr


def rmsprop_momentum_step(floating[::1] value, const floating[::1] grad, floating[::1] ms, floating[::1] mom,
                          floating[::1] mg, floating lr, floating rho, floating one_minus_rho, floating epsilon,
                          floating momentum, int n_threads):
    """RMSprop with momentum (mom) and/or centered (mg; each may be empty, not both):
    ms = rho ms + (1 - rho) grad^2; mg = rho mg + (1 - rho) grad; increment = lr grad / sqrt(ms - mg^2 + epsilon)
    (ms + epsilon uncentered); mom = momentum mom + increment, value -= mom (value -= increment without)."""
    cdef Py_ssize_t i, n = value.shape[0]
    cdef floating g, denominator, increment
    cdef bint centered = mg.shape[0] > 0, has_momentum = mom.shape[0] > 0
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            g = grad[i]
            ms[i] = ms[i] * rho + one_minus_rho * g * g
            if centered:
                mg[i] = mg[i] * rho + one_minus_rho * g
                denominator = ms[i] - mg[i] * mg[i] + epsilon
            else:
                denominator = ms[i] + epsilon
            increment = lr * g / _sqrt(denominator)
            if has_momentum:
                mom[i] = mom[i] * momentum + increment
                value[i] -= mom[i]
            else:
                value[i] -= increment


def adam_amsgrad_step(floating[::1] value, const floating[::1] grad, floating[::1] m, floating[::1] v,
                      floating[::1] v_hat, floating alpha, floating one_minus_beta_1, floating one_minus_beta_2,
                      floating epsilon, int n_threads):
    """adam_step's m and v; v_hat = max(v_hat, v) (NaN kept); value -= alpha m / (sqrt(v_hat) + epsilon)."""
    cdef Py_ssize_t i, n = value.shape[0]
    cdef floating g, change, v_i, scaled, top
    cdef floating root_c = _sqrt(one_minus_beta_2), beta_2 = 1 - one_minus_beta_2
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            g = grad[i]
            m[i] += one_minus_beta_1 * (g - m[i])
            v_i = v[i]
            change = g * g - v_i
            scaled = root_c * g
            v_i = v_i + one_minus_beta_2 * change if change - change == 0 else v_i * beta_2 + scaled * scaled
            v[i] = v_i
            top = v_hat[i]
            top = v_i if (v_i > top or v_i != v_i) else top  # np.maximum's: a NaN in either is kept
            v_hat[i] = top
            value[i] -= alpha * m[i] / (_sqrt(top) + epsilon)


def decay_step(floating[::1] value, floating weight_decay, floating lr, int n_threads):
    """value -= value * weight_decay * lr (Keras' decoupled weight decay, before the update)."""
    cdef Py_ssize_t i, n = value.shape[0]
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            value[i] -= value[i] * weight_decay * lr


DEF LANES = 8  # as kernels/npy/optim.py: a block's squares in LANES interleaved sums, then those in order


cdef double _block_sum(const floating[::1] grad, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    cdef double lanes[LANES]
    cdef double x, total
    cdef Py_ssize_t i, lane, full = start + (stop - start) // LANES * LANES
    for lane in range(LANES):
        lanes[lane] = 0
    for i in range(start, full, LANES):
        for lane in range(LANES):
            x = grad[i + lane]
            lanes[lane] += x * x
    for i in range(full, stop):
        x = grad[i]
        lanes[i - full] += x * x
    total = lanes[0]
    for lane in range(1, LANES):
        total += lanes[lane]
    return total


def block_square_sums(const floating[::1] grad, const int64_t[::1] starts, double[::1] out, int n_threads):
    """out[b] = the sum of grad[starts[b]:starts[b + 1]]^2 in float64 (lanes as kernels/npy/optim.py's)."""
    cdef Py_ssize_t b, n = out.shape[0]
    with nogil:
        for b in prange(n, num_threads=n_threads, schedule="dynamic"):
            out[b] = _block_sum(grad, starts[b], starts[b + 1])


def scale_blocks(const floating[::1] grad, const int64_t[::1] starts, const floating[::1] mul,
                 const floating[::1] div, floating[::1] out, int n_threads):
    """out[i] = grad[i] * mul[b] / div[b] for i in block b (starts[b] <= i < starts[b + 1])."""
    cdef Py_ssize_t b, i, n = mul.shape[0]
    with nogil:
        for b in prange(n, num_threads=n_threads, schedule="dynamic"):
            for i in range(starts[b], starts[b + 1]):
                out[i] = grad[i] * mul[b] / div[b]


def clip_values(const floating[::1] grad, floating low, floating high, floating[::1] out, int n_threads):
    """out = grad clipped to [low, high]; NaN and +-inf kept as they are (fastdl's guards see them)."""
    cdef Py_ssize_t i, n = grad.shape[0]
    cdef floating g
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            g = grad[i]
            if g - g == 0:  # finite
                g = high if g > high else (low if g < low else g)
            out[i] = g


# Keras 3's Adagrad, Adadelta, Adamax and Nadam (fastdl/nn/optimizers_more.py)

def adagrad_step(floating[::1] value, const floating[::1] grad, floating[::1] accumulator, floating lr,
                 floating epsilon, int n_threads):
    """accumulator += grad^2; value -= lr * grad / sqrt(accumulator + epsilon)."""
    cdef Py_ssize_t i, n = value.shape[0]
    cdef floating g, a
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            g = grad[i]
            a = accumulator[i] + g * g  # inf only where the sum is past the dtype (see kernels/cpu/optim.py)
            accumulator[i] = a
            value[i] -= lr * g / _sqrt(a + epsilon)


def adadelta_step(floating[::1] value, const floating[::1] grad, floating[::1] accumulated_grad,
                  floating[::1] accumulated_delta, floating lr, floating rho, floating one_minus_rho,
                  floating epsilon, int n_threads):
    """accumulated_grad = rho a_g + (1 - rho) grad^2; delta = sqrt(a_d + epsilon) grad / sqrt(a_g + epsilon);
    accumulated_delta = rho a_d + (1 - rho) delta^2; value -= lr * delta."""
    cdef Py_ssize_t i, n = value.shape[0]
    cdef floating g, a_g, a_d, delta
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            g = grad[i]
            a_g = accumulated_grad[i] * rho + one_minus_rho * g * g
            accumulated_grad[i] = a_g
            a_d = accumulated_delta[i]
            delta = _sqrt(a_d + epsilon) * g / _sqrt(a_g + epsilon)
            accumulated_delta[i] = a_d * rho + one_minus_rho * delta * delta
            value[i] -= lr * delta


def adamax_step(floating[::1] value, const floating[::1] grad, floating[::1] m, floating[::1] u, floating alpha,
                floating one_minus_beta_1, floating beta_2, floating epsilon, int n_threads):
    """m += (1 - beta_1) (grad - m); u = max(beta_2 u, |grad|) (NaN kept); value -= alpha m / (u + epsilon)."""
    cdef Py_ssize_t i, n = value.shape[0]
    cdef floating g, m_i, top, size
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            g = grad[i]
            m_i = m[i] + one_minus_beta_1 * (g - m[i])
            m[i] = m_i
            top = u[i] * beta_2
            size = _abs(g)
            # np.maximum's (a NaN in either is kept); `|`, not `or`: without the branch gcc vectorises
            top = size if (size > top) | (size != size) else top
            u[i] = top
            value[i] -= alpha * m_i / (top + epsilon)


def nadam_step(floating[::1] value, const floating[::1] grad, floating[::1] m, floating[::1] v, floating m_rate,
               floating grad_rate, floating one_minus_beta_1, floating one_minus_beta_2,
               floating root_correction, floating epsilon, int n_threads):
    """adam_step's m and v (v mended where grad^2 - v is not finite); value -= (m_rate m + grad_rate grad) /
    (sqrt(v) root_correction + epsilon), root_correction = 1 / sqrt(1 - beta_2^t) (see kernels/cpu/optim.py)."""
    cdef Py_ssize_t i, n = value.shape[0]
    cdef floating g, m_i, change, v_i, scaled
    cdef floating root_c = _sqrt(one_minus_beta_2), beta_2 = 1 - one_minus_beta_2
    with nogil:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            g = grad[i]
            m_i = m[i] + one_minus_beta_1 * (g - m[i])
            m[i] = m_i
            v_i = v[i]
            change = g * g - v_i
            scaled = root_c * g
            # one expression with the finiteness test, as adam_step's (it vectorises)
            v_i = v_i + one_minus_beta_2 * change if change - change == 0 else v_i * beta_2 + scaled * scaled
            v[i] = v_i
            value[i] -= (m_rate * m_i + grad_rate * g) / (_sqrt(v_i) * root_correction + epsilon)
