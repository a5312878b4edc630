"""Optimizer update kernels (numba.cuda); mirrors kernels/cpu/optim.py and kernels/npy/optim.py.

value, grad and the slots are 1-D device arrays of one float dtype; the scalars are NumPy scalars
of that dtype (the caller works out 1 - rho and the like in float64 first, as Keras does), so the
arithmetic stays in the parameter's dtype with the CPU kernels' operations in their order. One
thread per parameter element, one launch per parameter array: the update is fused (no
temporaries, each slot read and written once). On a device NVVM may contract a * b + c into a fused
multiply-add, so float32 results agree with the CPU backends to rounding, not always to the bit.
"""

import math

import numba
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


@kernel
def _sgd_nesterov(value, grad, velocity, lr, momentum):
    i = cuda.grid(1)
    if i >= value.shape[0]:
        return
    velocity[i] = velocity[i] * momentum - grad[i] * lr
    value[i] += velocity[i] * momentum - grad[i] * lr


def sgd_nesterov_step(value, grad, velocity, lr, momentum, n_threads):
    """velocity = momentum * velocity - lr * grad; value += momentum * velocity - lr * grad (Keras' Nesterov).
    n_threads is unused."""
    if value.shape[0]:
        _sgd_nesterov[grid_1d(value.shape[0])](value, grad, velocity, lr, momentum)


@kernel
def _rmsprop_momentum(value, grad, ms, mom, mg, lr, rho, one_minus_rho, epsilon, momentum):
    i = cuda.grid(1)
    if i >= value.shape[0]:
        return
    g = grad[i]
    ms[i] = ms[i] * rho + one_minus_rho * g * g
    if mg.shape[0]:
        mg[i] = mg[i] * rho + one_minus_rho * g
        denominator = ms[i] - mg[i] * mg[i] + epsilon
    else:
        denominator = ms[i] + epsilon
    increment = lr * g / math.sqrt(denominator)
    if mom.shape[0]:
        mom[i] = mom[i] * momentum + increment
        value[i] -= mom[i]
    else:
        value[i] -= increment


def rmsprop_momentum_step(value, grad, ms, mom, mg, lr, rho, one_minus_rho, epsilon, momentum, n_threads):
    """RMSprop with momentum (mom) and/or centered (mg; each may be empty, not both); see
    kernels/cpu/optim.py. n_threads is unused."""
    if value.shape[0]:
        _rmsprop_momentum[grid_1d(value.shape[0])](value, grad, ms, mom, mg, lr, rho, one_minus_rho, epsilon,
                                                   momentum)


@kernel
def _adam_amsgrad(value, grad, m, v, v_hat, alpha, one_minus_beta_1, one_minus_beta_2, epsilon):
    i = cuda.grid(1)
    if i >= value.shape[0]:
        return
    g = grad[i]
    m[i] += one_minus_beta_1 * (g - m[i])
    change = g * g - v[i]
    if math.isfinite(change):
        v[i] += one_minus_beta_2 * change
    else:  # as _adam
        scaled = math.sqrt(one_minus_beta_2) * g
        v[i] = v[i] * (1 - one_minus_beta_2) + scaled * scaled
    v_i = v[i]
    top = v_hat[i]
    if v_i > top or math.isnan(v_i):  # np.maximum's: a NaN in either is kept
        top = v_i
    v_hat[i] = top
    value[i] -= alpha * m[i] / (math.sqrt(top) + epsilon)


def adam_amsgrad_step(value, grad, m, v, v_hat, alpha, one_minus_beta_1, one_minus_beta_2, epsilon, n_threads):
    """adam_step's m and v; v_hat = max(v_hat, v) (NaN kept); value -= alpha m / (sqrt(v_hat) + epsilon).
    n_threads is unused."""
    if value.shape[0]:
        _adam_amsgrad[grid_1d(value.shape[0])](value, grad, m, v, v_hat, alpha, one_minus_beta_1, one_minus_beta_2,
                                               epsilon)


@kernel
def _decay(value, weight_decay, lr):
    i = cuda.grid(1)
    if i < value.shape[0]:
        value[i] -= value[i] * weight_decay * lr


def decay_step(value, weight_decay, lr, n_threads):
    """value -= value * weight_decay * lr (Keras' decoupled weight decay). n_threads is unused."""
    if value.shape[0]:
        _decay[grid_1d(value.shape[0])](value, weight_decay, lr)


# One block of SUM_THREADS threads per data block: thread t sums the squares of elements t,
# t + SUM_THREADS, ... in float64, then a fixed tree adds the threads' sums (deterministic; the CPU
# kernels' lanes differ, so the sums agree with theirs to rounding). The simulator runs each
# thread as Python: small blocks there.
SUM_THREADS = 8 if numba.config.ENABLE_CUDASIM else 128


@kernel
def _block_square_sums(grad, starts, out):
    partial = cuda.shared.array(SUM_THREADS, numba.float64)
    b, t = cuda.blockIdx.x, cuda.threadIdx.x
    total = 0.0
    for i in range(starts[b] + t, starts[b + 1], SUM_THREADS):
        x = numba.float64(grad[i])
        total += x * x
    partial[t] = total
    stride = SUM_THREADS // 2
    while stride > 0:
        cuda.syncthreads()
        if t < stride:
            partial[t] += partial[t + stride]
        stride //= 2
    if t == 0:
        out[b] = partial[0]


def block_square_sums(grad, starts, out, n_threads):
    """out[b] = the sum of grad[starts[b]:starts[b + 1]]^2 in float64 (out a float64 device array).
    n_threads is unused."""
    if out.shape[0]:
        _block_square_sums[out.shape[0], SUM_THREADS](grad, starts, out)


