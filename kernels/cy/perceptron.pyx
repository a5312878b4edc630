"""Multi-class perceptron kernels (Cython): a fused batch epoch and a fused online epoch.

Mirrors kernels/cpu/perceptron.py and kernels/npy/perceptron.py. X1 (n, d + 1) holds the samples
with a trailing column of ones, W (d + 1, c) the weights with the bias as its last row, codes (n,)
int64 the class of each sample, lr a scalar of W's dtype. rule 0 is the course's sigmoid rule
(delta = onehot - sigmoid(scores)), rule 1 the classic perceptron (update on mistakes only).
"""

import numpy as np

from cython cimport floating
from libc.math cimport copysign, exp, fabs
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free, malloc

include "vecmath.pxi"

cdef enum:
    RULE_SIGMOID = 0
    RULE_CLASSIC = 1
    LANES = 16  # classes padded to this width in the classic rule's online epoch


cdef inline double _sigmoid(double z) noexcept nogil:
    """1 / (1 + exp(-z)) through exp(-|z|), which never overflows (libm's exp and a branch, for
    one value at a time: see kernels/cpu/perceptron._sigmoid)."""
    cdef double e
    if z >= 0.0:
        return 1.0 / (1.0 + exp(-z))
    e = exp(z)
    return e / (1.0 + e)


cdef inline double _sigmoid_vectorised(double z) noexcept nogil:
    """_sigmoid through vecmath.pxi's exp and a select, which vectorise (as
    kernels/cpu/perceptron._sigmoid_vectorised)."""
    cdef double e = vexp(-fabs(z))
    return (1.0 if z >= 0.0 else e) / (1.0 + e)


cdef inline Py_ssize_t _argmax(const floating* row, Py_ssize_t n_classes) noexcept nogil:
    """Index of the first maximum of row."""
    cdef Py_ssize_t c, best = 0
    for c in range(1, n_classes):
        if row[c] > row[best]:
            best = c
    return best


cdef Py_ssize_t _delta_rows(floating[:, ::1] scores, const int64_t[::1] codes, int rule, floating[::1] kept) noexcept nogil:
    """Overwrite scores (n, c) with each row's update direction; returns the correct argmax count
    (the sigmoid rule as kernels/cpu/perceptron._delta_rows: one pass of -sigmoid over all the
    scores, then each row's class entry from its score kept before it, in kept (n,); a code
    outside 0..c-1 marks no entry)."""
    cdef Py_ssize_t n = scores.shape[0], n_classes = scores.shape[1]
    cdef Py_ssize_t i, c, k, predicted, y, n_correct = 0
    cdef bint inside
    cdef floating* row
    cdef floating* values
    for i in range(n):
        row = &scores[i, 0]
        y = codes[i]
        inside = 0 <= y < n_classes
        predicted = _argmax(row, n_classes)
        if predicted == y:
            n_correct += 1
        if rule == RULE_SIGMOID:
            if inside:
                kept[i] = row[y]
        else:
            for c in range(n_classes):
                row[c] = 0
            if predicted != y and inside:
                row[y] = 1
                row[predicted] = -1
    if rule == RULE_SIGMOID and n > 0:
        values = &scores[0, 0]
        for k in range(n * n_classes):
            values[k] = -_sigmoid_vectorised(values[k])
        for i in range(n):
            y = codes[i]
            if 0 <= y < n_classes:
                scores[i, y] = 1.0 - _sigmoid_vectorised(kept[i])
    return n_correct


def batch_epoch(
    const floating[:, ::1] X1, const int64_t[::1] codes, floating lr, int rule, floating[:, ::1] W,
    floating[:, ::1] scores, floating[:, ::1] grad, int n_threads,
):
    """One full-batch update W += lr * X1.T @ delta(X1 @ W); returns the correct count before it.

    scores (n, c) and grad (d + 1, c) are scratch in W's dtype. The GEMMs run in numpy's BLAS
    (threaded by BLAS itself); the sigmoid, the argmax and the update are fused around them.
    """
    cdef Py_ssize_t n_correct, f, c
    cdef Py_ssize_t n_features = W.shape[0], n_classes = W.shape[1]
    cdef floating[::1] kept = np.empty(scores.shape[0] if rule == RULE_SIGMOID else 0, np.asarray(scores).dtype)
    X1_array = np.asarray(X1)
    np.dot(X1_array, np.asarray(W), out=np.asarray(scores))
    with nogil:
        n_correct = _delta_rows(scores, codes, rule, kept)
    np.dot(X1_array.T, np.asarray(scores), out=np.asarray(grad))
    with nogil:
        for f in range(n_features):
            for c in range(n_classes):
                W[f, c] += lr * grad[f, c]
    return n_correct


