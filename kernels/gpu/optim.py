"""Optimizer update kernels (numba.cuda); mirrors kernels/cpu/optim.py and kernels/npy/optim.py.

value, grad and the slots are 1-D device arrays of one float dtype; the scalars are NumPy scalars
of that dtype (the caller works out 1 - rho and the like in float64 first, as Keras does), so the
arithmetic stays in the parameter's dtype with the CPU kernels' operations in their order. One
thread per parameter element, one launch per parameter array: the update is fused (no
temporaries, each slot read and written once). On a device NVVM may contract a * b + c into a fused
multiply-add, so float32 results agree with the CPU backends to rounding, not always to the bit.
"""

import math

from numba import cuda

from ._launch import grid_1d, kernel


@kernel
def _sgd(value, grad, velocity, lr, momentum):
    i = cuda.grid(1)
    if i >= value.shape[0]:
        return
    if velocity.shape[0]:
        velocity[i] = velocity[i] * momentum - grad[i] * lr
        value[i] += velocity[i]
    else:
        value[i] -= grad[i] * lr


def sgd_step(value, grad, velocity, lr, momentum, n_threads):
    """velocity = momentum * velocity - lr * grad; value += velocity (value -= lr * grad when velocity is empty).

    n_threads is unused.
    """
    if value.shape[0]:
        _sgd[grid_1d(value.shape[0])](value, grad, velocity, lr, momentum)


@kernel
def _rmsprop(value, grad, ms, lr, rho, one_minus_rho, epsilon):
    i = cuda.grid(1)
    if i >= value.shape[0]:
        return
    g = grad[i]
    ms[i] = ms[i] * rho + one_minus_rho * g * g
    value[i] -= lr * g / math.sqrt(ms[i] + epsilon)


def rmsprop_step(value, grad, ms, lr, rho, one_minus_rho, epsilon, n_threads):
    """ms = rho * ms + (1 - rho) * grad^2; value -= lr * grad / sqrt(ms + epsilon). n_threads is unused."""
    if value.shape[0]:
        _rmsprop[grid_1d(value.shape[0])](value, grad, ms, lr, rho, one_minus_rho, epsilon)


@kernel
def _adam(value, grad, m, v, alpha, one_minus_beta_1, one_minus_beta_2, epsilon):
    i = cuda.grid(1)
    if i >= value.shape[0]:
        return
    g = grad[i]
    m[i] += one_minus_beta_1 * (g - m[i])
    change = g * g - v[i]
    if math.isfinite(change):
        v[i] += one_minus_beta_2 * change
    else:  # as kernels/cpu/optim.py's adam_step (on a device 1 - ... is float64: agrees to rounding)
        scaled = math.sqrt(one_minus_beta_2) * g
        v[i] = v[i] * (1 - one_minus_beta_2) + scaled * scaled
    value[i] -= alpha * m[i] / (math.sqrt(v[i]) + epsilon)


def adam_step(value, grad, m, v, alpha, one_minus_beta_1, one_minus_beta_2, epsilon, n_threads):
    """m += (1 - beta_1) (grad - m); v += (1 - beta_2) (grad^2 - v); value -= alpha m / (sqrt(v) + epsilon).

    Where grad^2 - v is not finite, v = beta_2 v + (sqrt(1 - beta_2) grad)^2 (see kernels/cpu/optim.py).
    n_threads is unused.
    """
    if value.shape[0]:
        _adam[grid_1d(value.shape[0])](value, grad, m, v, alpha, one_minus_beta_1, one_minus_beta_2, epsilon)
