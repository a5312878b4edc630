"""Optimizer update kernels (Cython): one pass over each parameter, no temporaries.

Mirrors kernels/cpu/optim.py and kernels/npy/optim.py (the same operations in the same order, so
the same bits). value, grad and the slots are 1-D arrays of one float dtype; the scalars are of
that dtype (the caller works out 1 - rho and the like in float64 first, as Keras does).
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    return sqrt(x)


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
