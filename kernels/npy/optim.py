"""Optimizer update kernels (numpy reference); mirrors kernels/cpu/optim.py.

value, grad and the slots are 1-D arrays of one float dtype; the scalars are of that dtype (the
caller works out 1 - rho and the like in float64 first, as Keras does), so every operation rounds
as the compiled kernels do.
"""

import numpy as np


def sgd_step(value, grad, velocity, lr, momentum, n_threads):
    """velocity = momentum * velocity - lr * grad; value += velocity (value -= lr * grad when velocity is empty)."""
    step = grad * lr
    if velocity.shape[0]:
        velocity *= momentum
        velocity -= step
        value += velocity
    else:
        value -= step


def rmsprop_step(value, grad, ms, lr, rho, one_minus_rho, epsilon, n_threads):
    """ms = rho * ms + (1 - rho) * grad^2; value -= lr * grad / sqrt(ms + epsilon)."""
    ms *= rho
    ms += one_minus_rho * grad * grad
    value -= lr * grad / np.sqrt(ms + epsilon)


def adam_step(value, grad, m, v, alpha, one_minus_beta_1, one_minus_beta_2, epsilon, n_threads):
    """m += (1 - beta_1) (grad - m); v += (1 - beta_2) (grad^2 - v); value -= alpha m / (sqrt(v) + epsilon).

    Where grad^2 - v is not finite, v = beta_2 v + (sqrt(1 - beta_2) grad)^2 (see kernels/cpu/optim.py).
    """
    as_dtype = value.dtype.type
    root_c, beta_2 = np.sqrt(as_dtype(one_minus_beta_2)), as_dtype(1) - as_dtype(one_minus_beta_2)
    m += one_minus_beta_1 * (grad - m)
    with np.errstate(over="ignore", invalid="ignore"):  # the inf and NaN that `wide` mends
        change = grad * grad - v
        wide = np.flatnonzero(~np.isfinite(change))
        scaled = root_c * grad[wide]
        v_wide = v[wide] * beta_2 + scaled * scaled
        v += one_minus_beta_2 * change
    v[wide] = v_wide
    value -= alpha * m / (np.sqrt(v) + epsilon)
