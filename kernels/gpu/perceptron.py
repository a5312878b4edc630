"""Multi-class perceptron kernels (numba.cuda); mirrors kernels/cpu/perceptron.py.

X1 (n, d + 1) holds the samples with a trailing column of ones, W (d + 1, c) the weights with the
bias as its last row, codes (n,) int64 the class of each sample, lr a scalar of W's dtype; all
arrays are device arrays. rule 0 is the course's sigmoid rule (delta = onehot - sigmoid(scores)),
rule 1 the classic perceptron (update on mistakes only).

The batch epoch is two GEMMs (kernels/gpu/_gemm.py: cuBLAS through CuPy, else a tiled kernel)
with one thread per sample between them (argmax, count, delta) and one thread per weight after
them (the update).

The online epoch is sequential by nature: sample i + 1 is scored with the weights sample i left.
It runs as one block. Thread t owns the weight rows f = t, t + T, ... (T threads): for each sample
it sums x[f] * W[f, c] over its rows into shared memory, a tree over the threads folds the partial
sums into the sample's c scores, thread 0 takes the argmax and writes the c steps, and after a
barrier every thread updates its own rows. A thread reads and writes only the rows it owns, so the
next sample needs no barrier between the update and the next partial sums; the barriers inside the
fold keep thread 0 from overwriting the steps while others still read them. The fold works in
float64 (one compiled kernel for both dtypes) and CHUNK classes at a time.
"""

import math

import numpy as np
from numba import cuda, float64, int64

from ._gemm import gemm
from ._launch import grid_1d, kernel

RULE_SIGMOID = 0
RULE_CLASSIC = 1
_COUNT_ONLY = -1  # count the correct rows, leave the scores as they are

ONLINE_THREADS = 128  # the most threads of the online epoch's single block (a power of two)
CHUNK = 16  # classes folded per pass of the online epoch (shared memory ONLINE_THREADS x CHUNK)


@cuda.jit(device=True)
def _sigmoid(z):
    """1 / (1 + exp(-z)) in float64 through exp(-|z|), which never overflows."""
    z = float64(z)
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@cuda.jit(device=True)
def _argmax(values):
    """Index of the first maximum of a 1-D array."""
    best = 0
    for c in range(1, values.shape[0]):
        if values[c] > values[best]:
            best = c
    return best


@kernel
def _delta_rows(scores, codes, rule, n_correct):
    i = cuda.grid(1)
    if i >= scores.shape[0]:
        return
    row = scores[i]
    y = codes[i]
    predicted = _argmax(row)
    if predicted == y:
        cuda.atomic.add(n_correct, 0, 1)
    if rule == RULE_SIGMOID:
        for c in range(row.shape[0]):
            target = 1.0 if c == y else 0.0
            row[c] = target - _sigmoid(row[c])
    elif rule == RULE_CLASSIC:
        for c in range(row.shape[0]):
            row[c] = 0
        if predicted != y:
            row[y] = 1
            row[predicted] = -1


@kernel
def _add_scaled(W, lr, grad):
    index = cuda.grid(1)
    if index < W.size:
        f, c = index // W.shape[1], index % W.shape[1]
        W[f, c] += lr * grad[f, c]


def _counter():
    """A device int64 counter set to zero."""
    return cuda.to_device(np.zeros(1, dtype=np.int64))


def _count_and_delta(scores, codes, rule):
    counter = _counter()
    _delta_rows[grid_1d(scores.shape[0])](scores, codes, rule, counter)
    return int(counter.copy_to_host()[0])


def batch_epoch(X1, codes, lr, rule, W, scores, grad, n_threads):
    """One full-batch update W += lr * X1.T @ delta(X1 @ W); returns the correct count before it.

    scores (n, c) and grad (d + 1, c) are device scratch in W's dtype; n_threads is unused.
    """
    if X1.shape[0] == 0:
        return 0
    gemm(X1, W, scores)
    n_correct = _count_and_delta(scores, codes, rule)
    gemm(X1, scores, grad, transpose_a=True)
    _add_scaled[grid_1d(W.size)](W, lr, grad)
    return n_correct