@kernel
def _scale_blocks(grad, starts, mul, div, out):
    b = cuda.blockIdx.x
    for i in range(starts[b] + cuda.threadIdx.x, starts[b + 1], cuda.blockDim.x):
        out[i] = grad[i] * mul[b] / div[b]


def scale_blocks(grad, starts, mul, div, out, n_threads):
    """out[i] = grad[i] * mul[b] / div[b] for i in block b (starts[b] <= i < starts[b + 1]). n_threads is unused."""
    if mul.shape[0]:
        _scale_blocks[mul.shape[0], SUM_THREADS](grad, starts, mul, div, out)


@kernel
def _clip_values(grad, low, high, out):
    i = cuda.grid(1)
    if i >= grad.shape[0]:
        return
    g = grad[i]
    if math.isfinite(g):  # NaN and +-inf are kept for fastdl's guards (no min/max: see test_gpu_compiles)
        if g > high:
            g = high
        elif g < low:
            g = low
    out[i] = g


def clip_values(grad, low, high, out, n_threads):
    """out = grad clipped to [low, high]; NaN and +-inf kept as they are. n_threads is unused."""
    if grad.shape[0]:
        _clip_values[grid_1d(grad.shape[0])](grad, low, high, out)


# Keras 3's Adagrad, Adadelta, Adamax and Nadam (fastdl/nn/optimizers_more.py)

@kernel
def _adagrad(value, grad, accumulator, lr, epsilon):
    i = cuda.grid(1)
    if i >= value.shape[0]:
        return
    g = grad[i]
    a = accumulator[i] + g * g
    accumulator[i] = a
    value[i] -= lr * g / math.sqrt(a + epsilon)


def adagrad_step(value, grad, accumulator, lr, epsilon, n_threads):
    """accumulator += grad^2; value -= lr * grad / sqrt(accumulator + epsilon). n_threads is unused."""
    if value.shape[0]:
        _adagrad[grid_1d(value.shape[0])](value, grad, accumulator, lr, epsilon)


@kernel
def _adadelta(value, grad, accumulated_grad, accumulated_delta, lr, rho, one_minus_rho, epsilon):
    i = cuda.grid(1)
    if i >= value.shape[0]:
        return
    g = grad[i]
    a_g = accumulated_grad[i] * rho + one_minus_rho * g * g
    accumulated_grad[i] = a_g
    a_d = accumulated_delta[i]
    delta = math.sqrt(a_d + epsilon) * g / math.sqrt(a_g + epsilon)
    accumulated_delta[i] = a_d * rho + one_minus_rho * delta * delta
    value[i] -= lr * delta


def adadelta_step(value, grad, accumulated_grad, accumulated_delta, lr, rho, one_minus_rho, epsilon, n_threads):
    """accumulated_grad = rho a_g + (1 - rho) grad^2; delta = sqrt(a_d + epsilon) grad / sqrt(a_g + epsilon);
    accumulated_delta = rho a_d + (1 - rho) delta^2; value -= lr * delta. n_threads is unused."""
    if value.shape[0]:
        _adadelta[grid_1d(value.shape[0])](value, grad, accumulated_grad, accumulated_delta, lr, rho, one_minus_rho,
                                           epsilon)


@kernel
def _adamax(value, grad, m, u, alpha, one_minus_beta_1, beta_2, epsilon):
    i = cuda.grid(1)
    if i >= value.shape[0]:
        return
    g = grad[i]
    m_i = m[i] + one_minus_beta_1 * (g - m[i])
    m[i] = m_i
    top = u[i] * beta_2
    size = abs(g)
    if size > top or math.isnan(size):  # np.maximum's: a NaN in either is kept
        top = size
    u[i] = top
    value[i] -= alpha * m_i / (top + epsilon)


def adamax_step(value, grad, m, u, alpha, one_minus_beta_1, beta_2, epsilon, n_threads):
    """m += (1 - beta_1) (grad - m); u = max(beta_2 u, |grad|) (NaN kept); value -= alpha m / (u + epsilon).
    n_threads is unused."""
    if value.shape[0]:
        _adamax[grid_1d(value.shape[0])](value, grad, m, u, alpha, one_minus_beta_1, beta_2, epsilon)


@kernel
def _nadam(value, grad, m, v, m_rate, grad_rate, one_minus_beta_1, one_minus_beta_2, root_correction,
           epsilon):
    i = cuda.grid(1)
    if i >= value.shape[0]:
        return
    g = grad[i]
    m_i = m[i] + one_minus_beta_1 * (g - m[i])
    m[i] = m_i
    change = g * g - v[i]
    if math.isfinite(change):
        v[i] += one_minus_beta_2 * change
    else:  # as _adam
        scaled = math.sqrt(one_minus_beta_2) * g
        v[i] = v[i] * (1 - one_minus_beta_2) + scaled * scaled
    value[i] -= (m_rate * m_i + grad_rate * g) / (math.sqrt(v[i]) * root_correction + epsilon)


def nadam_step(value, grad, m, v, m_rate, grad_rate, one_minus_beta_1, one_minus_beta_2, root_correction,
               epsilon, n_threads):
    """adam_step's m and v (v mended where grad^2 - v is not finite); value -= (m_rate m + grad_rate grad) /
    (sqrt(v) root_correction + epsilon), root_correction = 1 / sqrt(1 - beta_2^t) (see kernels/cpu/optim.py).
    n_threads is unused."""
    if value.shape[0]:
        _nadam[grid_1d(value.shape[0])](value, grad, m, v, m_rate, grad_rate, one_minus_beta_1, one_minus_beta_2,
                                        root_correction, epsilon)
