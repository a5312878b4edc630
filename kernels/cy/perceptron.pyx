"""Multi-class perceptron kernels (Cython): a fused batch epoch and a fused online epoch.

Mirrors kernels/cpu/perceptron.py and kernels/npy/perceptron.py. X1 (n, d + 1) holds the samples
with a trailing column of ones, W (d + 1, c) the weights with the bias as its last row, codes (n,)
int64 the class of each sample, lr a scalar of W's dtype. rule 0 is the course's sigmoid rule
(delta = onehot - sigmoid(scores)), rule 1 the classic perceptron (update on mistakes only).
"""

import numpy as np

from cython cimport floating
from libc.math cimport exp
from libc.stdint cimport int64_t

cdef enum:
    RULE_SIGMOID = 0
    RULE_CLASSIC = 1


cdef inline double _sigmoid(double z) noexcept nogil:
    """1 / (1 + exp(-z)) through exp(-|z|), which never overflows."""
    cdef double e
    if z >= 0.0:
        return 1.0 / (1.0 + exp(-z))
    e = exp(z)
    return e / (1.0 + e)


cdef inline Py_ssize_t _argmax(const floating* row, Py_ssize_t n_classes) noexcept nogil:
    """Index of the first maximum of row."""
    cdef Py_ssize_t c, best = 0
    for c in range(1, n_classes):
        if row[c] > row[best]:
            best = c
    return best


cdef Py_ssize_t _delta_rows(floating[:, ::1] scores, const int64_t[::1] codes, int rule) noexcept nogil:
    """Overwrite scores (n, c) with each row's update direction; returns the correct argmax count."""
    cdef Py_ssize_t n = scores.shape[0], n_classes = scores.shape[1]
    cdef Py_ssize_t i, c, predicted, y, n_correct = 0
    cdef floating* row
    for i in range(n):
        row = &scores[i, 0]
        y = codes[i]
        predicted = _argmax(row, n_classes)
        if predicted == y:
            n_correct += 1
        if rule == RULE_SIGMOID:
            for c in range(n_classes):
                row[c] = (1.0 if c == y else 0.0) - _sigmoid(row[c])
        else:
            for c in range(n_classes):
                row[c] = 0
            if predicted != y:
                row[y] = 1
                row[predicted] = -1
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
    X1_array = np.asarray(X1)
    np.dot(X1_array, np.asarray(W), out=np.asarray(scores))
    with nogil:
        n_correct = _delta_rows(scores, codes, rule)
    np.dot(X1_array.T, np.asarray(scores), out=np.asarray(grad))
    with nogil:
        for f in range(n_features):
            for c in range(n_classes):
                W[f, c] += lr * grad[f, c]
    return n_correct


def online_epoch(
    const floating[:, ::1] X1, const int64_t[::1] codes, floating lr, int rule, floating[:, ::1] W,
    floating[::1] work, int n_threads,
):
    """Per-sample updates in dataset order; returns how many samples were right before their update.

    work (c,) is scratch in W's dtype. The loop is sequential by nature, so n_threads is unused.
    """
    cdef Py_ssize_t n = X1.shape[0], n_features = X1.shape[1], n_classes = W.shape[1]
    cdef Py_ssize_t i, f, c, y, predicted, n_correct = 0
    cdef floating xf, change
    cdef floating* w_row
    cdef floating* acc = &work[0]
    with nogil:
        for i in range(n):
            y = codes[i]
            for c in range(n_classes):
                acc[c] = 0
            for f in range(n_features):
                xf = X1[i, f]
                w_row = &W[f, 0]
                for c in range(n_classes):
                    acc[c] += xf * w_row[c]
            predicted = _argmax(acc, n_classes)
            if predicted == y:
                n_correct += 1
                if rule != RULE_SIGMOID:
                    continue
            if rule == RULE_SIGMOID:
                for c in range(n_classes):
                    acc[c] = (1.0 if c == y else 0.0) - _sigmoid(acc[c])
                    acc[c] *= lr
                for f in range(n_features):
                    xf = X1[i, f]
                    w_row = &W[f, 0]
                    for c in range(n_classes):
                        w_row[c] += xf * acc[c]
            else:
                for f in range(n_features):
                    change = X1[i, f] * lr
                    W[f, y] += change
                    W[f, predicted] -= change
    return n_correct
