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
    for i in prange(value.shape[0]):
        g = grad[i]
        m[i] += one_minus_beta_1 * (g - m[i])
        v[i] += one_minus_beta_2 * (g * g - v[i])
        value[i] -= alpha * m[i] / (np.sqrt(v[i]) + epsilon)


_adam_serial = compile_kernel(_adam)
_adam_parallel = compile_kernel(_adam, parallel=True)


def adam_step(value, grad, m, v, alpha, one_minus_beta_1, one_minus_beta_2, epsilon, n_threads):
    """m += (1 - beta_1) (grad - m); v += (1 - beta_2) (grad^2 - v); value -= alpha m / (sqrt(v) + epsilon)."""
    launch(_adam_serial, _adam_parallel, n_threads, value, grad, m, v, alpha, one_minus_beta_1, one_minus_beta_2,
           epsilon)