cdef Py_ssize_t _online_classic_padded(
    const floating* X1, Py_ssize_t n, Py_ssize_t n_features, const int64_t* codes, floating lr,
    floating* Wp, Py_ssize_t n_classes,
) noexcept nogil:
    """The classic rule's online epoch on weights Wp (n_features, LANES) padded with zero columns.

    A fixed width lets the compiler keep each sample's scores in vector registers; four partial
    sums over the features (combined as (s0 + s1) + (s2 + s3), as in _partial_sums_dot and the
    Numba kernel) keep the additions from waiting on each other.
    """
    cdef floating s0[LANES]
    cdef floating s1[LANES]
    cdef floating s2[LANES]
    cdef floating s3[LANES]
    cdef const floating* x
    cdef floating change
    cdef Py_ssize_t i, f, c, y, predicted, n_correct = 0
    cdef Py_ssize_t n_quads = n_features - n_features % 4
    for i in range(n):
        x = X1 + i * n_features
        y = codes[i]
        for c in range(LANES):
            s0[c] = 0
            s1[c] = 0
            s2[c] = 0
            s3[c] = 0
        f = 0
        while f < n_quads:
            for c in range(LANES):
                s0[c] += x[f] * Wp[f * LANES + c]
                s1[c] += x[f + 1] * Wp[(f + 1) * LANES + c]
                s2[c] += x[f + 2] * Wp[(f + 2) * LANES + c]
                s3[c] += x[f + 3] * Wp[(f + 3) * LANES + c]
            f += 4
        while f < n_features:
            for c in range(LANES):
                s0[c] += x[f] * Wp[f * LANES + c]
            f += 1
        for c in range(LANES):
            s0[c] = (s0[c] + s1[c]) + (s2[c] + s3[c])
        predicted = _argmax(s0, n_classes)
        if predicted == y:
            n_correct += 1
            continue
        for f in range(n_features):
            change = x[f] * lr
            Wp[f * LANES + y] += change
            Wp[f * LANES + predicted] -= change
    return n_correct


def online_epoch(
    const floating[:, ::1] X1, const int64_t[::1] codes, floating lr, int rule, floating[:, ::1] W,
    floating[::1] work, int n_threads,
):
    """Per-sample updates in dataset order; returns how many samples were right before their update.

    work (c,) is scratch in W's dtype. The loop is sequential by nature, so n_threads is unused.
    The classic rule mostly only scores samples, and runs on a padded copy of W whose scores stay
    in vector registers. The sigmoid rule rewrites every weight for every sample, so it scores the
    next sample in the same pass over W as it updates it (padding would only add memory traffic).
    All add in the same order.
    """
    cdef Py_ssize_t n = X1.shape[0], n_features = X1.shape[1], n_classes = W.shape[1]
    cdef Py_ssize_t f, c, n_correct
    cdef floating* Wp
    if n == 0:
        return 0
    if rule == RULE_SIGMOID:
        with nogil:
            n_correct = _online_sigmoid(&X1[0, 0], n, n_features, &codes[0], lr, &W[0, 0], n_classes, &work[0])
        if n_correct < 0:
            raise MemoryError("online_epoch: no memory for the transposed weights")
        return n_correct
    if n_classes > LANES:
        return _online_classic(X1, codes, lr, W, work)
    Wp = <floating*> calloc(n_features * LANES, sizeof(floating))
    if Wp == NULL:
        raise MemoryError("online_epoch: no memory for the padded weights")
    with nogil:
        for f in range(n_features):
            for c in range(n_classes):
                Wp[f * LANES + c] = W[f, c]
        n_correct = _online_classic_padded(&X1[0, 0], n, n_features, &codes[0], lr, Wp, n_classes)
        for f in range(n_features):
            for c in range(n_classes):
                W[f, c] = Wp[f * LANES + c]
    free(Wp)
    return n_correct


cdef Py_ssize_t _online_classic(
    const floating[:, ::1] X1, const int64_t[::1] codes, floating lr, floating[:, ::1] W,
    floating[::1] work,
):
    """The classic rule's online epoch on W as it is, for any number of classes."""
    cdef Py_ssize_t n = X1.shape[0], n_features = X1.shape[1], n_classes = W.shape[1]
    cdef Py_ssize_t i, f, c, y, predicted, n_correct = 0
    cdef floating change
    cdef floating* acc = &work[0]
    with nogil:
        for i in range(n):
            y = codes[i]
            for c in range(n_classes):
                acc[c] = _partial_sums_dot(&X1[i, 0], &W[0, c], n_features, n_classes)
            predicted = _argmax(acc, n_classes)
            if predicted == y:
                n_correct += 1
                continue
            for f in range(n_features):
                change = X1[i, f] * lr
                W[f, y] += change
                W[f, predicted] -= change
    return n_correct


