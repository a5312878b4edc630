"""Multi-class perceptron kernels (Numba): a fused batch epoch and a fused online epoch.

Mirrors kernels/cy/perceptron.pyx and kernels/npy/perceptron.py. X1 (n, d + 1) holds the samples
with a trailing column of ones, W (d + 1, c) the weights with the bias as its last row, codes (n,)
int64 the class of each sample, lr a scalar of W's dtype. rule 0 is the course's sigmoid rule (delta = onehot -
sigmoid(scores)), rule 1 the classic perceptron (update on mistakes only).
"""

import math

import numpy as np

from . import vecmath
from ._jit import compile_kernel, helper

RULE_SIGMOID = 0
RULE_CLASSIC = 1

_helper = helper()
_vector_helper = helper(cache=False, error_model="numpy")  # calls vecmath's helpers (see helper); divides without a check
_USES = (vecmath,)


@_helper
def _sigmoid(z):
    """1 / (1 + exp(-z)) in float64 through exp(-|z|), which never overflows (libm's exp and a
    branch: one value at a time, as the online epoch takes them, faster than vecmath's)."""
    z = np.float64(z)
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@_vector_helper
def _sigmoid_vectorised(z):
    """_sigmoid through vecmath's exp and a select, not libm's exp and a branch, so that a loop of
    it vectorises (the batch epoch's sigmoid pass took 120-165 us for the course's 1707 x 10
    scores, now 60 with its argmax loop; numpy's exp 11). Within a few ulps of _sigmoid, not its bits."""
    z = np.float64(z)
    e = vecmath.exp(-abs(z))
    return (1.0 if z >= 0.0 else e) / (1.0 + e)


@_helper
def _argmax(row):
    """Index of the first maximum of row."""
    best = 0
    for c in range(1, row.shape[0]):
        if row[c] > row[best]:
            best = c
    return best


@_vector_helper
def _delta_rows(scores, codes, rule):
    """Overwrite scores (n, c) with each row's update direction; returns the correct argmax count.

    The sigmoid rule's onehot - sigmoid(scores) is one pass of -sigmoid over all the scores (which
    vectorises), then each row's class entry, 1 - sigmoid of its score kept before the pass (one
    rounding to scores' dtype, as target - sigmoid was). A code outside 0..c-1 (which the
    estimator never passes) marks no entry: no row is written out of its bounds."""
    n, n_classes = scores.shape
    n_correct = 0
    kept = np.empty(n if rule == RULE_SIGMOID else 0, scores.dtype)
    for i in range(n):
        row = scores[i]
        y = codes[i]
        inside = 0 <= y < n_classes
        predicted = _argmax(row)
        if predicted == y:
            n_correct += 1
        if rule == RULE_SIGMOID:
            if inside:
                kept[i] = row[y]
        else:
            row[:] = 0
            if predicted != y and inside:
                row[y] = 1
                row[predicted] = -1
    if rule == RULE_SIGMOID:
        values = scores.reshape(n * n_classes)
        for k in range(values.shape[0]):
            values[k] = -_sigmoid_vectorised(values[k])
        for i in range(n):
            y = codes[i]
            if 0 <= y < n_classes:
                scores[i, y] = 1.0 - _sigmoid_vectorised(kept[i])
    return n_correct


def _batch_epoch(X1, codes, lr, rule, W, scores, grad):
    np.dot(X1, W, scores)  # BLAS
    n_correct = _delta_rows(scores, codes, rule)
    np.dot(X1.T, scores, grad)  # BLAS
    for f in range(W.shape[0]):
        for c in range(W.shape[1]):
            W[f, c] += lr * grad[f, c]
    return n_correct


_batch = compile_kernel(_batch_epoch, exact=True, uses=_USES)


def batch_epoch(X1, codes, lr, rule, W, scores, grad, n_threads):
    """One full-batch update W += lr * X1.T @ delta(X1 @ W); returns the correct count before it.

    scores (n, c) and grad (d + 1, c) are scratch in W's dtype. The GEMMs run in BLAS (threaded
    by BLAS itself); the sigmoid, the argmax and the update are fused around them.
    """
    return _batch(X1, codes, lr, rule, W, scores, grad)