def count_correct(X1, codes, W, scores, n_threads):
    """How many rows of X1 @ W (written to the device scratch scores (n, c)) have their first
    maximum at their class: the accuracy the estimator tracks, kept on the device (the CPU
    backends compute it with NumPy)."""
    if X1.shape[0] == 0:
        return 0
    gemm(X1, W, scores)
    return _count_and_delta(scores, codes, _COUNT_ONLY)


@kernel
def _online_epoch(X1, codes, lr, rule, W, work, n_correct):
    partial = cuda.shared.array((ONLINE_THREADS, CHUNK), float64)
    decision = cuda.shared.array(2, int64)  # the sample's class and the predicted class
    t = cuda.threadIdx.x
    n_threads = cuda.blockDim.x
    n_features = X1.shape[1]
    n_classes = W.shape[1]
    correct = 0
    for i in range(X1.shape[0]):
        # The scores of sample i into work, CHUNK classes at a time.
        for start in range(0, n_classes, CHUNK):
            width = n_classes - start
            if width > CHUNK:
                width = CHUNK
            for k in range(width):
                total = 0.0
                for f in range(t, n_features, n_threads):
                    total += X1[i, f] * W[f, start + k]
                partial[t, k] = total
            cuda.syncthreads()
            half = n_threads // 2
            while half > 0:
                if t < half:
                    for k in range(width):
                        partial[t, k] += partial[t + half, k]
                cuda.syncthreads()
                half //= 2
            if t == 0:
                for k in range(width):
                    work[start + k] = partial[0, k]
            cuda.syncthreads()  # the next chunk refills partial
        if t == 0:
            y = codes[i]
            predicted = _argmax(work)
            if predicted == y:
                correct += 1
            decision[0] = y
            decision[1] = predicted
            if rule == RULE_SIGMOID:
                for c in range(n_classes):
                    target = 1.0 if c == y else 0.0
                    work[c] = target - _sigmoid(work[c])  # stored in W's dtype, then scaled in it
                    work[c] *= lr
        cuda.syncthreads()
        if rule == RULE_SIGMOID:
            for f in range(t, n_features, n_threads):
                x = X1[i, f]
                for c in range(n_classes):
                    W[f, c] += x * work[c]
        else:
            y = decision[0]
            predicted = decision[1]
            if predicted != y:
                for f in range(t, n_features, n_threads):
                    change = X1[i, f] * lr
                    W[f, y] += change
                    W[f, predicted] -= change
    if t == 0:
        n_correct[0] = correct


def online_epoch(X1, codes, lr, rule, W, work, n_threads):
    """Per-sample updates in dataset order; returns how many samples were right before their update.

    work (c,) is device scratch in W's dtype; n_threads is unused. One block of up to
    ONLINE_THREADS threads (the module docstring says how they share a sample).
    """
    if X1.shape[0] == 0:
        return 0
    threads = min(ONLINE_THREADS, 1 << max(0, X1.shape[1] - 1).bit_length())
    counter = _counter()
    _online_epoch[1, threads](X1, codes, lr, rule, W, work, counter)
    return int(counter.copy_to_host()[0])


@kernel
def _with_bias(X, X1, n_bad):
    index = cuda.grid(1)
    if index >= X1.size:
        return
    i, f = index // X1.shape[1], index % X1.shape[1]
    if f == X.shape[1]:
        X1[i, f] = 1
        return
    value = X[i, f]
    if not math.isfinite(value):
        cuda.atomic.add(n_bad, 0, 1)
    X1[i, f] = value


def with_bias(X, X1, n_threads):
    """X1 (n, d + 1) = [X, 1] in X1's dtype, for a device X (n, d) of any strides; returns how many
    entries of X are NaN or infinite (the op's finiteness check for device input)."""
    if X1.shape[0] == 0:
        return 0
    counter = _counter()
    _with_bias[grid_1d(X1.size)](X, X1, counter)
    return int(counter.copy_to_host()[0])
