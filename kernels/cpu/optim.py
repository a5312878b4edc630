"""Optimizer update kernels (Numba): one pass over each parameter, no temporaries.

Mirrors kernels/cy/optim.pyx and kernels/npy/optim.py (the same operations in the same order, so
the same bits). value, grad and the slots are 1-D arrays of one float dtype; the scalars are of
that dtype (the caller works out 1 - rho and the like in float64 first, as Keras does).
"""

import numpy as np
from numba import prange

from ._jit import compile_kernel, helper, launch


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


def _sgd_nesterov(value, grad, velocity, lr, momentum):
    for i in prange(value.shape[0]):
        velocity[i] = velocity[i] * momentum - grad[i] * lr
        value[i] += velocity[i] * momentum - grad[i] * lr


_sgd_nesterov_serial = compile_kernel(_sgd_nesterov)
_sgd_nesterov_parallel = compile_kernel(_sgd_nesterov, parallel=True)


def sgd_nesterov_step(value, grad, velocity, lr, momentum, n_threads):
    """velocity = momentum * velocity - lr * grad; value += momentum * velocity - lr * grad (Keras' Nesterov)."""
    launch(_sgd_nesterov_serial, _sgd_nesterov_parallel, n_threads, value, grad, velocity, lr, momentum)


def _rmsprop_momentum(value, grad, ms, mom, mg, lr, rho, one_minus_rho, epsilon, momentum):
    centered, has_momentum = mg.shape[0] > 0, mom.shape[0] > 0
    for i in prange(value.shape[0]):
        g = grad[i]
        ms[i] = ms[i] * rho + one_minus_rho * g * g
        if centered:
            mg[i] = mg[i] * rho + one_minus_rho * g
            denominator = ms[i] - mg[i] * mg[i] + epsilon
        else:
            denominator = ms[i] + epsilon
        increment = lr * g / np.sqrt(denominator)
        if has_momentum:
            mom[i] = mom[i] * momentum + increment
            value[i] -= mom[i]
        else:
            value[i] -= increment


_rmsprop_momentum_serial = compile_kernel(_rmsprop_momentum)
_rmsprop_momentum_parallel = compile_kernel(_rmsprop_momentum, parallel=True)


def rmsprop_momentum_step(value, grad, ms, mom, mg, lr, rho, one_minus_rho, epsilon, momentum, n_threads):
    """RMSprop with momentum (mom) and/or centered (mg; each may be empty, not both):
    ms = rho ms + (1 - rho) grad^2; mg = rho mg + (1 - rho) grad; increment = lr grad / sqrt(ms - mg^2 + epsilon)
    (ms + epsilon uncentered); mom = momentum mom + increment, value -= mom (value -= increment without)."""
    launch(_rmsprop_momentum_serial, _rmsprop_momentum_parallel, n_threads, value, grad, ms, mom, mg, lr, rho,
           one_minus_rho, epsilon, momentum)


def _adam_amsgrad(value, grad, m, v, v_hat, alpha, one_minus_beta_1, one_minus_beta_2, epsilon):
    root_c = np.sqrt(one_minus_beta_2)  # as _adam
    beta_2 = one_minus_beta_2 ** 0 - one_minus_beta_2  # 1 - it, in its own type (see _adam)
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
        top = v_hat[i]
        if v_i > top or v_i != v_i:  # np.maximum's: a NaN in either is kept
            top = v_i
        v_hat[i] = top
        value[i] -= alpha * m[i] / (np.sqrt(top) + epsilon)


_adam_amsgrad_serial = compile_kernel(_adam_amsgrad, exact=True)
_adam_amsgrad_parallel = compile_kernel(_adam_amsgrad, exact=True, parallel=True)


def adam_amsgrad_step(value, grad, m, v, v_hat, alpha, one_minus_beta_1, one_minus_beta_2, epsilon, n_threads):
    """adam_step's m and v; v_hat = max(v_hat, v) (NaN kept); value -= alpha m / (sqrt(v_hat) + epsilon)."""
    launch(_adam_amsgrad_serial, _adam_amsgrad_parallel, n_threads, value, grad, m, v, v_hat, alpha,
           one_minus_beta_1, one_minus_beta_2, epsilon)


