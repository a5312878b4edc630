"""Optimizer update kernels (Numba): one pass over each parameter, no temporaries.

Mirrors kernels/cy/optim.pyx and kernels/npy/optim.py (the same operations in the same order, so
the same bits). value, grad and the slots are 1-D arrays of one float dtype; the scalars are of
that dtype (the caller works out 1 - rho and the like in float64 first, as Keras does).
"""

import numpy as np
from numba import prange

from ._jit import compile_kernel, launch


def _sgd(value, grad, velocity, lr, momentum):
    if velocity.shape[0]:
        for i in prange(value.shape[0]):
            velocity[i] = velocity[i] * momentum - grad[i] * lr
            value[i] += velocity[i]
    else:
        for i in prange(value.shape[0]):
            value[i] -= grad[i] * lr


_sgd_serial = compile_kernel(_sgd)
_sgd_parallel = compile_kernel(_sgd, parallel=True)


def sgd_step(value, grad, velocity, lr, momentum, n_threads):
    """velocity = momentum * velocity - lr * grad; value += velocity (value -= lr * grad when velocity is empty)."""
    launch(_sgd_serial, _sgd_parallel, n_threads, value, grad, velocity, lr, momentum)


def _rmsprop(value, grad, ms, lr, rho, one_minus_rho, epsilon):
    for i in prange(value.shape[0]):
        g = grad[i]
        ms[i] = ms[i] * rho + one_minus_rho * g * g
        value[i] -= lr * g / np.sqrt(ms[i] + epsilon)


_rmsprop_serial = compile_kernel(_rmsprop)
_rmsprop_parallel = compile_kernel(_rmsprop, parallel=True)


def rmsprop_step(value, grad, ms, lr, rho, one_minus_rho, epsilon, n_threads):
    """ms = rho * ms + (1 - rho) * grad^2; value -= lr * grad / sqrt(ms + epsilon)."""
    launch(_rmsprop_serial, _rmsprop_parallel, n_threads, value, grad, ms, lr, rho, one_minus_rho, epsilon)


def _adam(value, grad, m, v, alpha, one_minus_beta_1, one_minus_beta_2, epsilon):
    # The overflow's constants (see adam_step) in the parameter's dtype, as the Cython kernel has
    # them: in Numba 1 - one_minus_beta_2 would be float64, one_minus_beta_2 ** 0 is a 1 of its type.
    root_c = np.sqrt(one_minus_beta_2)
    beta_2 = one_minus_beta_2 ** 0 - one_minus_beta_2
    for i in prange(value.shape[0]):
        g = grad[i]
        m[i] += one_minus_beta_1 * (g - m[i])
        v_i = v[i]
        change = g * g - v_i
        if np.isfinite(change):
            v_i += one_minus_beta_2 * change
        else:
            scaled = root_c * g
            v_i = v_i * beta_2 + scaled * scaled
        v[i] = v_i
        value[i] -= alpha * m[i] / (np.sqrt(v_i) + epsilon)


# Exact (no fastmath): fastmath's no-infinity assumption would drop the overflow branch above.
_adam_serial = compile_kernel(_adam, exact=True)
_adam_parallel = compile_kernel(_adam, exact=True, parallel=True)


def adam_step(value, grad, m, v, alpha, one_minus_beta_1, one_minus_beta_2, epsilon, n_threads):
    """m += (1 - beta_1) (grad - m); v += (1 - beta_2) (grad^2 - v); value -= alpha m / (sqrt(v) + epsilon).

    Where grad^2 - v is not finite (grad^2 overflowed: |grad| > 1.8e19 in float32; or v is inf),
    v = beta_2 v + (sqrt(1 - beta_2) grad)^2 instead, which overflows only where v itself does:
    Keras' form would give inf - inf = NaN, at once or at the next step (PyTorch keeps v finite).
    """
    launch(_adam_serial, _adam_parallel, n_threads, value, grad, m, v, alpha, one_minus_beta_1, one_minus_beta_2,
           epsilon)