cdef inline floating _partial_sums_dot(
    const floating* x, const floating* w_column, Py_ssize_t n_features, Py_ssize_t stride,
) noexcept nogil:
    """sum_f x[f] * w_column[f * stride] as four partial sums, combined (s0 + s1) + (s2 + s3)."""
    cdef floating s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t f = 0, n_quads = n_features - n_features % 4
    while f < n_quads:
        s0 += x[f] * w_column[f * stride]
        s1 += x[f + 1] * w_column[(f + 1) * stride]
        s2 += x[f + 2] * w_column[(f + 2) * stride]
        s3 += x[f + 3] * w_column[(f + 3) * stride]
        f += 4
    while f < n_features:
        s0 += x[f] * w_column[f * stride]
        f += 1
    return (s0 + s1) + (s2 + s3)


cdef Py_ssize_t _online_sigmoid(
    const floating* X1, Py_ssize_t n, Py_ssize_t n_features, const int64_t* codes, floating lr,
    floating* W, Py_ssize_t n_classes, floating* scores,
) noexcept nogil:
    """The sigmoid rule's online epoch on W (n_features, n_classes); scores (n_classes,) is scratch.

    Works on a transposed copy of W, one contiguous row per class, so that a class's update and
    its score for the next sample are one vectorised pass (_step_and_score). Returns the correct
    count, or -1 when there is no memory for the copy.
    """
    cdef floating* Wt = <floating*> malloc(n_classes * n_features * sizeof(floating))
    cdef const floating* x
    cdef const floating* x_next
    cdef floating step
    cdef Py_ssize_t i, f, c, y, n_correct = 0
    if Wt == NULL:
        return -1
    for f in range(n_features):
        for c in range(n_classes):
            Wt[c * n_features + f] = W[f * n_classes + c]
    for c in range(n_classes):
        scores[c] = _step_and_score(Wt + c * n_features, 0, X1, X1, n_features)
    for i in range(n):
        x = X1 + i * n_features
        # The next sample's features; after the last sample the scores are computed and unused.
        x_next = X1 + (i + 1 if i + 1 < n else i) * n_features
        y = codes[i]
        if _argmax(scores, n_classes) == y:
            n_correct += 1
        for c in range(n_classes):
            step = (1.0 if c == y else 0.0) - _sigmoid(scores[c])
            step *= lr
            scores[c] = _step_and_score(Wt + c * n_features, step, x, x_next, n_features)
    for f in range(n_features):
        for c in range(n_classes):
            W[f * n_classes + c] = Wt[c * n_features + f]
    free(Wt)
    return n_correct


cdef inline floating _step_and_score(
    floating* w, floating step, const floating* x, const floating* x_next, Py_ssize_t n_features,
) noexcept nogil:
    """w += x * step, then returns sum_f x_next[f] * w[f], in one pass.

    The order of the sum (as the Numba kernel), which vectorises with independent accumulators:
    feature f < full adds into lane f % 32, the lanes are folded in halves (lane[t] +=
    lane[t + half] for half = 16, 8, 4, 2, 1), and the features past full (a multiple of 32) are
    added to lane[0] one by one. The 32 lanes are four arrays of eight (lanes 0-7, 8-15, 16-23,
    24-31), one short loop each, which gcc keeps in vector registers; one array of 32 it does not.
    """
    cdef floating lanes0[8]
    cdef floating lanes1[8]
    cdef floating lanes2[8]
    cdef floating lanes3[8]
    cdef floating updated, total
    cdef Py_ssize_t f, t, full = n_features - n_features % 32
    for t in range(8):
        lanes0[t] = 0
        lanes1[t] = 0
        lanes2[t] = 0
        lanes3[t] = 0
    for f in range(0, full, 32):
        for t in range(8):
            updated = w[f + t] + x[f + t] * step
            w[f + t] = updated
            lanes0[t] += x_next[f + t] * updated
        for t in range(8):
            updated = w[f + 8 + t] + x[f + 8 + t] * step
            w[f + 8 + t] = updated
            lanes1[t] += x_next[f + 8 + t] * updated
        for t in range(8):
            updated = w[f + 16 + t] + x[f + 16 + t] * step
            w[f + 16 + t] = updated
            lanes2[t] += x_next[f + 16 + t] * updated
        for t in range(8):
            updated = w[f + 24 + t] + x[f + 24 + t] * step
            w[f + 24 + t] = updated
            lanes3[t] += x_next[f + 24 + t] * updated
    for t in range(8):  # half 16
        lanes0[t] += lanes2[t]
        lanes1[t] += lanes3[t]
    for t in range(8):  # half 8
        lanes0[t] += lanes1[t]
    for t in range(4):
        lanes0[t] += lanes0[t + 4]
    for t in range(2):
        lanes0[t] += lanes0[t + 2]
    total = lanes0[0] + lanes0[1]
    for f in range(full, n_features):
        w[f] += x[f] * step
        total += x_next[f] * w[f]
    return total
