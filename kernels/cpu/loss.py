"""Output-layer kernels (Numba): softmax, losses with their gradients, dropout.

Mirrors kernels/cy/loss.pyx and kernels/npy/loss.py (see there for the layout). Each row is one
task; every loss is worked out in float64 and each row's written to row_loss, which the caller sums.
"""

import math

import numpy as np
from numba import prange

from ._jit import compile_kernel, helper, launch

_helper = helper()


@_helper
def _mod(a, b):
    """a mod b with the sign of b > 0, as numpy's np.mod for floats."""
    r = np.fmod(a, b)
    if r < 0:
        r += b
    return r


@_helper
def _shift_and_sum(row):
    """The row's maximum, which softmax subtracts so that exp never overflows, and the sum of
    exp(row - maximum)."""
    shift = np.float64(row[0])
    for j in range(1, row.shape[0]):
        shift = max(shift, np.float64(row[j]))
    total = 0.0
    for j in range(row.shape[0]):
        total += math.exp(np.float64(row[j]) - shift)
    return shift, total


def _softmax(z, out):
    n, c = z.shape
    for i in prange(n):
        shift, total = _shift_and_sum(z[i])
        for j in range(c):
            out[i, j] = math.exp(np.float64(z[i, j]) - shift) / total


def _softmax_backward(out, dout, dpre):
    n, c = out.shape
    for i in prange(n):
        inner = 0.0
        for j in range(c):
            inner += np.float64(dout[i, j]) * np.float64(out[i, j])
        for j in range(c):
            dpre[i, j] = np.float64(out[i, j]) * (np.float64(dout[i, j]) - inner)


def _softmax_xent(logits, codes, targets, scale, grad, row_loss):
    """codes (n,) when targets is empty, else targets (n, c) float64."""
    n, c = logits.shape
    sparse = targets.shape[0] == 0
    for i in prange(n):
        shift, total = _shift_and_sum(logits[i])
        lse = shift + math.log(total)
        if sparse:
            y = codes[i]
            row_loss[i] = lse - np.float64(logits[i, y])
            for j in range(c):
                p = math.exp(np.float64(logits[i, j]) - shift) / total
                grad[i, j] = ((p - 1.0) if j == y else p) * scale
        else:
            mass = 0.0
            dot = 0.0
            for j in range(c):
                mass += targets[i, j]
                dot += targets[i, j] * np.float64(logits[i, j])
            row_loss[i] = mass * lse - dot
            for j in range(c):
                p = math.exp(np.float64(logits[i, j]) - shift) / total
                grad[i, j] = (p * mass - targets[i, j]) * scale


def _squared_error(y_pred, y_true, period, scale, grad, row_loss):
    n, m = y_pred.shape
    half = period / 2
    for i in prange(n):
        total = 0.0
        for j in range(m):
            error = np.float64(y_pred[i, j]) - y_true[i, j]
            if period > 0:
                # fmod first (exact), so error + half cannot round for huge errors (1e20 + 6 == 1e20)
                error = _mod(np.fmod(error, period) + half, period) - half
            total += error * error
            grad[i, j] = 2.0 * error * scale
        row_loss[i] = total


def _absolute_error(y_pred, y_true, period, delta, scale, grad, row_loss):
    n, m = y_pred.shape
    half = period / 2
    huber = delta > 0
    slope = delta if huber else 1.0
    for i in prange(n):
        total = 0.0
        for j in range(m):
            error = np.float64(y_pred[i, j]) - y_true[i, j]
            if period > 0:
                error = _mod(np.fmod(error, period) + half, period) - half
            size = abs(error)
            # Huber's part (|e| - part / 2), part = min(|e|, delta); the absolute error's |e| (part 0,
            # weight 1). Selects (minsd), not ifs: an if mispredicts between Huber's two parts (3-6x slower).
            part = delta if size > delta else size  # NaN stays NaN
            weight = part if huber else 1.0
            total += weight * (size - 0.5 * part)
            grad[i, j] = math.copysign(slope if size > delta else part, error) * scale
        row_loss[i] = total


def _binary_xent_logits(logits, y_true, scale, grad, row_loss):
    n, m = logits.shape
    for i in prange(n):
        total = 0.0
        for j in range(m):
            z = np.float64(logits[i, j])
            y = y_true[i, j]
            e = math.exp(-abs(z))
            total += (z if z > 0 else 0.0) - z * y + math.log1p(e)
            sigmoid = 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
            grad[i, j] = (sigmoid - y) * scale
        row_loss[i] = total


