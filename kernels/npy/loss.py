"""Output-layer kernels (numpy reference): softmax, losses with their gradients, dropout.

Mirrors kernels/cpu/loss.py and kernels/cy/loss.pyx. Arrays are 2-D and C-contiguous, one row per
sample; values and gradients are of one float dtype, targets float64. Every loss is worked out in
float64: the kernels write each row's loss into row_loss (n,) float64, which the caller sums, so
the total does not depend on the thread count; gradients are scaled by `scale` (float64, 1 / n or
1 / size, as the caller averages) and rounded once to their dtype.
"""

import numpy as np


def _softmax64(z):
    """Rows' softmax in float64, shifted by the row maximum so exp never overflows; and the shift
    plus log of the sum (the rows' log-sum-exp)."""
    z = z.astype(np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    return e / total, z.max(axis=1) + np.log(total[:, 0])


def softmax(z, out, n_threads):
    """out (n, c) = softmax of each row of z (out may be z)."""
    if z.size == 0:
        return
    out[...] = _softmax64(z)[0]


def softmax_backward(out, dout, dpre, n_threads):
    """dpre (n, c) = out * (dout - sum(dout * out)) row by row, from softmax's output `out`."""
    out64, dout64 = out.astype(np.float64), dout.astype(np.float64)
    dpre[...] = out64 * (dout64 - (dout64 * out64).sum(axis=1, keepdims=True))


def softmax_xent_codes(logits, codes, scale, grad, row_loss, n_threads):
    """Cross-entropy of softmax(logits) against class codes (n,) int64.

    row_loss = log-sum-exp(row) - row[code]; grad = (softmax(row) - onehot(code)) * scale.
    """
    if logits.size == 0:
        return
    probs, lse = _softmax64(logits)
    rows = np.arange(logits.shape[0])
    row_loss[...] = lse - logits[rows, codes].astype(np.float64)
    probs[rows, codes] -= 1.0
    grad[...] = probs * scale


def softmax_xent_targets(logits, targets, scale, grad, row_loss, n_threads):
    """Cross-entropy of softmax(logits) against target distributions (n, c) float64.

    row_loss = sum(t) * log-sum-exp(row) - sum(t * row); grad = (softmax(row) * sum(t) - t) * scale.
    """
    if logits.size == 0:
        return
    probs, lse = _softmax64(logits)
    mass = targets.sum(axis=1)
    row_loss[...] = mass * lse - (targets * logits.astype(np.float64)).sum(axis=1)
    grad[...] = (probs * mass[:, None] - targets) * scale


def squared_error(y_pred, y_true, period, scale, grad, row_loss, n_threads):
    """Squared error against targets y_true (n, m) float64.

    The error is y_pred - y_true, or with period > 0 the signed way round a circle of that
    circumference, ((e + period / 2) mod period) - period / 2. row_loss = sum of squared errors;
    grad = 2 * error * scale.
    """
    error = y_pred.astype(np.float64) - y_true
    if period > 0:
        # fmod first (exact), so error + period / 2 cannot round for huge errors (1e20 + 6 == 1e20)
        error = np.mod(np.fmod(error, period) + period / 2, period) - period / 2
    row_loss[...] = (error * error).sum(axis=1)
    grad[...] = 2.0 * error * scale


def absolute_error(y_pred, y_true, period, delta, scale, grad, row_loss, n_threads):
    """Huber loss (delta > 0) or absolute error (delta == 0) against targets y_true (n, m) float64,
    the error wrapped round a circle when period > 0 as in squared_error.

    With part = min(|e|, delta), the part of |e| under the square, a value's loss is Huber's
    part (|e| - part / 2) (Keras': 0.5 e^2 where |e| <= delta, else delta (|e| - 0.5 delta)), or
    |e| for the absolute error (part 0, weight 1); row_loss sums a row's values. grad = sign(e) *
    part * scale where |e| <= delta (for the absolute error only e == 0: TF's sign(0) = 0), else
    sign(e) * slope * scale, slope = delta (1 for the absolute error). A NaN error has part NaN,
    so it stays NaN in both.
    """
    error = y_pred.astype(np.float64) - y_true
    if period > 0:
        error = np.mod(np.fmod(error, period) + period / 2, period) - period / 2
    slope = delta if delta > 0 else 1.0
    size = np.abs(error)
    linear = size > delta
    part = np.where(linear, delta, size)
    weight = part if delta > 0 else 1.0
    row_loss[...] = (weight * (size - 0.5 * part)).sum(axis=1)
    grad[...] = np.copysign(np.where(linear, slope, part), error) * scale


def binary_xent_logits(logits, y_true, scale, grad, row_loss, n_threads):
    """Binary cross-entropy of sigmoid(logits) against targets y_true (n, m) float64 in [0, 1].

    Per value softplus(z) - y z = max(z, 0) - y z + log1p(exp(-|z|)) (exp of a non-positive number
    only); row_loss sums a row's values; grad = (sigmoid(z) - y) * scale.
    """
    z = logits.astype(np.float64)
    e = np.exp(-np.abs(z))
    row_loss[...] = (np.maximum(z, 0.0) - z * y_true + np.log1p(e)).sum(axis=1)
    sigmoid = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    grad[...] = (sigmoid - y_true) * scale


def binary_xent(probs, y_true, low, high, scale, grad, row_loss, n_threads):
    """Binary cross-entropy of probabilities (a sigmoid's outputs) against y_true (n, m) float64 in
    [0, 1], as Keras: p = probs clipped to [low, high] (float64 bounds: Keras' 1e-7 and 1 - 1e-7 as
    worked out in the probabilities' dtype, which the caller passes); per value -(y log p + (1 - y)
    log(1 - p)), summed into row_loss; grad = (p - y) / (p (1 - p)) * scale where the clip is
    inactive, 0 where it is (probs < low or > high: the clipped loss is flat there, and Keras'
    clip passes no gradient). NaN stays NaN.
    """
    probs = probs.astype(np.float64)
    p = np.clip(probs, low, high)
    row_loss[...] = -(y_true * np.log(p) + (1.0 - y_true) * np.log1p(-p)).sum(axis=1)
    clipped = (probs < low) | (probs > high)
    grad[...] = np.where(clipped, 0.0, (p - y_true) / (p * (1.0 - p))) * scale


def dropout(x, draws, rate, kept_scale, out, mask, n_threads):
    """Dropout with given uniform draws (n, m) float64: a value is kept where its draw >= rate.

    mask = kept_scale (1 / (1 - rate), of x's dtype) where kept, else 0; out = x * mask (out may be x).
    """
    mask[...] = np.where(draws >= rate, kept_scale, x.dtype.type(0))
    np.multiply(x, mask, out=out)
