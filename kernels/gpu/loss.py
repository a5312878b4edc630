"""Output-layer kernels (numba.cuda); mirrors kernels/cpu/loss.py and kernels/npy/loss.py.

Softmax, the losses with their gradients, dropout. As on the CPU, values and gradients are of one
float dtype and targets float64; every loss is worked out in float64 and each row's written to
row_loss (n,) float64, which the caller sums (on the device or after a copy: no launcher here
returns a scalar); gradients are scaled by `scale` (float64) and rounded once to their dtype. All
arrays are device arrays of any strides.

Softmax and the losses are row reductions: one thread per row for now, which adds a row's terms in
the CPU kernels' order (row_loss has their bits up to exp/log's last place); a block per row with a
tree reduction is the faster layout for wide rows. Dropout is one thread per entry.

Values go to float64 through float64(v), not v * 1.0: under numba's simulator a kernel runs as
Python, where NumPy 2 keeps np.float32 * 1.0 a float32.
"""

import math

from numba import cuda, float64

from ._launch import grid_1d, kernel


@cuda.jit(device=True)
def _shift_and_sum(z, i):
    """Row i's maximum in float64, which softmax subtracts so that exp never overflows, and the sum
    of exp(row - maximum)."""
    shift = float64(z[i, 0])
    for j in range(1, z.shape[1]):
        value = float64(z[i, j])
        if value > shift:  # not max(): the CUDA target lacks it for floats
            shift = value
    total = 0.0
    for j in range(z.shape[1]):
        total += math.exp(float64(z[i, j]) - shift)
    return shift, total


@kernel
def _softmax(z, out):
    i = cuda.grid(1)
    if i >= z.shape[0]:
        return
    shift, total = _shift_and_sum(z, i)
    for j in range(z.shape[1]):  # entry j is read before it is written: out may be z
        out[i, j] = math.exp(float64(z[i, j]) - shift) / total


def softmax(z, out, n_threads):
    """out (n, c) = softmax of each row of z (out may be z). n_threads is unused."""
    if z.size == 0:
        return
    _softmax[grid_1d(z.shape[0])](z, out)


@kernel
def _softmax_backward(out, dout, dpre):
    i = cuda.grid(1)
    if i >= out.shape[0]:
        return
    inner = 0.0
    for j in range(out.shape[1]):
        inner += float64(dout[i, j]) * float64(out[i, j])
    for j in range(out.shape[1]):
        dpre[i, j] = float64(out[i, j]) * (float64(dout[i, j]) - inner)


def softmax_backward(out, dout, dpre, n_threads):
    """dpre (n, c) = out * (dout - sum(dout * out)) row by row, from softmax's output `out`.
    n_threads is unused."""
    if out.size == 0:
        return
    _softmax_backward[grid_1d(out.shape[0])](out, dout, dpre)


@kernel
def _softmax_xent_codes(logits, codes, scale, grad, row_loss):
    i = cuda.grid(1)
    if i >= logits.shape[0]:
        return
    shift, total = _shift_and_sum(logits, i)
    y = codes[i]
    row_loss[i] = shift + math.log(total) - float64(logits[i, y])
    for j in range(logits.shape[1]):
        p = math.exp(float64(logits[i, j]) - shift) / total
        if j == y:
            p -= 1.0
        grad[i, j] = p * scale


def softmax_xent_codes(logits, codes, scale, grad, row_loss, n_threads):
    """Cross-entropy of softmax(logits) against class codes (n,) int64 (see kernels/npy/loss.py):
    row_loss = log-sum-exp(row) - row[code]; grad = (softmax(row) - onehot(code)) * scale.
    n_threads is unused."""
    if logits.size == 0:
        return
    _softmax_xent_codes[grid_1d(logits.shape[0])](logits, codes, scale, grad, row_loss)


@kernel
def _softmax_xent_targets(logits, targets, scale, grad, row_loss):
    i = cuda.grid(1)
    if i >= logits.shape[0]:
        return
    shift, total = _shift_and_sum(logits, i)
    mass = 0.0
    dot = 0.0
    for j in range(logits.shape[1]):
        mass += targets[i, j]
        dot += targets[i, j] * float64(logits[i, j])
    row_loss[i] = mass * (shift + math.log(total)) - dot
    for j in range(logits.shape[1]):
        p = math.exp(float64(logits[i, j]) - shift) / total
        grad[i, j] = (p * mass - targets[i, j]) * scale


def softmax_xent_targets(logits, targets, scale, grad, row_loss, n_threads):
    """Cross-entropy of softmax(logits) against target distributions (n, c) float64:
    row_loss = sum(t) * log-sum-exp(row) - sum(t * row); grad = (softmax(row) * sum(t) - t) * scale.
    n_threads is unused."""
    if logits.size == 0:
        return
    _softmax_xent_targets[grid_1d(logits.shape[0])](logits, targets, scale, grad, row_loss)


@kernel
def _squared_error(y_pred, y_true, period, scale, grad, row_loss):
    i = cuda.grid(1)
    if i >= y_pred.shape[0]:
        return
    half = period / 2
    total = 0.0
    for j in range(y_pred.shape[1]):
        error = float64(y_pred[i, j]) - y_true[i, j]
        if period > 0:
            # ((e + half) mod period) - half, mod with the sign of period as np.mod; fmod(e) first
            # (exact), so e + half cannot round for huge errors (1e20 + 6 == 1e20)
            wrapped = math.fmod(math.fmod(error, period) + half, period)
            if wrapped < 0:
                wrapped += period
            error = wrapped - half
        total += error * error
        grad[i, j] = 2.0 * error * scale
    row_loss[i] = total