def _binary_xent(probs, y_true, low, high, scale, grad, row_loss):
    n, m = probs.shape
    for i in prange(n):
        total = 0.0
        for j in range(m):
            p = np.float64(probs[i, j])
            y = y_true[i, j]
            slope = 0.0  # where the clip is active the clipped loss is flat
            if p < low:  # not min()/max(): NaN stays NaN, as np.clip
                p = low
            elif p > high:
                p = high
            else:
                slope = (p - y) / (p * (1.0 - p))
            total -= y * math.log(p) + (1.0 - y) * math.log1p(-p)
            grad[i, j] = slope * scale
        row_loss[i] = total


def _dropout(x, draws, rate, kept_scale, out, mask):
    n, m = x.shape
    zero = mask.dtype.type(0)
    for i in prange(n):
        for j in range(m):
            keep = kept_scale if draws[i, j] >= rate else zero
            mask[i, j] = keep
            out[i, j] = x[i, j] * keep


_softmax_serial, _softmax_parallel = compile_kernel(_softmax), compile_kernel(_softmax, parallel=True)
_softmax_backward_serial = compile_kernel(_softmax_backward)
_softmax_backward_parallel = compile_kernel(_softmax_backward, parallel=True)
_xent_serial, _xent_parallel = compile_kernel(_softmax_xent), compile_kernel(_softmax_xent, parallel=True)
_squared_serial, _squared_parallel = compile_kernel(_squared_error), compile_kernel(_squared_error, parallel=True)
_absolute_serial = compile_kernel(_absolute_error)
_absolute_parallel = compile_kernel(_absolute_error, parallel=True)
_binary_serial = compile_kernel(_binary_xent_logits)
_binary_parallel = compile_kernel(_binary_xent_logits, parallel=True)
_probs_serial, _probs_parallel = compile_kernel(_binary_xent), compile_kernel(_binary_xent, parallel=True)
_dropout_serial, _dropout_parallel = compile_kernel(_dropout), compile_kernel(_dropout, parallel=True)
_NO_CODES = np.empty(0, np.int64)
_NO_TARGETS = np.empty((0, 0))


def softmax(z, out, n_threads):
    """out (n, c) = softmax of each row of z (out may be z)."""
    if z.size == 0:
        return
    launch(_softmax_serial, _softmax_parallel, n_threads, z, out)


def softmax_backward(out, dout, dpre, n_threads):
    """dpre (n, c) = out * (dout - sum(dout * out)) row by row, from softmax's output `out`."""
    launch(_softmax_backward_serial, _softmax_backward_parallel, n_threads, out, dout, dpre)


def softmax_xent_codes(logits, codes, scale, grad, row_loss, n_threads):
    """Cross-entropy of softmax(logits) against class codes (n,) int64 (see kernels/npy/loss.py)."""
    if logits.size == 0:
        return
    launch(_xent_serial, _xent_parallel, n_threads, logits, codes, _NO_TARGETS, scale, grad, row_loss)


def softmax_xent_targets(logits, targets, scale, grad, row_loss, n_threads):
    """Cross-entropy of softmax(logits) against target distributions (n, c) float64."""
    if logits.size == 0:
        return
    launch(_xent_serial, _xent_parallel, n_threads, logits, _NO_CODES, targets, scale, grad, row_loss)


def squared_error(y_pred, y_true, period, scale, grad, row_loss, n_threads):
    """Squared error against y_true (n, m) float64, the short way round a circle when period > 0."""
    launch(_squared_serial, _squared_parallel, n_threads, y_pred, y_true, period, scale, grad, row_loss)


def absolute_error(y_pred, y_true, period, delta, scale, grad, row_loss, n_threads):
    """Huber loss (delta > 0) or absolute error (delta == 0) against y_true (n, m) float64, the short
    way round a circle when period > 0 (see kernels/npy/loss.py)."""
    launch(_absolute_serial, _absolute_parallel, n_threads, y_pred, y_true, period, delta, scale, grad, row_loss)


def binary_xent_logits(logits, y_true, scale, grad, row_loss, n_threads):
    """Binary cross-entropy of sigmoid(logits) against y_true (n, m) float64 in [0, 1]."""
    launch(_binary_serial, _binary_parallel, n_threads, logits, y_true, scale, grad, row_loss)


def binary_xent(probs, y_true, low, high, scale, grad, row_loss, n_threads):
    """Binary cross-entropy of probabilities, clipped to [low, high], against y_true (n, m) float64
    in [0, 1]; no gradient where the clip is active (see kernels/npy/loss.py)."""
    launch(_probs_serial, _probs_parallel, n_threads, probs, y_true, low, high, scale, grad, row_loss)


def dropout(x, draws, rate, kept_scale, out, mask, n_threads):
    """mask = kept_scale where draws (n, m) float64 >= rate, else 0; out = x * mask (out may be x)."""
    launch(_dropout_serial, _dropout_parallel, n_threads, x, draws, rate, kept_scale, out, mask)