def _decay(value, weight_decay, lr):
    for i in prange(value.shape[0]):
        value[i] -= value[i] * weight_decay * lr


_decay_serial = compile_kernel(_decay)
_decay_parallel = compile_kernel(_decay, parallel=True)


def decay_step(value, weight_decay, lr, n_threads):
    """value -= value * weight_decay * lr (Keras' decoupled weight decay, before the update)."""
    launch(_decay_serial, _decay_parallel, n_threads, value, weight_decay, lr)


LANES = 8  # as kernels/npy/optim.py: a block's squares in LANES interleaved sums, then those in order


@helper()
def _block_sum(grad, start, stop):
    lanes = np.zeros(LANES)
    full = start + (stop - start) // LANES * LANES
    for i in range(start, full, LANES):
        for lane in range(LANES):
            x = np.float64(grad[i + lane])
            lanes[lane] += x * x
    for i in range(full, stop):
        x = np.float64(grad[i])
        lanes[i - full] += x * x
    total = lanes[0]
    for lane in range(1, LANES):
        total += lanes[lane]
    return total


def _block_square_sums(grad, starts, out):
    for b in prange(out.shape[0]):
        out[b] = _block_sum(grad, starts[b], starts[b + 1])


_block_square_sums_serial = compile_kernel(_block_square_sums, exact=True)
_block_square_sums_parallel = compile_kernel(_block_square_sums, exact=True, parallel=True)


def block_square_sums(grad, starts, out, n_threads):
    """out[b] = the sum of grad[starts[b]:starts[b + 1]]^2 in float64 (lanes as kernels/npy/optim.py's)."""
    launch(_block_square_sums_serial, _block_square_sums_parallel, n_threads, grad, starts, out)


def _scale_blocks(grad, starts, mul, div, out):
    for b in prange(mul.shape[0]):
        for i in range(starts[b], starts[b + 1]):
            out[i] = grad[i] * mul[b] / div[b]


_scale_blocks_serial = compile_kernel(_scale_blocks)
_scale_blocks_parallel = compile_kernel(_scale_blocks, parallel=True)


def scale_blocks(grad, starts, mul, div, out, n_threads):
    """out[i] = grad[i] * mul[b] / div[b] for i in block b (starts[b] <= i < starts[b + 1])."""
    launch(_scale_blocks_serial, _scale_blocks_parallel, n_threads, grad, starts, mul, div, out)


def _clip_values(grad, low, high, out):
    for i in prange(grad.shape[0]):
        g = grad[i]
        if g - g == 0:  # finite: NaN and +-inf are kept for fastdl's guards
            g = min(max(g, low), high)
        out[i] = g


_clip_values_serial = compile_kernel(_clip_values, exact=True)
_clip_values_parallel = compile_kernel(_clip_values, exact=True, parallel=True)


def clip_values(grad, low, high, out, n_threads):
    """out = grad clipped to [low, high]; NaN and +-inf kept as they are (fastdl's guards see them)."""
    launch(_clip_values_serial, _clip_values_parallel, n_threads, grad, low, high, out)


# Keras 3's Adagrad, Adadelta, Adamax and Nadam (fastdl/nn/optimizers_more.py)

def _adagrad(value, grad, accumulator, lr, epsilon):
    for i in prange(value.shape[0]):
        g = grad[i]
        # grad^2 overflows only where accumulator + grad^2 is past the dtype itself: inf is its
        # value, and the parameter stops (a step of lr g / inf = 0), as in Keras.
        a = accumulator[i] + g * g
        accumulator[i] = a
        value[i] -= lr * g / np.sqrt(a + epsilon)


_adagrad_serial = compile_kernel(_adagrad)
_adagrad_parallel = compile_kernel(_adagrad, parallel=True)


def adagrad_step(value, grad, accumulator, lr, epsilon, n_threads):
    """accumulator += grad^2; value -= lr * grad / sqrt(accumulator + epsilon)."""
    launch(_adagrad_serial, _adagrad_parallel, n_threads, value, grad, accumulator, lr, epsilon)