def squared_error(y_pred, y_true, period, scale, grad, row_loss, n_threads):
    """Squared error against y_true (n, m) float64, the short way round a circle of circumference
    period when period > 0: row_loss = sum of squared errors, grad = 2 * error * scale.
    n_threads is unused."""
    if y_pred.shape[0] == 0:
        return
    _squared_error[grid_1d(y_pred.shape[0])](y_pred, y_true, period, scale, grad, row_loss)


@kernel
def _absolute_error(y_pred, y_true, period, delta, scale, grad, row_loss):
    i = cuda.grid(1)
    if i >= y_pred.shape[0]:
        return
    half = period / 2
    huber = delta > 0
    slope = delta if huber else 1.0
    total = 0.0
    for j in range(y_pred.shape[1]):
        error = float64(y_pred[i, j]) - y_true[i, j]
        if period > 0:  # wrapped as in _squared_error
            wrapped = math.fmod(math.fmod(error, period) + half, period)
            if wrapped < 0:
                wrapped += period
            error = wrapped - half
        size = math.fabs(error)
        part = delta if size > delta else size  # min(|e|, delta), the part under the square; NaN stays NaN
        weight = part if huber else 1.0
        total += weight * (size - 0.5 * part)
        grad[i, j] = math.copysign(slope if size > delta else part, error) * scale
    row_loss[i] = total


def absolute_error(y_pred, y_true, period, delta, scale, grad, row_loss, n_threads):
    """Huber loss (delta > 0) or absolute error (delta == 0) against y_true (n, m) float64, the short
    way round a circle when period > 0: per value part (|e| - part / 2) with part = min(|e|, delta)
    (for the absolute error |e|), summed into row_loss; grad = sign(e) * part * scale where |e| <=
    delta, else sign(e) * delta * scale (1 for the absolute error). n_threads is unused."""
    if y_pred.shape[0] == 0:
        return
    _absolute_error[grid_1d(y_pred.shape[0])](y_pred, y_true, period, delta, scale, grad, row_loss)


@kernel
def _binary_xent_logits(logits, y_true, scale, grad, row_loss):
    i = cuda.grid(1)
    if i >= logits.shape[0]:
        return
    total = 0.0
    for j in range(logits.shape[1]):
        z = float64(logits[i, j])
        y = y_true[i, j]
        e = math.exp(-math.fabs(z))  # exp of a non-positive number only
        positive = z if z > 0 else 0.0
        total += positive - z * y + math.log1p(e)
        sigmoid = 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
        grad[i, j] = (sigmoid - y) * scale
    row_loss[i] = total


def binary_xent_logits(logits, y_true, scale, grad, row_loss, n_threads):
    """Binary cross-entropy of sigmoid(logits) against y_true (n, m) float64 in [0, 1]:
    softplus(z) - y z per value, summed into row_loss; grad = (sigmoid(z) - y) * scale.
    n_threads is unused."""
    if logits.shape[0] == 0:
        return
    _binary_xent_logits[grid_1d(logits.shape[0])](logits, y_true, scale, grad, row_loss)


@kernel
def _binary_xent(probs, y_true, low, high, scale, grad, row_loss):
    i = cuda.grid(1)
    if i >= probs.shape[0]:
        return
    total = 0.0
    for j in range(probs.shape[1]):
        p = float64(probs[i, j])
        y = y_true[i, j]
        slope = 0.0  # where the clip is active the clipped loss is flat
        if p < low:  # not min()/max() of floats (NaN stays NaN, as np.clip)
            p = low
        elif p > high:
            p = high
        else:
            slope = (p - y) / (p * (1.0 - p))
        total -= y * math.log(p) + (1.0 - y) * math.log1p(-p)
        grad[i, j] = slope * scale
    row_loss[i] = total


def binary_xent(probs, y_true, low, high, scale, grad, row_loss, n_threads):
    """Binary cross-entropy of probabilities, clipped to [low, high], against y_true (n, m)
    float64 in [0, 1]: -(y log p + (1 - y) log(1 - p)) per value, summed into row_loss; grad =
    (p - y) / (p (1 - p)) * scale where the clip is inactive, 0 where it is. n_threads is unused."""
    if probs.shape[0] == 0:
        return
    _binary_xent[grid_1d(probs.shape[0])](probs, y_true, low, high, scale, grad, row_loss)


@kernel
def _dropout(x, draws, rate, kept_scale, out, mask):
    index = cuda.grid(1)
    if index >= x.size:
        return
    m = x.shape[1]
    i, j = index // m, index % m
    value = x[i, j]  # read before out (which may be x) is written
    if draws[i, j] >= rate:
        mask[i, j] = kept_scale
        out[i, j] = value * kept_scale
    else:
        mask[i, j] = 0
        out[i, j] = value * 0  # as x * mask: NaN stays NaN, the sign of zero follows x


def dropout(x, draws, rate, kept_scale, out, mask, n_threads):
    """mask = kept_scale where draws (n, m) float64 >= rate, else 0; out = x * mask (out may be x).
    kept_scale is of x's dtype, rate a float. n_threads is unused."""
    if x.size == 0:
        return
    _dropout[grid_1d(x.size)](x, draws, rate, kept_scale, out, mask)
