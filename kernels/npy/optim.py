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
    _moments(grad, m, v, one_minus_beta_1, one_minus_beta_2)
    value -= alpha * m / (np.sqrt(v) + epsilon)


def _moments(grad, m, v, one_minus_beta_1, one_minus_beta_2):
    """Adam's m and v, in place (adam_step's; adam_amsgrad_step's too)."""
    as_dtype = v.dtype.type
    root_c, beta_2 = np.sqrt(as_dtype(one_minus_beta_2)), as_dtype(1) - as_dtype(one_minus_beta_2)
    m += one_minus_beta_1 * (grad - m)
    with np.errstate(over="ignore", invalid="ignore"):  # the inf and NaN that `wide` mends
        change = grad * grad - v
        wide = np.flatnonzero(~np.isfinite(change))
        scaled = root_c * grad[wide]
        v_wide = v[wide] * beta_2 + scaled * scaled
        v += one_minus_beta_2 * change
    v[wide] = v_wide


def sgd_nesterov_step(value, grad, velocity, lr, momentum, n_threads):
    """velocity = momentum * velocity - lr * grad; value += momentum * velocity - lr * grad (Keras' Nesterov)."""
    step = grad * lr
    velocity *= momentum
    velocity -= step
    value += velocity * momentum - step


def rmsprop_momentum_step(value, grad, ms, mom, mg, lr, rho, one_minus_rho, epsilon, momentum, n_threads):
    """RMSprop with momentum (mom) and/or centered (mg; each may be empty, not both):
    ms = rho ms + (1 - rho) grad^2; mg = rho mg + (1 - rho) grad; increment = lr grad / sqrt(ms - mg^2 + epsilon)
    (ms + epsilon uncentered); mom = momentum mom + increment, value -= mom (value -= increment without)."""
    ms *= rho
    ms += one_minus_rho * grad * grad
    if mg.shape[0]:
        mg *= rho
        mg += one_minus_rho * grad
        denominator = ms - mg * mg + epsilon
    else:
        denominator = ms + epsilon
    increment = lr * grad / np.sqrt(denominator)
    if mom.shape[0]:
        mom *= momentum
        mom += increment
        value -= mom
    else:
        value -= increment


def adam_amsgrad_step(value, grad, m, v, v_hat, alpha, one_minus_beta_1, one_minus_beta_2, epsilon, n_threads):
    """adam_step's m and v; v_hat = max(v_hat, v) (NaN kept); value -= alpha m / (sqrt(v_hat) + epsilon)."""
    _moments(grad, m, v, one_minus_beta_1, one_minus_beta_2)
    np.maximum(v_hat, v, out=v_hat)
    value -= alpha * m / (np.sqrt(v_hat) + epsilon)


def decay_step(value, weight_decay, lr, n_threads):
    """value -= value * weight_decay * lr (Keras' decoupled weight decay, before the update)."""
    value -= value * weight_decay * lr


LANES = 8  # a block's squares are summed in LANES interleaved float64 sums, then those in order


def block_square_sums(grad, starts, out, n_threads):
    """out[b] = the sum of grad[starts[b]:starts[b + 1]]^2 in float64: element i of a block in
    lane (i - start) % LANES, each lane summed in order, then the lanes in order."""
    for b in range(out.shape[0]):
        start, stop = starts[b], starts[b + 1]
        rows = np.zeros(-(-(stop - start) // LANES) * LANES)
        squares = rows[:stop - start]
        squares[...] = grad[start:stop]
        squares *= squares
        lanes = rows.reshape(-1, LANES).sum(axis=0)  # row after row: sequential per lane
        total = lanes[0]
        for lane in lanes[1:]:
            total += lane
        out[b] = total


def scale_blocks(grad, starts, mul, div, out, n_threads):
    """out[i] = grad[i] * mul[b] / div[b] for i in block b (starts[b] <= i < starts[b + 1])."""
    for b in range(mul.shape[0]):
        start, stop = starts[b], starts[b + 1]
        np.multiply(grad[start:stop], mul[b], out=out[start:stop])
        out[start:stop] /= div[b]


def clip_values(grad, low, high, out, n_threads):
    """out = grad clipped to [low, high]; NaN and +-inf kept as they are (fastdl's guards see them)."""
    np.clip(grad, low, high, out=out)
    wild = ~np.isfinite(grad)
    out[wild] = grad[wild]


# Keras 3's Adagrad, Adadelta, Adamax and Nadam (fastdl/nn/optimizers_more.py)

def adagrad_step(value, grad, accumulator, lr, epsilon, n_threads):
    """accumulator += grad^2; value -= lr * grad / sqrt(accumulator + epsilon)."""
    accumulator += grad * grad
    value -= lr * grad / np.sqrt(accumulator + epsilon)


def adadelta_step(value, grad, accumulated_grad, accumulated_delta, lr, rho, one_minus_rho, epsilon, n_threads):
    """accumulated_grad = rho a_g + (1 - rho) grad^2; delta = sqrt(a_d + epsilon) grad / sqrt(a_g + epsilon);
    accumulated_delta = rho a_d + (1 - rho) delta^2; value -= lr * delta."""
    accumulated_grad *= rho
    accumulated_grad += one_minus_rho * grad * grad
    delta = np.sqrt(accumulated_delta + epsilon) * grad / np.sqrt(accumulated_grad + epsilon)
    accumulated_delta *= rho
    accumulated_delta += one_minus_rho * delta * delta
    value -= lr * delta


def adamax_step(value, grad, m, u, alpha, one_minus_beta_1, beta_2, epsilon, n_threads):
    """m += (1 - beta_1) (grad - m); u = max(beta_2 u, |grad|) (NaN kept); value -= alpha m / (u + epsilon)."""
    m += one_minus_beta_1 * (grad - m)
    np.maximum(u * beta_2, np.abs(grad), out=u)
    value -= alpha * m / (u + epsilon)


def nadam_step(value, grad, m, v, m_rate, grad_rate, one_minus_beta_1, one_minus_beta_2, root_correction,
               epsilon, n_threads):
    """adam_step's m and v (v mended where grad^2 - v is not finite); value -= (m_rate m + grad_rate grad) /
    (sqrt(v) root_correction + epsilon), root_correction = 1 / sqrt(1 - beta_2^t) (see kernels/cpu/optim.py)."""
    _moments(grad, m, v, one_minus_beta_1, one_minus_beta_2)
    value -= (m_rate * m + grad_rate * grad) / (np.sqrt(v) * root_correction + epsilon)