def _online_classic(X1, codes, lr, W, scores):
    n, n_features = X1.shape
    n_classes = W.shape[1]
    # A transposed copy of W, one contiguous row per class: a class's score is a dot product along
    # a row, and a mistake's update two passes along rows, all of which vectorise.
    Wt = np.ascontiguousarray(W.T)
    n_correct = 0
    for i in range(n):
        x = X1[i]
        y = codes[i]
        for c in range(n_classes):
            scores[c] = _quad_dot(x, Wt[c])
        predicted = _argmax(scores)
        if predicted == y:
            n_correct += 1
            continue
        for f in range(n_features):
            change = x[f] * lr
            Wt[y, f] += change
            Wt[predicted, f] -= change
    W[:] = Wt.T
    return n_correct


@_helper
def _quad_dot(x, w):
    """sum_f x[f] * w[f] as four partial sums (feature f < a multiple of four into sum f % 4, the
    rest into the first), combined as (s0 + s1) + (s2 + s3): the order of the Cython kernel, whose
    fixed-width registers need independent chains."""
    n_features = x.shape[0]
    n_quads = n_features - n_features % 4
    s0 = s1 = s2 = s3 = x.dtype.type(0)
    for f in range(0, n_quads, 4):
        s0 += x[f] * w[f]
        s1 += x[f + 1] * w[f + 1]
        s2 += x[f + 2] * w[f + 2]
        s3 += x[f + 3] * w[f + 3]
    for f in range(n_quads, n_features):
        s0 += x[f] * w[f]
    return (s0 + s1) + (s2 + s3)


@_helper
def _step_and_score(w, step, x, x_next, lane):
    """w += x * step, then returns sum_f x_next[f] * w[f], in one pass; lane (32,) is scratch.

    The order of the sum (as the Cython kernel), which vectorises with independent accumulators:
    feature f < full adds into lane f % 32, the lanes are folded in halves (lane[t] +=
    lane[t + half] for half = 16, 8, 4, 2, 1), and the features past full (a multiple of 32) are
    added to lane[0] one by one.
    """
    n_features = w.shape[0]
    full = n_features - n_features % 32
    lane[:] = 0
    for f in range(0, full, 32):
        for t in range(32):
            w[f + t] += x[f + t] * step
            lane[t] += x_next[f + t] * w[f + t]
    half = 16
    while half > 0:
        for t in range(half):
            lane[t] += lane[t + half]
        half //= 2
    total = lane[0]
    for f in range(full, n_features):
        w[f] += x[f] * step
        total += x_next[f] * w[f]
    return total


def _online_sigmoid(X1, codes, lr, W, scores):
    n, n_features = X1.shape
    n_classes = W.shape[1]
    # A transposed copy of W, one contiguous row per class, so that a class's update and its
    # score for the next sample are one vectorised pass.
    Wt = np.ascontiguousarray(W.T)
    lane = np.empty(32, W.dtype)
    zero = W.dtype.type(0)
    for c in range(n_classes):
        scores[c] = _step_and_score(Wt[c], zero, X1[0], X1[0], lane)
    n_correct = 0
    for i in range(n):
        # The next sample's features; after the last sample the scores are computed and unused.
        i_next = i + 1 if i + 1 < n else i
        y = codes[i]
        if _argmax(scores) == y:
            n_correct += 1
        for c in range(n_classes):
            target = 1.0 if c == y else 0.0
            step = W.dtype.type(target - _sigmoid(scores[c]))
            step *= lr
            scores[c] = _step_and_score(Wt[c], step, X1[i], X1[i_next], lane)
    W[:] = Wt.T
    return n_correct


_online = compile_kernel(_online_classic)
_online_sig = compile_kernel(_online_sigmoid)


def online_epoch(X1, codes, lr, rule, W, work, n_threads):
    """Per-sample updates in dataset order; returns how many samples were right before their update.

    work (c,) is scratch in W's dtype. The loop is sequential by nature, so n_threads is unused.
    The sigmoid rule rewrites every weight for every sample, so it scores the next sample in the
    same pass over the weights as it updates them.
    """
    if X1.shape[0] == 0:
        return 0
    if rule == RULE_SIGMOID:
        return _online_sig(X1, codes, lr, W, work)
    return _online(X1, codes, lr, W, work)