def _adadelta(value, grad, accumulated_grad, accumulated_delta, lr, rho, one_minus_rho, epsilon):
    for i in prange(value.shape[0]):
        g = grad[i]
        # (1 - rho) * g * g as RMSprop's: (1 - rho) g first, so g^2 alone never overflows
        a_g = accumulated_grad[i] * rho + one_minus_rho * g * g
        accumulated_grad[i] = a_g
        a_d = accumulated_delta[i]
        delta = np.sqrt(a_d + epsilon) * g / np.sqrt(a_g + epsilon)
        accumulated_delta[i] = a_d * rho + one_minus_rho * delta * delta
        value[i] -= lr * delta


_adadelta_serial = compile_kernel(_adadelta)
_adadelta_parallel = compile_kernel(_adadelta, parallel=True)


def adadelta_step(value, grad, accumulated_grad, accumulated_delta, lr, rho, one_minus_rho, epsilon, n_threads):
    """accumulated_grad = rho a_g + (1 - rho) grad^2; delta = sqrt(a_d + epsilon) grad / sqrt(a_g + epsilon);
    accumulated_delta = rho a_d + (1 - rho) delta^2; value -= lr * delta."""
    launch(_adadelta_serial, _adadelta_parallel, n_threads, value, grad, accumulated_grad, accumulated_delta, lr,
           rho, one_minus_rho, epsilon)


def _adamax(value, grad, m, u, alpha, one_minus_beta_1, beta_2, epsilon):
    for i in prange(value.shape[0]):
        g = grad[i]
        m_i = m[i] + one_minus_beta_1 * (g - m[i])
        m[i] = m_i
        top = u[i] * beta_2
        size = abs(g)
        # np.maximum's (a NaN in either is kept); `|`, not `or`: without the branch the loop
        # vectorises (3x faster)
        top = size if (size > top) | (size != size) else top
        u[i] = top
        value[i] -= alpha * m_i / (top + epsilon)


# Exact (no fastmath): fastmath's no-NaN assumption would drop the NaN test above.
_adamax_serial = compile_kernel(_adamax, exact=True)
_adamax_parallel = compile_kernel(_adamax, exact=True, parallel=True)


def adamax_step(value, grad, m, u, alpha, one_minus_beta_1, beta_2, epsilon, n_threads):
    """m += (1 - beta_1) (grad - m); u = max(beta_2 u, |grad|) (NaN kept); value -= alpha m / (u + epsilon)."""
    launch(_adamax_serial, _adamax_parallel, n_threads, value, grad, m, u, alpha, one_minus_beta_1, beta_2, epsilon)


def _nadam(value, grad, m, v, m_rate, grad_rate, one_minus_beta_1, one_minus_beta_2, root_correction,
           epsilon):
    root_c = np.sqrt(one_minus_beta_2)  # as _adam
    beta_2 = one_minus_beta_2 ** 0 - one_minus_beta_2  # 1 - it, in its own type (see _adam)
    for i in prange(value.shape[0]):
        g = grad[i]
        m_i = m[i] + one_minus_beta_1 * (g - m[i])
        m[i] = m_i
        v_i = v[i]
        change = g * g - v_i
        if np.isfinite(change):
            v_i += one_minus_beta_2 * change
        else:
            scaled = root_c * g
            v_i = v_i * beta_2 + scaled * scaled
        v[i] = v_i
        value[i] -= (m_rate * m_i + grad_rate * g) / (np.sqrt(v_i) * root_correction + epsilon)


_nadam_serial = compile_kernel(_nadam, exact=True)  # exact: as _adam's overflow branch
_nadam_parallel = compile_kernel(_nadam, exact=True, parallel=True)


def nadam_step(value, grad, m, v, m_rate, grad_rate, one_minus_beta_1, one_minus_beta_2, root_correction,
               epsilon, n_threads):
    """adam_step's m and v (v mended where grad^2 - v is not finite); value -= (m_rate m + grad_rate grad) /
    (sqrt(v) root_correction + epsilon) with root_correction = 1 / sqrt(1 - beta_2^t): Keras'
    sqrt(v / (1 - beta_2^t)), but never inf where v / (1 - beta_2^t) would overflow."""
    launch(_nadam_serial, _nadam_parallel, n_threads, value, grad, m, v, m_rate, grad_rate, one_minus_beta_1,
           one_minus_beta_2, root_correction, epsilon)
